"""Helpers for tests that compare tensors with numbers worked out by hand."""

import torch


def t(x, dtype=torch.float64):
    return torch.tensor(x, dtype=dtype)


def close(actual, expected, tol=1e-9):
    torch.testing.assert_close(
        actual.double() if isinstance(actual, torch.Tensor) else t(actual),
        t(expected) if not isinstance(expected, torch.Tensor) else expected.double(),
        atol=tol,
        rtol=tol,
    )

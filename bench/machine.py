"""The machine's limits: measured fp32 (and bf16) matmul GFLOP/s, the peak that MFU is a share of, and memory
bandwidth GB/s, the peak that decoding's bandwidth share is of (bench/decoding.py).

    python -m bench.machine                     # n=2048, best of 10 after a warm-up, torch's default threads
    python -m bench.machine --size 4096 --repeats 3 --megabytes 1024

A square n x n matmul costs 2 n^3 FLOPs; the best of the timed repeats is reported (the machine's
attainable peak, not its average), on the GPU when there is one. bf16 is reported for reference:
the CPU profile trains in fp32, so MFU elsewhere in bench/ is a share of the fp32 number. bf16 is timed
only where the hardware has it natively (a GPU that supports it; a CPU with AVX512-BF16 or AMX): emulated
on an AVX2-only CPU, ten 2048 x 2048 bf16 matmuls took over 12 minutes.

Bandwidth: three streams over fp32 arrays far larger than any cache (512 MB each), bytes counted as STREAM
counts them (no write-allocate traffic): read (a sum), copy (b -> a) and triad (a = b + 2 c); the best of the
three is the attainable bandwidth (``memory_gbs``). About a second.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench import common
from rlhf.config import native_bf16


def matmul_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` GFLOP/s of a ``size`` x ``size`` matmul in ``dtype``."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.matmul(a, b)  # warm-up: thread pool, kernel selection
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        sync()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def _best_seconds(run, repeats: int, sync) -> float:
    run()  # warm-up: pages touched, threads started
    sync()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - started)
    return best


def bandwidth_gbs(megabytes: int = 512, repeats: int = 10) -> dict[str, float]:
    """Best-of-``repeats`` GB/s (1e9 bytes) of the read, copy and triad streams over fp32 arrays of ``megabytes``
    each, and ``memory_gbs``, the best of them (module docstring)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    n = megabytes * 2**20 // 4
    a, b, c = (torch.full((n,), value, device=device) for value in (0.0, 1.0, 2.0))
    nbytes = 4 * n
    streams = {  # name: (run, bytes moved)
        "read": (lambda: b.sum(), nbytes),
        "copy": (lambda: a.copy_(b), 2 * nbytes),
        "triad": (lambda: torch.add(b, c, alpha=2.0, out=a), 3 * nbytes),
    }
    out = {name: round(moved / _best_seconds(run, repeats, sync) / 1e9, 1) for name, (run, moved) in streams.items()}
    return {**out, "memory_gbs": max(out.values())}


def measure(size: int = 2048, repeats: int = 10, megabytes: int = 512) -> dict:
    info = common.machine_info()
    bandwidth = bandwidth_gbs(megabytes, repeats)
    info["memory_gbs"] = bandwidth.pop("memory_gbs")  # the peak decoding's bandwidth share is of
    info["bandwidth_gbs"] = bandwidth  # each stream
    info["bandwidth_megabytes"] = megabytes
    info["fp32_matmul_gflops"] = round(matmul_gflops(torch.float32, size, repeats), 1)
    info["native_bf16"] = native_bf16()
    info["bf16_matmul_gflops"] = None  # not timed without native bf16 (emulation takes minutes)
    if info["native_bf16"]:
        try:
            info["bf16_matmul_gflops"] = round(matmul_gflops(torch.bfloat16, size, repeats), 1)
        except RuntimeError:  # no bf16 matmul on this device after all
            pass
    info["matmul_size"] = size
    return info


def describe(info: dict) -> str:
    """The machine of ``info`` (common.machine_info) in one line, as benchmark write-ups name it."""
    return (
        f"{info['cpu']} ({info['cpu_count']} cores, torch threads {info['torch_threads']}, "
        f"{info['memory_gb']} GB), GPU: {info['gpu'] or 'none'}, allocator: {info['allocator']}, "
        f"torch {info['versions']['torch']}"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.machine", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="matrix side n (default 2048)")
    parser.add_argument("--repeats", type=int, default=10, help="timed matmuls and streams, best kept (default 10)")
    parser.add_argument("--megabytes", type=int, default=512, help="size of each bandwidth array (default 512)")
    args = parser.parse_args(argv)
    info = measure(args.size, args.repeats, args.megabytes)
    print(f"## Machine\n\n{describe(info)}\n")
    print(
        common.table(
            ["matmul", "GFLOP/s"],
            [
                [f"fp32 {args.size}x{args.size}", info["fp32_matmul_gflops"]],
                [f"bf16 {args.size}x{args.size}", info["bf16_matmul_gflops"] or "not timed: no native bf16"],
            ],
        )
    )
    print()
    streams = [[f"{name} ({args.megabytes} MB arrays)", gbs] for name, gbs in info["bandwidth_gbs"].items()]
    print(common.table(["memory stream", "GB/s"], [*streams, ["best: the bandwidth peak", info["memory_gbs"]]]))
    print(f"\nwritten to {common.save_results('machine', info)}")
    return info


if __name__ == "__main__":
    main()

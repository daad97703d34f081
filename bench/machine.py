"""The machine's limit: measured fp32 (and bf16) matmul GFLOP/s, the peak that MFU is a share of.

    python -m bench.machine                     # n=2048, best of 10 after a warm-up, torch's default threads
    python -m bench.machine --size 4096 --repeats 3

A square n x n matmul costs 2 n^3 FLOPs; the best of the timed repeats is reported (the machine's
attainable peak, not its average), on the GPU when there is one. bf16 is reported for reference:
the CPU profile trains in fp32, so MFU elsewhere in bench/ is a share of the fp32 number. bf16 is timed
only where the hardware has it natively (a GPU that supports it; a CPU with AVX512-BF16 or AMX): emulated
on an AVX2-only CPU, ten 2048 x 2048 bf16 matmuls took over 12 minutes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench import common


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


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 matmul units


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether bf16 matmuls run natively here: a CUDA GPU that supports bf16, or a CPU whose flags (Linux
    /proc/cpuinfo, or ``cpuinfo`` for tests) include AVX512-BF16 or AMX."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:  # not Linux: unknown, so not timed
            return False
    flags = {word for line in cpuinfo.splitlines() if line.startswith("flags") for word in line.split()}
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def measure(size: int = 2048, repeats: int = 10) -> dict:
    info = common.machine_info()
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.machine", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="matrix side n (default 2048)")
    parser.add_argument("--repeats", type=int, default=10, help="timed matmuls, best kept (default 10)")
    args = parser.parse_args(argv)
    info = measure(args.size, args.repeats)
    print(
        f"## Machine\n\n{info['cpu']} ({info['cpu_count']} cores, torch threads {info['torch_threads']}, "
        f"{info['memory_gb']} GB), GPU: {info['gpu'] or 'none'}, allocator: {info['allocator']}, "
        f"torch {info['versions']['torch']}\n"
    )
    print(
        common.table(
            ["matmul", "GFLOP/s"],
            [
                [f"fp32 {args.size}x{args.size}", info["fp32_matmul_gflops"]],
                [f"bf16 {args.size}x{args.size}", info["bf16_matmul_gflops"] or "not timed: no native bf16"],
            ],
        )
    )
    print(f"\nwritten to {common.save_results('machine', info)}")
    return info


if __name__ == "__main__":
    main()

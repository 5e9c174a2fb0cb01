"""What this machine's matrix products deliver: GFLOP/s in fp32 and bf16, for square products and for
the output layer's shapes in both layouts (scores h·Wᵀ, rows × vocab, against W·hᵀ, vocab × rows).

These bound every other figure: a text VAE's cost is dominated by the output layer. Last line:
  fp32_gflops=N bf16_gflops=N vocab_major_speedup=X
Run: python benchmarks/matmul_speed.py [--rows 704 --hidden 256 --vocab 10002]
"""

from __future__ import annotations

import argparse
import time

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's textvae, not another install

from textvae.runtime import bf16_is_fast, keep_freed_memory


def gflops(product, flops: float, repeats: int = 10) -> float:
    product()
    start = time.perf_counter()
    for _ in range(repeats):
        product()
    return flops * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=704, help="target tokens in a batch (default: PTB, batch 32)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=10002)
    parser.add_argument("--size", type=int, default=2048, help="side of the square products")
    args = parser.parse_args()
    keep_freed_memory()  # as training does: without it every 28 MB product page-faults its output in again
    print(f"{torch.get_num_threads()} torch threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    square = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(args.size, args.size, dtype=dtype), torch.randn(args.size, args.size, dtype=dtype)
        fast = dtype == torch.float32 or bf16_is_fast(torch.device("cpu"))
        repeats = 10 if fast else 1  # emulated bf16 can be very slow
        square[dtype] = gflops(lambda: a @ b, 2 * args.size ** 3, repeats)
        print(f"{str(dtype):15} {args.size}² product: {square[dtype]:8.1f} GFLOP/s")
    hidden = torch.randn(args.rows, args.hidden)
    weight = torch.randn(args.vocab, args.hidden)
    flops = 2 * args.rows * args.hidden * args.vocab
    row_major = gflops(lambda: hidden @ weight.t(), flops)
    vocab_major = gflops(lambda: weight @ hidden.t(), flops)
    print(f"output layer, {args.rows} rows × {args.vocab} words: h·Wᵀ {row_major:.1f} GFLOP/s, "
          f"W·hᵀ {vocab_major:.1f} GFLOP/s (fp32)")
    if bf16_is_fast(torch.device("cpu")):
        hidden16, weight16 = hidden.bfloat16(), weight.bfloat16()
        print(f"output layer, {args.rows} rows × {args.vocab} words: h·Wᵀ "
              f"{gflops(lambda: hidden16 @ weight16.t(), flops):.1f} GFLOP/s, W·hᵀ "
              f"{gflops(lambda: weight16 @ hidden16.t(), flops):.1f} GFLOP/s (bf16)")
    print(f"fp32_gflops={square[torch.float32]:.0f} bf16_gflops={square[torch.bfloat16]:.1f} "
          f"vocab_major_speedup={vocab_major / row_major:.2f}")


if __name__ == "__main__":
    main()

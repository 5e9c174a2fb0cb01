"""What one pass over the output layer's (vocab, rows) score matrix costs in fp32 and in bf16 on this machine.

Outside its products, the fused output layer (textvae/modeling/output_loss.py) is a few such passes: convert the
bf16 scores to fp32, exponentiate, sum each column, scale by the incoming gradient, convert back to bf16 for the
backward's products. Keeping the matrix in bf16 would halve the bytes each pass moves and drop both conversions;
this script measures whether torch's bf16 elementwise kernels make that a gain. Each pass is timed on its own
tensor, restored from a copy before every call (the copy is timed alone and subtracted). Last line:
  exp_bf16_over_fp32=X sum_bf16_over_fp32=X scale_bf16_over_fp32=X conversions_ms=X
(ratios of times: above 1 means the bf16 pass is slower than the fp32 one, conversions included or not).
Run: python benchmarks/score_passes_speed.py [--rows 736 --vocab 10002 --repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's textvae, not another install

from textvae.runtime import keep_freed_memory


def milliseconds(work, repeats: int) -> float:
    """Median time of `work()` in ms over `repeats` calls, after two untimed ones."""
    work(), work()
    return statistics.median(timeit.repeat(work, number=1, repeat=repeats)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=736, help="target tokens in a batch (default: PTB, batch 32)")
    parser.add_argument("--vocab", type=int, default=10002)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    keep_freed_memory()  # as training does
    print(f"{torch.get_num_threads()} torch threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"({args.vocab}, {args.rows}) scores")
    generator = torch.Generator().manual_seed(0)
    source = {torch.float32: torch.randn(args.vocab, args.rows, generator=generator)}  # scores of a trained layer's size
    source[torch.bfloat16] = source[torch.float32].bfloat16()
    column_scale = torch.rand(args.rows, generator=generator) + 0.5
    timing = {}
    for dtype, values in source.items():
        work = values.clone()
        restore = milliseconds(lambda: work.copy_(values), args.repeats)
        scale = column_scale.to(dtype)
        timing[dtype] = {
            "exp": milliseconds(lambda: torch.exp(work.copy_(values), out=work), args.repeats) - restore,
            "sum": milliseconds(lambda: work.sum(dim=0, dtype=torch.float32), args.repeats),
            "scale": milliseconds(lambda: work.copy_(values).mul_(scale), args.repeats) - restore,
        }
        for name, ms in timing[dtype].items():
            print(f"{str(dtype):15} {name:6} {ms:8.3f} ms")
    to_fp32 = milliseconds(lambda: source[torch.bfloat16].float(), args.repeats)
    to_bf16 = milliseconds(lambda: source[torch.float32].bfloat16(), args.repeats)
    print(f"conversions: bf16 → fp32 {to_fp32:.3f} ms, fp32 → bf16 {to_bf16:.3f} ms")
    # a pass too small to time (tiny test shapes) has no ratio
    ratios = {name: timing[torch.bfloat16][name] / fp32 if fp32 > 0 else float("nan")
              for name, fp32 in timing[torch.float32].items()}
    print(" ".join(f"{name}_bf16_over_fp32={ratio:.2f}" for name, ratio in ratios.items())
          + f" conversions_ms={to_fp32 + to_bf16:.3f}")


if __name__ == "__main__":
    main()

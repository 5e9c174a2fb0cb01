"""Dropout on a CPU, forward + backward: textvae's masks (15-bit integers, four per 64-bit draw) against one
uniform float per unit (textvae's previous masks) and torch's own F.dropout (bernoulli_), in the same run.

The activation is the PTB recipe's decoder input or output (batch 32, 22 steps, 256 units) by default. Each
variant runs --repeats calls in turn for --rounds rounds; the median round counts. Last line:
  dtype=D integer_ms=X uniform_ms=X torch_ms=X speedup_over_uniform=X speedup_over_torch=X
Run: python benchmarks/dropout_speed.py [--shape 32 22 256 --p 0.5 --dtype bf16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's textvae, not another install

from textvae.modeling.dropout import Dropout


def uniform_draw_dropout(input: torch.Tensor, p: float) -> torch.Tensor:
    """The previous mask: one U(0, 1) float per unit, kept where it is >= p."""
    keep = torch.rand(input.shape, device=input.device) >= p
    return input * (keep.to(input.dtype) * (1.0 / (1.0 - p)))


def round_ms(apply, input: torch.Tensor, repeats: int) -> float:
    """ms per forward + backward call, over `repeats` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        input.grad = None
        apply(input).sum().backward()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[32, 22, 256])
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    input = torch.randn(*args.shape, dtype=dtype, requires_grad=True)
    layer = Dropout(args.p).train()
    variants = {"integer": layer, "uniform": lambda x: uniform_draw_dropout(x, args.p),
                "torch": lambda x: F.dropout(x, args.p, training=True)}
    print(f"{torch.get_num_threads()} torch threads, {args.dtype} activation {tuple(args.shape)}, p {args.p}")
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds + 1):  # the first round warms up and is not counted
        for name, apply in variants.items():
            rounds[name].append(round_ms(apply, input, args.repeats))
    median = {name: statistics.median(times[1:]) for name, times in rounds.items()}
    for name, value in median.items():
        print(f"{name:8s} {value:.3f} ms per forward + backward (median of {args.rounds} rounds)")
    print(f"dtype={args.dtype} integer_ms={median['integer']:.3f} uniform_ms={median['uniform']:.3f} "
          f"torch_ms={median['torch']:.3f} speedup_over_uniform={median['uniform'] / median['integer']:.2f} "
          f"speedup_over_torch={median['torch'] / median['integer']:.2f}")


if __name__ == "__main__":
    main()

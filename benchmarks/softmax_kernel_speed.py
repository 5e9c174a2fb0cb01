"""The output layer's C++ softmax kernels (textvae/modeling/csrc) against the torch operations they replace.

Times, at PTB's training shape, the forward's passes over the (vocab, rows) score matrix (torch: convert to fp32,
exponentiate, sum each column; kernel: exp_column_sums_, which also writes the exponentials over the scores) and
the backward's (torch: subtract the one-hot targets, scale, sum the rows for the bias, convert to the products'
dtype; kernel: softmax_gradient_, over those exponentials), for scores in fp32 and in bf16. Passes that work in
place start from a fresh copy of their input, made outside the timed part.
--march builds the kernels for another instruction set than this CPU's (e.g. haswell: AVX2 code on an AVX-512
machine) into a scratch directory; the default is the build textvae itself uses. Last line:
  march=M fp32_forward_speedup=X fp32_backward_speedup=X bf16_forward_speedup=X bf16_backward_speedup=X
(torch's time over the kernel's: above 1 means the kernel is faster).
Run: python benchmarks/softmax_kernel_speed.py [--march haswell] [--rows 736 --vocab 10002 --repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's textvae, not another install

from textvae.modeling import cpu_kernels
from textvae.runtime import keep_freed_memory


def median_ms(timed, repeats: int) -> float:
    """Median in ms of what `timed()` returns (the seconds its own timed part took) over `repeats` calls, after
    two untimed ones."""
    timed(), timed()
    return statistics.median(timed() for _ in range(repeats)) * 1e3


def kernels_for_march(march: str):
    """textvae's own build for `native`, else a build with -march=`march` in a scratch directory."""
    if march == "native":
        return cpu_kernels.softmax_kernels()
    from torch.utils import cpp_extension

    directory = tempfile.mkdtemp(prefix="textvae_kernels_")
    return cpp_extension.load(name=f"softmax_columns_{march.replace('-', '_')}", sources=[str(cpu_kernels.SOURCE)],
                              build_directory=directory, extra_cflags=["-O3", f"-march={march}", "-fopenmp"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=736, help="target tokens in a batch (default: PTB, batch 32)")
    parser.add_argument("--vocab", type=int, default=10002)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--march", default="native", help="the -march of the kernels' build (default: native)")
    args = parser.parse_args()
    keep_freed_memory()  # as training does
    kernels = kernels_for_march(args.march)
    if kernels is None:
        sys.exit("softmax_kernel_speed.py: the kernels could not be built here (no compiler or ninja)")
    print(f"{torch.get_num_threads()} torch threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"kernels built with -march={args.march}, ({args.vocab}, {args.rows}) scores")
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, args.vocab, (args.rows,), generator=generator)
    targets32, columns, no_bias = targets.int(), torch.arange(args.rows), torch.empty(0)
    upstream, shift = torch.rand(args.rows, generator=generator), torch.zeros(args.rows)
    speedups = []
    for dtype in (torch.float32, torch.bfloat16):
        scores = (torch.randn(args.vocab, args.rows, generator=generator) * 3).to(dtype)
        normaliser = scores.float().exp().sum(0)
        scale = upstream / normaliser
        target_scores = scores.gather(0, targets.unsqueeze(0)).squeeze(0).float()

        def torch_forward():
            source = scores.clone()  # the fp32 path exponentiates the product's output in place: a fresh copy
            start = timeit.default_timer()
            exponentials = source.float() if dtype != torch.float32 else source
            exponentials.exp_().sum(0)
            return timeit.default_timer() - start

        def kernel_forward():
            source = scores.clone()
            start = timeit.default_timer()
            kernels.exp_column_sums_(source, no_bias)
            return timeit.default_timer() - start

        def torch_backward():
            gradient = scores.float() if dtype != torch.float32 else scores.clone()
            gradient.exp_()  # the exponentials the torch path saved in its forward: timed out below
            start = timeit.default_timer()
            gradient[targets, columns] -= normaliser
            gradient.mul_(upstream / normaliser)
            gradient.sum(1), gradient.to(dtype)
            return timeit.default_timer() - start

        exponentials = scores.float().exp().to(dtype)  # what the forward's kernel leaves

        def kernel_backward():
            gradient = exponentials.clone()
            start = timeit.default_timer()
            kernels.softmax_gradient_(gradient, shift, scale, targets32, target_scores, upstream,
                                      torch.empty(args.vocab))
            return timeit.default_timer() - start

        forward = (median_ms(torch_forward, args.repeats), median_ms(kernel_forward, args.repeats))
        backward = (median_ms(torch_backward, args.repeats), median_ms(kernel_backward, args.repeats))
        name = "fp32" if dtype == torch.float32 else "bf16"
        print(f"{name}  forward  torch {forward[0]:7.3f} ms  kernel {forward[1]:7.3f} ms")
        print(f"{name}  backward torch {backward[0]:7.3f} ms  kernel {backward[1]:7.3f} ms")
        speedups += [f"{name}_forward_speedup={forward[0] / forward[1]:.2f}",
                     f"{name}_backward_speedup={backward[0] / backward[1]:.2f}"]
    print(f"march={args.march} " + " ".join(speedups))


if __name__ == "__main__":
    main()

"""The fused output layer (textvae/modeling/output_loss.py) against the same file at another git revision.

Forward + backward of projected_token_nll at PTB's training shape (--rows real positions of a batch,
hidden 256, vocabulary 10,002), in fp32 and under bf16 autocast. The revision's file is read with
`git show REV:textvae/modeling/output_loss.py` and loaded as a module beside the working tree's, so
both run in one process, alternating, --rounds rounds of --repeats calls; the median round counts
(a ratio measured this way holds on a busy machine; absolute rates do not). --evaluation times the path
without gradients instead (evaluation and IW-NLL: rows in slices, forward only). Speed only:
tests/test_speed.py checks the values. Run from the repo root:
  python benchmarks/output_loss_speed.py --baseline-rev 66606e3
Last line: fp32_speedup=X bf16_speedup=X
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's textvae, not another install

from textvae.modeling import output_loss

ROOT = Path(__file__).resolve().parents[1]


def load_revision(revision: str):
    """output_loss.py as it was at `revision`, as a module."""
    source = subprocess.run(["git", "show", f"{revision}:textvae/modeling/output_loss.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "output_loss_baseline.py"
    path.write_text(source, encoding="utf-8")
    # named inside textvae.modeling, so the file's relative imports (`from .cpu_kernels import ...`) resolve
    spec = importlib.util.spec_from_file_location("textvae.modeling.output_loss_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-rev", required=True, help="git revision whose output_loss.py is the baseline")
    parser.add_argument("--rows", type=int, default=736, help="real positions per batch (default 736: 32 x 23)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=10002)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--evaluation", action="store_true", help="time the path without gradients (forward only)")
    args = parser.parse_args()
    baseline = load_revision(args.baseline_rev)
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(args.rows, args.hidden, generator=generator)
    weight = torch.randn(args.vocab, args.hidden, generator=generator) * 0.05
    bias = torch.randn(args.vocab, generator=generator) * 0.1
    targets = torch.randint(0, args.vocab, (args.rows,), generator=generator)
    upstream = torch.rand(args.rows, generator=generator)

    def run(module, dtype: torch.dtype) -> None:
        if args.evaluation:
            with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                module.projected_token_nll(hidden, weight, bias, targets)
            return
        tensors = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            nll = module.projected_token_nll(tensors[0], tensors[1], tensors[2], targets)
        (nll * upstream).sum().backward()

    print(f"{'evaluation (no gradients)' if args.evaluation else 'training (forward + backward)'}: "
          f"{torch.get_num_threads()} torch threads; {args.rows} rows x hidden {args.hidden} x vocab {args.vocab}; "
          f"working tree against {args.baseline_rev}; {args.rounds} alternating rounds of {args.repeats} calls")
    summary = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rates = {"new": [], "old": []}
        for _ in range(args.rounds):
            for label, module in (("old", baseline), ("new", output_loss)):
                start = time.perf_counter()
                for _ in range(args.repeats):
                    run(module, dtype)
                rates[label].append(args.repeats / (time.perf_counter() - start))
        old, new = statistics.median(rates["old"]), statistics.median(rates["new"])
        print(f"{name}: {args.baseline_rev} {old:6.1f} calls/s, working tree {new:6.1f} calls/s (median rounds)")
        summary[f"{name}_speedup"] = f"{new / old:.2f}"
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    main()

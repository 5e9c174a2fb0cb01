"""How much the validation MI estimate moves with its draw of z, against its ceiling log N (docs/collapse.md).

Aggressive training (He et al. 2019) stays on while validation MI rises; textvae also stops it once the MI
reaches log N − sqrt(d / 2N) (collapse.mi_ceiling), where a rise is the draw's noise. This script measures
that noise on a trained model: the one-draw estimates of evaluation.mutual_information_draws for draws 0..D−1 (the
training loop's validation uses draw 0, the run's train.seed), their mean and standard deviation, beside
log N, sqrt(d / 2N) and the ceiling. --checkpoint scores the weights of RUN_DIR/checkpoint.pt (or another
checkpoint file) instead of the run's best model. Run from the repo root:
  python benchmarks/mi_noise.py runs/ptb_table/aggressive ../shared/data/ptb/valid.txt --checkpoint
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch

import textvae
from textvae.training.collapse import mi_ceiling
from textvae.evaluation.latent import mutual_information_draws
from textvae.training.checkpoint import CHECKPOINT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("sentences", help="one sentence a line: the split the training loop validates on")
    parser.add_argument("--checkpoint", nargs="?", const="", default=None,
                        help="score a checkpoint's weights (default file: RUN_DIR/checkpoint.pt)")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="the first draw's seed (the run's train.seed)")
    args = parser.parse_args()

    pipeline = textvae.load(args.run_dir, device="cpu", precision="fp32")
    if args.checkpoint is not None:
        path = Path(args.checkpoint or Path(args.run_dir) / CHECKPOINT)
        pipeline.model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu")["model"])
    pipeline.model.eval()
    sentences = [line.strip() for line in Path(args.sentences).read_text(encoding="utf-8").splitlines() if line.strip()]
    with torch.no_grad():
        mean, logvar = (tensor.float().cpu() for tensor in pipeline.posterior(sentences))
    count, latent = mean.shape
    estimates = mutual_information_draws(mean, logvar, args.seed, args.draws)
    print(f"sentences={count} latent={latent} log_n={math.log(count):.4f} "
          f"sqrt_d_over_2n={math.sqrt(latent / (2 * count)):.4f} ceiling={mi_ceiling(count, latent):.4f}")
    print(f"first_draw={estimates[0]:.4f} mean={statistics.mean(estimates):.4f} "
          f"sd={statistics.stdev(estimates):.4f} min={min(estimates):.4f} max={max(estimates):.4f} draws={args.draws}")


if __name__ == "__main__":
    main()

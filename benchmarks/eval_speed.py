"""How long the importance-weighted NLL takes, and what it says, for a trained run.

Scores a split of the run's corpus (default: test) with K importance samples per sentence
(`textvae.evaluation.score_split`: one encoder pass per sentence, samples decoded in chunks with all
sentences of a batch together, logsumexp accumulation) and prints the time and the result.
Matrix products run in --precision (default auto: bf16 where the hardware is fast at it, else fp32).
Last line:  seconds=N sentences=N iw_samples=K nll=X ppl=X precision=P
Run from the repo root, e.g. for the papers' protocol on PTB:
  python benchmarks/eval_speed.py runs/ptb --iw-samples 500
Two runs with different --seed show how stable the estimate is.
"""

from __future__ import annotations

import argparse
import time

import torch

import textvae
from textvae.evaluation import score_split, summarise
from textvae.runtime import precision_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--iw-samples", type=int, default=500)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N sentences (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=50, help="importance samples decoded together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16")
    args = parser.parse_args()

    vae = textvae.load(args.run_dir, device=args.device, precision=args.precision)
    split = vae.corpus_split(args.split)
    if args.limit:
        split.texts, split.token_ids = split.texts[: args.limit], split.token_ids[: args.limit]
    start = time.perf_counter()
    scores = score_split(vae.model, split, args.batch_size, args.iw_samples, args.seed, iw_chunk=args.chunk,
                         dtype=vae.dtype)
    seconds = time.perf_counter() - start
    results = summarise(scores, args.iw_samples, seed=args.seed)
    print(f"{args.run_dir} {args.split}: {results['sentences']} sentences, {results['tokens']} predicted tokens, "
          f"k={args.iw_samples}, device {vae.device}, {torch.get_num_threads()} torch threads")
    print(f"NLL {results['nll']:.3f}  -ELBO {results['neg_elbo']:.3f}  KL {results['kl']:.3f}  "
          f"PPL {results['ppl']:.2f}  (bound {results['ppl_bound']:.2f})")
    print(f"seconds={seconds:.1f} sentences={results['sentences']} iw_samples={args.iw_samples} "
          f"nll={results['nll']:.4f} ppl={results['ppl']:.4f} precision={precision_name(vae.dtype)}")


if __name__ == "__main__":
    main()

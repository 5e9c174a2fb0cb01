"""Peak memory (RSS) of validation-time evaluation with N sentences, VAE against LM, phase by phase.

Builds the model of --config (untrained: memory does not depend on the weights) with the given
vocabulary, makes N synthetic sentences (random word ids, lengths uniform in 5..45 words), and runs
what train() runs at each validation, `evaluate_split` (iw_samples 0, train.eval_batch_size), split into
its two phases: `score_split` (one encoder and decoder pass per sentence) and `summarise` (PPL, MI, AU).
Each model runs in its own process under textvae's allocator setting (runtime.keep_freed_memory, as
train() uses); the peak resident set (ru_maxrss) is read after setup, after scoring and after summarising,
so each phase's figure is the peak so far. With --old-mi the VAE is also run with the MI estimate as it
was before it became matrix products (an N × latent tensor per row of a 512-row chunk), for comparison.
Run from the repo root:
  python benchmarks/eval_memory.py --config configs/ptb.yaml --sentences 10000 --old-mi
Last line: sentences=N vae_peak_rss_mb=N lm_peak_rss_mb=N [old_mi_vae_peak_rss_mb=N]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time

from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's textvae, not another install

from textvae import evaluation
from textvae.evaluation import latent
from textvae.config import load_config
from textvae.data import TokenizedSplit
from textvae.modeling import TextVAE, build_model_config
from textvae.modeling.posterior import gaussian_log_density, reparameterize
from textvae.runtime import keep_freed_memory

SPECIAL = {"pad_token_id": 0, "unk_token_id": 1, "bos_token_id": 2, "eos_token_id": 3}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def previous_mutual_information(mean: torch.Tensor, logvar: torch.Tensor, generator=None, chunk: int = 512) -> float:
    """The MI estimate as evaluation.mutual_information computed it before (kept here only to measure it)."""
    count, latent = mean.shape
    neg_entropy = (-0.5 * latent * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = reparameterize(mean, logvar, generator=generator)
    log_aggregate = []
    for start in range(0, count, chunk):
        log_q = gaussian_log_density(z[start: start + chunk].unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0))
        log_aggregate.append(torch.logsumexp(log_q, dim=1) - math.log(count))
    return float(neg_entropy - torch.cat(log_aggregate).mean())


def measure(args: argparse.Namespace) -> dict:
    """One model in this process: peaks after setup, scoring and summarising, and the seconds each took."""
    config = load_config(args.config, args.overrides + [f"model.model_variant={'lm' if args.child == 'lm' else 'vae'}"])
    torch.set_num_threads(config.train.num_threads or 1)
    keep_freed_memory()
    if args.child == "old-mi":
        latent.mutual_information = previous_mutual_information  # summarise() looks it up at call time
    torch.manual_seed(0)
    model = TextVAE(build_model_config(config.model, args.vocab, SPECIAL))
    rng = random.Random(0)
    token_ids = [[rng.randrange(4, args.vocab) for _ in range(rng.randint(5, 45))] for _ in range(args.sentences)]
    split = TokenizedSplit([""] * len(token_ids), token_ids)
    report = {"model": args.child, "setup_mb": peak_mb()}
    start = time.perf_counter()
    scores = evaluation.score_split(model, split, config.train.eval_batch_size)
    report |= {"score_mb": peak_mb(), "score_s": time.perf_counter() - start}
    start = time.perf_counter()
    results = evaluation.summarise(scores)
    report |= {"summarise_mb": peak_mb(), "summarise_s": time.perf_counter() - start, "mi": results.get("mi")}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ptb.yaml")
    parser.add_argument("--sentences", type=int, default=10000, help="validation sentences (default 10000)")
    parser.add_argument("--vocab", type=int, default=10002, help="vocabulary size (default 10002, PTB's)")
    parser.add_argument("--old-mi", action="store_true", help="also run the VAE with the previous MI estimate")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    rows = {}
    for child in ["vae", "lm"] + (["old-mi"] if args.old_mi else []):
        command = [sys.executable, __file__, "--config", args.config, "--sentences", str(args.sentences), "--vocab",
                   str(args.vocab), "--child", child] + [item for override in args.overrides for item in ("--set", override)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"eval_memory: the {child} run failed:\n{result.stderr[-3000:]}")
        rows[child] = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"config {args.config}: {args.sentences} synthetic sentences, vocab {args.vocab}, "
          f"eval batch {load_config(args.config, args.overrides).train.eval_batch_size}, each model in its own process")
    names = {"vae": "VAE", "lm": "LM", "old-mi": "VAE, previous MI"}
    for child, row in rows.items():
        print(f"{names[child]:17} peak RSS after setup {row['setup_mb']:6.0f} MB, after scoring {row['score_mb']:6.0f} MB "
              f"({row['score_s']:5.1f} s), after summarising {row['summarise_mb']:6.0f} MB ({row['summarise_s']:5.1f} s)"
              + (f", MI {row['mi']:.4f}" if row["mi"] is not None else ""))
    summary = {"sentences": args.sentences, "vae_peak_rss_mb": round(rows["vae"]["summarise_mb"]),
               "lm_peak_rss_mb": round(rows["lm"]["summarise_mb"])}
    if args.old_mi:
        summary["old_mi_vae_peak_rss_mb"] = round(rows["old-mi"]["summarise_mb"])
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    main()

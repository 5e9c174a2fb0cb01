"""A short PTB sanity run: train a recipe for STEPS steps on one thread, then print one JSON line with the
validation summary, the KL and rec of the first 300 test sentences, and the share of them whose greedy
reconstruction from the posterior mean is exact, with its corpus BLEU (tokenize="none"); then three
reconstructions. Checks that a recipe trains and which way its BLEU moves, in minutes (docs/homotopy.md).
Run from the repository root (the recipes read ../shared/data/ptb):
  python benchmarks/ptb_sanity.py configs/ptb.yaml runs/ptb_sanity 300
"""

import json
import resource
import sys
from pathlib import Path

import textvae
from textvae.config import load_config
from textvae.evaluation import corpus_bleu, exact_match_share
from textvae.training import train

config_path, out, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
config = load_config(config_path, ["train.num_threads=1", "train.progress_bar=false", f"train.max_steps={steps}",
                                   f"train.eval_every={steps}"])
summary = train(config, out)
vae = textvae.load(out, precision="fp32")
test = vae.read_as(vae.corpus_split("test").texts[:300])
decodes = vae.reconstruct(test)
scores = vae.evaluate(sentences=test, iw_samples=0, samples=0, bleu=False)
print(json.dumps({"config": config_path, "steps": summary["steps"], "valid": summary["best_valid"],
                  "test300_kl": scores["kl"], "test300_rec": scores["rec"],
                  "exact": exact_match_share(decodes, test), "bleu": corpus_bleu(decodes, test),
                  "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime}))
for sentence, decoded in list(zip(test, decodes))[:3]:
    print("  ", sentence, "||", decoded)

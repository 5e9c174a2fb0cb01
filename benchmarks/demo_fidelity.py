"""Train the demo recipe (configs/demo.yaml) with --set-style overrides into RUN_DIR, on one thread, and print
one JSON line: wall time, CPU time of the training (user + system: what carries over to an idle core), steps, the share of test sentences whose greedy decode from the posterior mean is exact,
corpus BLEU of those decodes (sacrebleu, tokenize="none"), valid KL and rec, the share of 200 greedy prior samples
that end a sentence ('.' or '?' last) with z from N(0, I) and, when the run fitted one (train.fit_sampling_prior),
from the fitted Gaussian, and how many distinct sentences a 7-step homotopy passes through; then 5 samples and
that homotopy. An existing finished RUN_DIR is not trained again, only measured.
How the demo recipe's settings were chosen (docs/homotopy.md). Run from the repository root:
  python benchmarks/demo_fidelity.py runs/demo_try train.kl_max_weight=0.3 model.latent_size=32
"""

import json
import resource
import sys
import time
from pathlib import Path

import textvae
from textvae.config import load_config
from textvae.evaluation import corpus_bleu, exact_match_share
from textvae.training import train

FIRST, SECOND = "the happy dogs chased their soft ball .", "will the clerk review the report ?"

out, overrides = Path(sys.argv[1]), sys.argv[2:]
config = load_config("configs/demo.yaml", ["train.num_threads=1", "train.progress_bar=false", *overrides])
start = time.time()
summary = train(config, out, resume=out.exists())  # a finished run is only measured
seconds = time.time() - start
used = resource.getrusage(resource.RUSAGE_SELF)
cpu_seconds = used.ru_utime + used.ru_stime  # training alone, with its per-epoch validations
vae = textvae.load(out)
test = vae.corpus_split("test").texts
decodes = vae.reconstruct(test)
valid = vae.evaluate("valid", iw_samples=0, bleu=False, samples=0)
priors = ["standard"] + (["fitted"] if vae.sampling_prior is not None else [])
drawn = {prior: vae.sample(200, prior=prior, seed=0) for prior in priors}
samples = drawn[priors[-1]]
path = vae.interpolate(FIRST, SECOND, steps=7)
print(json.dumps({"run": str(out), "overrides": overrides, "seconds": round(seconds),
                  "train_seconds": round(summary["train_seconds"]), "cpu_seconds": round(cpu_seconds, 1),
                  "steps": summary["steps"],
                  "exact": exact_match_share(decodes, test), "bleu": corpus_bleu(decodes, test),
                  "valid_kl": valid["kl"], "valid_rec": valid["rec"], "unigram": valid["unigram_nll"],
                  "samples_ending_a_sentence": {prior: sum(bool(sample) and sample.split()[-1] in {".", "?"}
                                                           for sample in decoded) / len(decoded)
                                                for prior, decoded in drawn.items()},
                  "distinct_path": len(set(path))}))
for sample in samples[:5]:
    print("  S", sample)
for sentence in path:
    print("  P", sentence)

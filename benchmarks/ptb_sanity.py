"""A short PTB sanity run: train a recipe for STEPS steps on one thread (data from /work/shared/data/ptb), then
print one JSON line with the validation summary, the KL and rec of the first 300 test sentences, and the share of
them whose greedy reconstruction from the posterior mean is exact with its corpus BLEU (tokenize="none"); then
three reconstructions. Checks that a recipe trains and which way its BLEU moves, in minutes (docs/homotopy.md):
  python benchmarks/ptb_sanity.py configs/ptb_homotopy.yaml runs/ptb_sanity 300
"""
import sys, json, time, resource
from pathlib import Path
import textvae
from textvae.config import load_config
from textvae.training import train
from textvae.evaluation import exact_match_share, tokenized_corpus_bleu
config_path, out, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
config = load_config(config_path, ["train.num_threads=1", "train.progress_bar=false", f"train.max_steps={steps}",
                                   f"train.eval_every={steps}", "data.source=/work/shared/data/ptb"])
summary = train(config, out)
vae = textvae.load(out, precision="fp32")
test = vae.read_as(vae.corpus_split("test")[0].texts[:300])
decodes = vae.reconstruct(test)
r = vae.evaluate(sentences=test, iw_samples=0, samples=0, bleu=False)
print(json.dumps(dict(config=config_path, steps=summary["steps"], valid=summary["best_valid"], test300_kl=r["kl"], test300_rec=r["rec"],
    exact=exact_match_share(decodes, test), bleu=tokenized_corpus_bleu(decodes, test),
    cpu_seconds=resource.getrusage(resource.RUSAGE_SELF).ru_utime)))
for a, b in list(zip(test, decodes))[:3]: print("  ", a, "||", b)

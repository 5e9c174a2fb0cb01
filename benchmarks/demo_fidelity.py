"""Train the demo recipe (configs/demo.yaml) with --set-style overrides into RUN_DIR, on one thread, and print
one JSON line: wall time, steps, the share of test sentences whose greedy decode from the posterior mean is exact,
corpus BLEU of those decodes (sacrebleu, tokenize="none"), valid KL and rec, whether 20 prior samples end with
'.' or '?', and how many distinct sentences a 7-step homotopy passes through; then 5 samples and that homotopy.
How the demo recipe's settings were chosen (docs/homotopy.md). Run from the repository root:
  python benchmarks/demo_fidelity.py runs/demo_try train.kl_max_weight=0.3 model.latent_size=32
"""
import sys, time, json
from pathlib import Path
from sacrebleu.metrics import BLEU
import textvae
from textvae.config import load_config
from textvae.training import train
out = Path(sys.argv[1]); overrides = sys.argv[2:]
config = load_config("configs/demo.yaml", ["train.num_threads=1", "train.progress_bar=false", *overrides])
start = time.time()
summary = train(config, out)
took = time.time() - start
vae = textvae.load(out)
texts = vae.corpus_split("test").texts
recon = vae.reconstruct(texts)
exact = sum(a.split() == b.split() for a, b in zip(recon, texts)) / len(texts)
bleu = BLEU(tokenize="none", force=True).corpus_score(recon, [texts]).score
v = vae.evaluate("valid", iw_samples=0, bleu=False, samples=0)
s = vae.sample(20)
ok = all(x.split()[-1] in {".", "?"} for x in s)
A, B = "the happy dogs chased their soft ball .", "will the clerk review the report ?"
path = vae.interpolate(A, B, steps=7)
print(json.dumps(dict(run=str(out), overrides=overrides, seconds=round(took), train_seconds=round(summary["train_seconds"]), steps=summary["steps"],
  exact=exact, bleu=bleu, valid_kl=v["kl"], valid_rec=v["rec"], unigram=v["unigram_nll"], samples_ok=ok, distinct_path=len(set(path)))))
for x in s[:5]: print("  S", x)
for x in path: print("  P", x)

"""Numbers that mean what they say: BLEU on tokenized text, train lines of metrics.jsonl, what evaluation
reads and scores, per-word perplexity, safe checkpoint loading, and a light `import textvae`."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_MODEL, read_metrics, tiny_model

import textvae
import textvae.data.splits
import textvae.training.step
import textvae.training.trainer
from textvae.cli import main
from textvae.config import load_config
from textvae.data import TokenizedSplit, prepare_texts
from textvae.errors import TextVAEError
from textvae.evaluation import (
    SentenceScores,
    compare_table,
    corpus_bleu,
    score_split,
    self_bleu,
    summarise,
    unigram_nll,
)
from textvae.evaluation.text_metrics import corpus_bleu_score
from textvae.plotting import read_curves
from textvae.config import resumed_config
from textvae.data.synthetic import generate_corpus
from textvae.data.tokenization import vocabulary_size
from textvae.training import train

# ---- 1. BLEU of tokenized text ---------------------------------------------------------------------


def test_unk_is_one_token_in_bleu():
    """A shared <unk> gives one matching unigram and no bigram: sacrebleu's 13a tokenizer would split it
    into three tokens and find two extra bigrams and a trigram in it."""
    score = corpus_bleu_score(["the <unk> rose"], ["a <unk> fell"])
    assert score.counts[:2] == [1, 0] and score.totals[:2] == [3, 2]
    # <unk> scores as any other one word would, in corpus BLEU and in self-BLEU
    assert corpus_bleu(["the <unk> rose ."], ["a <unk> fell ."]) == corpus_bleu(["the u rose ."], ["a u fell ."])
    with_unk = ["the <unk> x y", "a <unk> x z", "b <unk> q r"]
    assert self_bleu(with_unk) == self_bleu([sentence.replace("<unk>", "u") for sentence in with_unk])


# ---- 2. train lines of metrics.jsonl ---------------------------------------------------------------


def tiny_settings(*extra: str):
    overrides = [value for value in TINY_MODEL if value != "--set"]
    return load_config(None, [*overrides, "train.batch_size=32", "train.progress_bar=false", "train.precision=fp32",
                              "train.num_threads=1", *extra])


def test_train_lines_log_the_window_means_of_the_neg_elbo_and_objective_and_the_unclipped_grad_norm(
        tmp_path, monkeypatch):
    steps, norms = [], []
    real_step, real_norm = textvae.training.trainer.training_step, textvae.training.step.gradient_norm

    def recording_step(model, optimizer, token_ids, *args, **kwargs):
        loss = real_step(model, optimizer, token_ids, *args, **kwargs)
        steps.append((token_ids.size(0), float(loss.rec), float(loss.kl), loss.value))
        return loss

    monkeypatch.setattr(textvae.training.trainer, "training_step", recording_step)
    monkeypatch.setattr(textvae.training.step, "gradient_norm", lambda *args: norms.append(float(real_norm(*args)))
                        or torch.tensor(norms[-1]))
    clip = 1e-3  # every step's gradient is clipped to this norm, far below its own
    train(tiny_settings("train.max_steps=6", "train.log_every=3", "train.eval_every=6", f"train.grad_clip={clip}",
                        "train.kl_schedule=linear", "train.kl_start_weight=0.1", "train.kl_anneal_steps=100"),
          tmp_path / "run")
    lines = [line for line in read_metrics(tmp_path / "run") if line["split"] == "train"]
    assert [line["step"] for line in lines] == [3, 6] and len(steps) == len(norms) == 6
    for line, window in zip(lines, (slice(0, 3), slice(3, 6))):
        batch = steps[window]
        sentences = sum(size for size, *_ in batch)
        neg_elbo = sum(size * (rec + kl) for size, rec, kl, _ in batch) / sentences
        objective = sum(size * value for size, _, _, value in batch) / sentences
        assert line["loss"] == pytest.approx(neg_elbo, rel=1e-6)
        assert line["loss"] == pytest.approx(line["rec"] + line["kl"], rel=1e-9)
        assert line["objective"] == pytest.approx(objective, rel=1e-6)
        assert line["objective"] < line["loss"]  # β < 1 while the KL weight rises
        assert line["grad_norm"] == pytest.approx(np.mean(norms[window]), rel=1e-6) and line["grad_norm"] > clip
        assert line["grad_norm_max"] == pytest.approx(max(norms[window]), rel=1e-6)


def test_old_train_lines_and_old_results_stay_readable(tmp_path):
    """Train lines written before `objective` logged the batch's objective as `loss`: plot reads it as the
    objective and takes rec + KL as the −ELBO; results.json without `words` had per-token PPL under `ppl`,
    and BLEU from sacrebleu's 13a tokenizer."""
    lines = [{"step": 50, "epoch": 0, "split": "train", "loss": 40.0, "rec": 39.0, "kl": 5.0, "kl_weight": 0.2},
             {"step": 50, "epoch": 0, "split": "valid", "loss": 45.0, "rec": 40.0, "kl": 5.0, "kl_weight": 0.2}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    curves = read_curves(tmp_path)
    assert curves["train"]["loss"] == [(50, 44.0)] and curves["train"]["objective"] == [(50, 40.0)]
    assert curves["valid"]["loss"] == [(50, 45.0)]
    table = compare_table({"old": {"nll": 100.0, "ppl": 120.0, "bleu": 9.0},
                           "new": {"nll": 100.0, "ppl": 110.0, "ppl_per_token": 130.0, "words": 10, "tokens": 12,
                                   "bleu": 7.0, "bleu_tokenize": "none"}})
    assert "| PPL per word | – | 110.00 |" in table and "| PPL per token | 120.00 | 130.00 |" in table
    assert "| BLEU tokenize | 13a | none |" in table


# ---- 3 and 4. what evaluation reads and scores ------------------------------------------------------

MAX_LENGTH = 12


@pytest.fixture()
def text_run(tiny_run, tmp_path):
    """tiny_run's model reading a text-file corpus (the synthetic sentences) whose test split has one line
    longer than the run's data.max_length, and a blank line."""
    corpus = generate_corpus(seed=0)
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        texts = [row["text"] for row in corpus[split][:200]]
        if split == "test":
            texts = texts[:20] + ["", " ".join(texts[:4])] + texts[20:40]
        (folder / f"{split}.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    vae = textvae.load(tiny_run, precision="fp32")
    vae.resumable = False
    vae.run_config.data.source = str(folder)
    vae.run_config.data.max_length = MAX_LENGTH
    vae.run_config.data.length_policy = "drop"
    return vae, folder


def test_evaluation_scores_every_line_even_those_longer_than_the_training_limit(text_run, monkeypatch):
    vae, folder = text_run
    lines = [line for line in (folder / "test.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert max(len(line.split()) for line in lines) > MAX_LENGTH
    asked = []
    real_decode = type(vae).decode_latents
    monkeypatch.setattr(type(vae), "decode_latents",
                        lambda self, z, *args, **kwargs: asked.append(kwargs.get("max_length"))
                        or real_decode(self, z, *args, **kwargs))
    results = vae.evaluate("test", iw_samples=0, samples=0, unigram=False, bleu=True)
    assert results["sentences"] == len(lines)
    assert results["tokens"] == results["words"] == sum(len(line.split()) + 1 for line in lines)
    assert asked == [max(50, max(len(line.split()) + 1 for line in lines))]  # no reconstruction cut short


def test_a_transformer_refuses_a_line_longer_than_it_reads_naming_the_line(text_run):
    vae, _ = text_run
    vae.model.config.decoder_type, vae.model.config.max_positions = "transformer", 30  # what check_fits reads
    with pytest.raises(TextVAEError, match=r"test split line 22 has \d+ tokens with <eos>, more than"):
        vae.evaluate("test", iw_samples=0, samples=0, unigram=False, bleu=False)


def test_evaluate_reads_the_train_split_only_for_the_figures_that_need_it(text_run, monkeypatch):
    vae, folder = text_run
    train_lines = (folder / "train.txt").read_text(encoding="utf-8").splitlines()
    encoded = []
    real_encode = textvae.data.splits.encode_texts
    monkeypatch.setattr(textvae.data.splits, "encode_texts", lambda tokenizer, texts: encoded.extend(texts)
                        or real_encode(tokenizer, texts))
    results = vae.evaluate("valid", iw_samples=0, samples=0, unigram=False, bleu=False)
    assert "unigram_nll" not in results and "copied_share" not in results
    assert not set(train_lines) & set(encoded), "the train split was tokenized, though no figure needed it"

    results = vae.evaluate("valid", iw_samples=0, samples=0, unigram=True, bleu=False)
    data = vae.run_config.data
    in_memory = unigram_nll(prepare_texts(train_lines, vae.tokenizer, data.max_length, data.length_policy),
                            vae.corpus_split("valid"), vocabulary_size(vae.tokenizer), vae.special["eos_token_id"])
    assert results["unigram_nll"] == pytest.approx(in_memory, rel=1e-12)


# ---- 5. perplexity per word and per token ------------------------------------------------------------


def test_ppl_is_per_word_and_ppl_per_token_is_per_predicted_token():
    scores = SentenceScores(rec=np.array([10.0, 20.0]), kl=np.zeros(2), nll=np.array([10.0, 20.0]),
                            tokens=np.array([5, 8]), words=np.array([3, 4]))
    results = summarise(scores)
    assert results["ppl"] == pytest.approx(math.exp(30 / 7)) and results["words"] == 7
    assert results["ppl_per_token"] == pytest.approx(math.exp(30 / 13)) and results["tokens"] == 13
    # score_split counts whitespace words (+ <eos>) from the texts, whatever the tokenizer made of them
    split = TokenizedSplit(["a b", "c d e"], [[5, 6, 7, 8], [9, 10, 11]])
    scored = score_split(tiny_model(), split, iw_samples=0)
    assert scored.words.tolist() == [3, 4] and scored.tokens.tolist() == [5, 4]


def test_word_level_runs_report_the_same_ppl_per_word_and_per_token(tiny_run):
    vae = textvae.load(tiny_run, precision="fp32")
    vae.resumable = False
    results = vae.evaluate("valid", iw_samples=0, samples=0, unigram=False, bleu=False)
    assert results["words"] == results["tokens"] and results["ppl"] == results["ppl_per_token"]


# ---- 6. checkpoints ----------------------------------------------------------------------------------


class WritesAMarker:
    """Unpickling this runs a shell command that creates a file: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def resumable_copy(tiny_run: Path, target: Path) -> Path:
    shutil.copytree(tiny_run, target)
    for partial in target.glob(".textvae-scores-*"):
        partial.unlink()
    return target


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_and_nothing_runs(tiny_run, tmp_path, capsys):
    run = resumable_copy(tiny_run, tmp_path / "run")
    marker = tmp_path / "marker"
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    payload["python_rng"] = WritesAMarker(marker)
    torch.save(payload, run / "checkpoint.pt")
    code = main(["train", "--out", str(run), "--resume", "--quiet", "--set", "train.max_steps=14",
                 "--set", "train.num_threads=1"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and not marker.exists()
    assert len(error.splitlines()) == 1 and "it was not loaded, since loading it could run code" in error, error


def test_a_checkpoint_in_the_format_before_log_windows_still_resumes(tiny_run, tmp_path):
    """Checkpoints written before this version (no log_window in the state) load with weights_only=True
    and resume: Python's random state (tuples of ints), torch's ByteTensors and the state's plain data."""
    run = resumable_copy(tiny_run, tmp_path / "run")
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    payload["state"].pop("log_window", None)
    assert isinstance(payload["python_rng"], tuple) and payload["torch_rng"].dtype == torch.uint8
    torch.save(payload, run / "checkpoint.pt")
    step = payload["state"]["step"]
    summary = train(resumed_config(run, [f"train.max_steps={step + 4}", "train.num_threads=1"]), run, resume=True)
    assert summary["steps"] == step + 4


# ---- 8. import time ----------------------------------------------------------------------------------

HEAVY = ("transformers.models.auto.modeling_auto", "datasets", "sacrebleu")


def imported_modules(code: str) -> set[str]:
    """The modules a fresh interpreter imports running `code` (from -X importtime, which lists each once)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


def test_import_textvae_leaves_the_heavy_modules_for_the_commands_that_need_them():
    modules = imported_modules("import textvae")
    assert "textvae" in modules
    assert not set(HEAVY) & modules, set(HEAVY) & modules
    assert "torch" not in modules
    # what `textvae sample` and friends load: the model and the API, still without datasets or sacrebleu
    modules = imported_modules("import textvae.pipeline")
    assert "torch" in modules and not set(HEAVY) & modules, set(HEAVY) & modules


def test_textvae_help_does_not_import_torch():
    code = ("import sys\nfrom textvae.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    assert "torch" not in imported_modules(code)

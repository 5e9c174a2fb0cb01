"""Reconstruction fidelity: `reconstruct` and `interpolate` say how faithfully each sentence comes back from its
code (exact or not, sentence BLEU with tokenize="none"), on a model that reconstructs perfectly and on the same
model with its codes zeroed, which then ignores the sentence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import textvae
from textvae.cli import main
from textvae.config import load_config
from textvae.evaluation import exact_match_share, sentence_fidelity, corpus_bleu
from textvae.training import train

SENTENCES = ["the dog ran home .", "a cat sat on the warm mat .", "will the clerk sign the form ?",
             "birds sing in the morning ."]


def test_sentence_bleu_is_computed_on_the_given_tokens():
    longer = sentence_fidelity("a b c d e", "a b c d e", "a b c d e f")  # p_n = 5/6, 4/5, 3/4, 2/3; no brevity penalty
    assert not longer.exact and longer.bleu == pytest.approx(100 * (1 / 3) ** 0.25, abs=1e-6)
    shorter = sentence_fidelity("a b c d e f", "a b c d e f", "a b c d e")  # every p_n = 1; penalty exp(1 - 6/5)
    assert shorter.bleu == pytest.approx(100 * math.exp(-0.2), abs=1e-6)
    same = sentence_fidelity("it's  done.", "it's done.", "it's done.")
    assert same.exact and same.bleu == 100.0 and same.summary == "exact"
    unknown = sentence_fidelity("a zyzzyva sang .", "a <unk> sang .", "a <unk> sang .")
    assert unknown.exact and unknown.summary == "exact (read as: a <unk> sang .)"
    assert exact_match_share(["a b", "c d", "e"], ["a b", "c e", "e"]) == pytest.approx(2 / 3)
    assert corpus_bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory) -> Path:
    """A tiny autoencoder (KL weight 0) trained until it reproduces its four sentences."""
    folder = tmp_path_factory.mktemp("four")
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    out = folder / "run"
    config = load_config(None, [f"data.source={folder}", "model.embedding_size=16", "model.encoder_hidden_size=32",
                                "model.decoder_hidden_size=32", "model.latent_size=8", "train.batch_size=4",
                                "train.max_steps=150", "train.max_epochs=150", "train.eval_every=150", "train.lr=0.01",
                                "train.kl_schedule=constant", "train.kl_max_weight=0.0", "train.precision=fp32",
                                "train.num_threads=1", "train.progress_bar=false", "train.seed=0"])
    train(config, out)
    return out


def zeroed_codes(vae) -> None:
    """Make the model ignore its sentences: every posterior mean becomes the prior's mean, 0."""
    encode = vae.model.encode

    def encode_to_zero(*args, **kwargs):
        mean, logvar = encode(*args, **kwargs)
        return torch.zeros_like(mean), logvar

    vae.model.encode = encode_to_zero


def test_fidelity_is_exact_where_the_model_reconstructs_and_names_the_mismatch_where_it_ignores_z(overfit_run):
    vae = textvae.load(overfit_run, precision="fp32")
    report = vae.fidelity(SENTENCES)
    assert [row.reconstruction for row in report] == SENTENCES
    assert all(row.exact and row.bleu == 100.0 and row.summary == "exact" for row in report)
    path = vae.interpolate(SENTENCES[0], SENTENCES[2], steps=5)
    assert [row.summary for row in path.ends] == ["exact", "exact"]
    assert vae.evaluate("test", iw_samples=0, samples=0)["exact_match"] == 1.0

    zeroed_codes(vae)
    report = vae.fidelity(SENTENCES)
    assert len({row.reconstruction for row in report}) == 1  # one decode, of z = 0, for every sentence
    assert sum(row.exact for row in report) <= 1
    for row in report:
        if not row.exact:
            assert row.bleu < 100.0 and row.summary == f"differs, BLEU {row.bleu:.1f}"
            assert row.bleu == pytest.approx(sentence_fidelity(row.text, row.text, row.reconstruction).bleu)
    assert vae.evaluate("test", iw_samples=0, samples=0)["exact_match"] <= 0.25
    path = vae.interpolate(SENTENCES[0], SENTENCES[2], steps=5)
    assert len(set(path)) == 1 and not all(end.exact for end in path.ends)


def test_cli_prints_each_ends_fidelity_beside_it(overfit_run, capsys):
    assert main(["reconstruct", str(overfit_run), SENTENCES[1], "a zyzzyva sat on the warm mat ."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"{SENTENCES[1]}\t->\t{SENTENCES[1]}\texact"
    source, arrow, output, verdict = lines[1].split("\t")
    assert (source, arrow) == ("a zyzzyva sat on the warm mat .", "->")
    assert verdict.endswith("(read as: a <unk> sat on the warm mat .)")
    assert main(["interpolate", str(overfit_run), SENTENCES[0], SENTENCES[3], "--steps", "4"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [row[0] for row in rows] == ["0", "1", "2", "3"]
    assert rows[0][1:] == [SENTENCES[0], "first: exact"] and rows[-1][1:] == [SENTENCES[3], "second: exact"]
    assert all(len(row) == 2 for row in rows[1:-1])
    assert main(["interpolate", str(overfit_run), SENTENCES[0], SENTENCES[0], "--steps", "3", "--collapse"]) == 0
    assert capsys.readouterr().out.strip() == f"0\t{SENTENCES[0]}\tfirst: exact; second: exact"


def test_evaluate_scores_beam_reconstructions_when_asked_and_says_which_decoding_it_scored(overfit_run, capsys):
    vae = textvae.load(overfit_run, precision="fp32")
    greedy = vae.evaluate("test", iw_samples=0, samples=0, unigram=False)
    assert "bleu_decoding" not in greedy and greedy["exact_match"] == 1.0
    beam = vae.evaluate("test", iw_samples=0, samples=0, unigram=False, beam_size=3)
    assert beam["bleu_decoding"] == "beam 3" and beam["exact_match"] == 1.0 and beam["bleu"] == pytest.approx(100.0)

    zeroed_codes(vae)  # every code decodes to one sentence: the figures are the beam decode's, not the greedy one's
    beam = vae.evaluate("test", iw_samples=0, samples=0, unigram=False, beam_size=3)
    decodes = vae.reconstruct(SENTENCES, strategy="beam", beam_size=3)
    assert beam["bleu"] == pytest.approx(corpus_bleu(decodes, SENTENCES))
    assert beam["exact_match"] == pytest.approx(exact_match_share(decodes, SENTENCES))
    with pytest.raises(textvae.TextVAEError, match="beam_size: must be a whole number >= 1"):
        vae.evaluate("test", iw_samples=0, samples=0, beam_size=0)
    assert main(["evaluate", str(overfit_run), "--iw-samples", "0", "--samples", "0", "--beam-size", "0"]) != 0
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert error.strip().splitlines()[-1].startswith("textvae: error: beam_size: must be a whole number >= 1")

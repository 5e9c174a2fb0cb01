"""A stopped evaluation resumes from its saved partial scores and ends with an uninterrupted run's numbers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import tiny_model

import textvae
import textvae.evaluation.likelihood as evaluation
import textvae.evaluation.progress as score_progress
from textvae.data import TokenizedSplit
from textvae.evaluation import score_split
from textvae.evaluation.progress import PREFIX

FIELDS = ("rec", "kl", "nll", "tokens", "mean", "logvar")


@pytest.fixture(autouse=True)
def save_even_short_evaluations(monkeypatch):
    monkeypatch.setattr(score_progress, "WORTH_SAVING", 0)


def little_split(count: int = 40) -> TokenizedSplit:
    generator = torch.Generator().manual_seed(3)
    token_ids = [torch.randint(4, 30, (int(torch.randint(2, 9, (1,), generator=generator)),),
                               generator=generator).tolist() for _ in range(count)]
    return TokenizedSplit([" ".join(map(str, ids)) for ids in token_ids], token_ids)


def score(model, split, folder, seed: int = 0):
    return score_split(model, split, batch_size=8, iw_samples=6, seed=seed, iw_chunk=4, save_dir=folder,
                       save_interval=0.0)


def stop_iw_after(monkeypatch, batches: int) -> dict:
    """Make the IW estimate stop the process (as a killed session would) once it has run for `batches`
    batches; returns its call count."""
    calls = {"n": 0}
    real = evaluation.iw_log_likelihood

    def stop_later(*args, **kwargs):
        if calls["n"] == batches:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "iw_log_likelihood", stop_later)
    return calls


def interrupted(monkeypatch, model, split, folder, after_batches: int) -> int:
    """Score until the IW estimate has run for `after_batches` batches, then stop."""
    real = evaluation.iw_log_likelihood
    calls = stop_iw_after(monkeypatch, after_batches)
    with pytest.raises(KeyboardInterrupt):
        score(model, split, folder)
    monkeypatch.setattr(evaluation, "iw_log_likelihood", real)
    return calls["n"]


def counting_calls(monkeypatch) -> dict:
    calls = {"n": 0}
    real = evaluation.iw_log_likelihood

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "iw_log_likelihood", counted)
    return calls


def test_a_resumed_evaluation_scores_only_the_rest_and_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    model, split = tiny_model(), little_split()
    whole = score(model, split, None)
    (tmp_path / "stopped").mkdir()
    assert interrupted(monkeypatch, model, split, tmp_path / "stopped", after_batches=2) == 2
    assert len(list((tmp_path / "stopped").glob(f"{PREFIX}*.npz"))) == 1
    calls = counting_calls(monkeypatch)
    resumed = score(model, split, tmp_path / "stopped")
    assert calls["n"] == 5 - 2  # 40 sentences in batches of 8: only the 3 unscored batches ran
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(resumed, field), getattr(whole, field), err_msg=field)
    assert not list((tmp_path / "stopped").glob(f"{PREFIX}*"))  # complete: the partial scores are removed


def test_saved_scores_of_another_model_or_seed_are_not_reused(tmp_path, monkeypatch):
    split = little_split()
    interrupted(monkeypatch, tiny_model(seed=0), split, tmp_path, after_batches=3)
    calls = counting_calls(monkeypatch)
    other_model = score(tiny_model(seed=1), split, tmp_path)
    assert calls["n"] == 5
    np.testing.assert_array_equal(other_model.nll, score(tiny_model(seed=1), split, None).nll)
    calls["n"] = 0
    score(tiny_model(seed=0), split, tmp_path, seed=7)  # the seed-0 scores are still saved, but this is seed 7
    assert calls["n"] == 5


def test_a_damaged_save_is_ignored_with_a_warning(tmp_path, monkeypatch, caplog):
    model, split = tiny_model(), little_split()
    interrupted(monkeypatch, model, split, tmp_path, after_batches=2)
    (saved,) = tmp_path.glob(f"{PREFIX}*.npz")
    saved.write_bytes(saved.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        scores = score(model, split, tmp_path)
    assert "ignoring unreadable saved scores" in caplog.text
    np.testing.assert_array_equal(scores.nll, score(model, split, None).nll)


def test_a_failed_save_warns_and_scoring_goes_on(tmp_path, caplog):
    model, split = tiny_model(), little_split()
    with caplog.at_level(logging.WARNING):
        scores = score(model, split, tmp_path / "missing")  # no such folder: every save would fail
    assert caplog.text.count("without saving partial scores") == 1
    np.testing.assert_array_equal(scores.nll, score(model, split, None).nll)


def test_evaluate_resumes_in_the_run_dir_and_cleans_up(tiny_run, monkeypatch):
    vae = textvae.load(tiny_run)
    first = vae.evaluate("valid", iw_samples=3, batch_size=4, samples=0, bleu=False)
    assert not list(tiny_run.glob(f"{PREFIX}*"))
    real = evaluation.iw_log_likelihood
    stop_iw_after(monkeypatch, 2)
    monkeypatch.setattr(evaluation, "ScoreProgress", saving_every_batch(evaluation.ScoreProgress))
    with pytest.raises(KeyboardInterrupt):
        vae.evaluate("valid", iw_samples=3, batch_size=4, samples=0, bleu=False)
    assert len(list(tiny_run.glob(f"{PREFIX}*.npz"))) == 1
    monkeypatch.setattr(evaluation, "iw_log_likelihood", real)
    again = vae.evaluate("valid", iw_samples=3, batch_size=4, samples=0, bleu=False)
    assert {key: again[key] for key in ("nll", "kl", "mi", "au")} == {key: first[key] for key in ("nll", "kl", "mi", "au")}
    assert not list(tiny_run.glob(f"{PREFIX}*"))


def saving_every_batch(progress_class):
    """The class with its save interval forced to 0 (the API's default is a minute)."""
    def build(folder, key, arrays, interval=60.0):
        return progress_class(folder, key, arrays, 0.0)
    return build


def test_a_short_evaluation_is_not_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(score_progress, "WORTH_SAVING", 40 * 6 + 1)  # one more than little_split's 40 × k = 6
    monkeypatch.setattr(evaluation, "fingerprint", lambda *args, **kwargs: pytest.fail("digest of a short evaluation"))
    model, split = tiny_model(), little_split()
    with pytest.raises(KeyboardInterrupt):
        stop_iw_after(monkeypatch, 2)
        score(model, split, tmp_path)
    assert not list(tmp_path.iterdir())

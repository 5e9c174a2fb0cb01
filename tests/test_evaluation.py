"""The numbers researchers compare: IW-NLL against exact values, MI, AU, PPL arithmetic, BLEU, detection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import batch_of, tiny_model

import textvae
from textvae.cli import main
from textvae.evaluation import (
    SentenceScores,
    active_units,
    average_precision,
    compare_table,
    copied_share,
    corpus_bleu,
    distinct_n,
    iw_log_likelihood,
    mutual_information,
    roc_auc,
    summarise,
)
from textvae.runtime import noise_generator
from textvae.modeling.posterior import gaussian_log_density, gaussian_log_density_pairs, reparameterize

SENTENCES = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [15, 16, 17, 18]]


def test_iw_nll_equals_the_exact_nll_when_the_decoder_ignores_z():
    model = tiny_model(z_conditioning="init")
    with torch.no_grad():  # z no longer reaches the decoder, and q(z|x) = p(z) = N(0, I)
        model.decoder.z_to_state.weight.zero_()
        model.decoder.z_to_state.bias.zero_()
        model.posterior.to_mean_logvar.weight.zero_()
        model.posterior.to_mean_logvar.bias.zero_()
    batch = batch_of(SENTENCES)
    mean, logvar = model.encode(batch.token_ids, batch.lengths)
    log_px = iw_log_likelihood(model, batch.token_ids, batch.lengths, mean, logvar, samples=20, chunk=7,
                               generator=noise_generator(torch.device("cpu"), 0))
    hidden, _ = model.decoder(batch.token_ids[:, :-1], None)
    exact_nll, _ = model.sequence_nll(hidden, batch.token_ids[:, 1:], batch.lengths - 1)
    assert torch.allclose(-log_px, exact_nll, atol=1e-4)


def test_iw_with_one_sample_is_the_single_sample_elbo_for_the_same_z():
    model = tiny_model()
    batch = batch_of(SENTENCES)
    mean, logvar = model.encode(batch.token_ids, batch.lengths)
    log_px = iw_log_likelihood(model, batch.token_ids, batch.lengths, mean, logvar, samples=1,
                               generator=noise_generator(torch.device("cpu"), 3))
    z = mean + torch.randn(mean.shape, generator=noise_generator(torch.device("cpu"), 3)) * torch.exp(0.5 * logvar)
    with torch.no_grad():
        rec = model(batch.token_ids, batch.lengths, z=z).rec_nll
    elbo = -rec + gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)) - gaussian_log_density(z, mean, logvar)
    assert torch.allclose(log_px, elbo, atol=1e-5)


def test_iw_nll_is_below_the_elbo_and_tightens_with_more_samples(tiny_run):
    vae = textvae.load(tiny_run)
    sentences = vae.corpus_split("valid").texts[:100]
    by_k = {}
    for k in (1, 10, 100):
        by_k[k] = np.mean([vae.evaluate(sentences=sentences, iw_samples=k, seed=seed, bleu=False, samples=0)["nll"]
                           for seed in range(3)])
    neg_elbo = vae.evaluate(sentences=sentences, iw_samples=0, bleu=False, samples=0)["neg_elbo"]
    assert by_k[100] <= by_k[10] <= by_k[1]
    assert by_k[100] < neg_elbo


def test_mutual_information_is_zero_when_the_posterior_ignores_x_and_positive_otherwise():
    generator = noise_generator(torch.device("cpu"), 0)
    ignoring = mutual_information(torch.full((2000, 4), 0.3), torch.full((2000, 4), -1.0), generator)
    informative = mutual_information(torch.randn(2000, 4, generator=generator) * 2, torch.full((2000, 4), -3.0),
                                     generator)
    assert abs(ignoring) < 0.05
    assert informative > 2.0


def previous_mutual_information(mean, logvar, generator, chunk=512):
    """The MI estimate as it was computed before the matrix products: a (chunk, N, latent) tensor per chunk."""
    count, latent = mean.shape
    neg_entropy = (-0.5 * latent * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = reparameterize(mean, logvar, generator=generator)
    pieces = [torch.logsumexp(gaussian_log_density(z[s: s + chunk].unsqueeze(1), mean.unsqueeze(0),
                                                   logvar.unsqueeze(0)), dim=1) - math.log(count)
              for s in range(0, count, chunk)]
    return float(neg_entropy - torch.cat(pieces).mean())


def random_posteriors(count: int, latent: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    mean = (torch.randn(count, latent, generator=generator, dtype=torch.float64) * 2).to(dtype)
    logvar = (torch.rand(count, latent, generator=generator, dtype=torch.float64) * 9 - 8).to(dtype)  # sd 0.02..1.6
    return mean, logvar, generator


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_gaussian_log_density_equals_the_broadcast_formula(dtype):
    mean, logvar, generator = random_posteriors(300, 16, dtype)
    z = reparameterize(mean[:70], logvar[:70], generator=generator)  # near their own posteriors: the hard case
    z = torch.cat([z, (torch.randn(30, 16, generator=generator, dtype=torch.float64) * 3).to(dtype)])
    expected = gaussian_log_density(z.unsqueeze(1).double(), mean.unsqueeze(0).double(), logvar.unsqueeze(0).double())
    pairs = gaussian_log_density_pairs(z, mean, logvar)
    assert pairs.shape == (100, 300) and pairs.dtype == torch.float64
    torch.testing.assert_close(pairs, expected, rtol=1e-12, atol=1e-9)
    if dtype == torch.float32:  # and within fp32 rounding of the formula evaluated in fp32
        torch.testing.assert_close(pairs.float(), gaussian_log_density(z.unsqueeze(1), mean.unsqueeze(0),
                                                                       logvar.unsqueeze(0)), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mutual_information_equals_the_previous_estimate_in_any_chunking(dtype):
    mean, logvar, _ = random_posteriors(1000, 8, dtype, seed=1)
    previous = previous_mutual_information(mean, logvar, torch.Generator().manual_seed(5))
    for chunk in (None, 1, 97, 5000):
        estimate = mutual_information(mean, logvar, torch.Generator().manual_seed(5), chunk=chunk)
        assert estimate == pytest.approx(previous, rel=1e-5 if dtype == torch.float32 else 1e-12), chunk


def test_active_units_counts_a_constructed_case_exactly():
    generator = torch.Generator().manual_seed(0)
    means = torch.cat([torch.randn(500, 3, generator=generator),              # variance ~1: active
                       torch.randn(500, 2, generator=generator) * 0.05,       # variance ~0.0025: inactive
                       torch.zeros(500, 1)], dim=1)                            # constant: inactive
    assert active_units(means) == 3
    assert active_units(means, threshold=0.001) == 5


def test_perplexity_by_hand_on_two_sentences():
    scores = SentenceScores(rec=np.array([10.0, 20.0]), kl=np.zeros(2), nll=np.array([10.0, 20.0]),
                            tokens=np.array([4.0, 6.0]))  # e.g. 3 words + <eos>, 5 words + <eos>
    results = summarise(scores)
    assert results["nll"] == 15.0  # mean nats per sentence
    assert results["ppl"] == pytest.approx(math.exp(30.0 / 10.0))  # total NLL / total predicted tokens
    assert results["tokens"] == 10 and results["sentences"] == 2


def test_mi_of_several_draws_is_their_mean_with_their_spread_and_one_draw_is_the_seeds():
    generator = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(300, 4, generator=generator) * 2, torch.full((300, 4), -1.0)
    scores = SentenceScores(rec=np.ones(300), kl=np.ones(300), nll=np.ones(300), tokens=np.full(300, 5.0),
                            mean=mean.numpy(), logvar=logvar.numpy())
    draws = [mutual_information(mean, logvar, noise_generator(torch.device("cpu"), 7 + draw)) for draw in range(4)]
    one = summarise(scores, seed=7)
    assert one["mi"] == draws[0] and "mi_sd" not in one
    several = summarise(scores, seed=7, mi_draws=4)
    assert several["mi"] == pytest.approx(sum(draws) / 4)
    assert several["mi_sd"] == pytest.approx(float(np.std(draws, ddof=1))) and several["mi_sd"] > 0


def test_evaluate_reports_the_mi_spread_of_several_draws_and_rejects_fewer_than_one(tiny_run, capsys):
    command = ["evaluate", str(tiny_run), "--split", "valid", "--iw-samples", "0", "--samples", "0", "--no-bleu"]
    assert main([*command, "--mi-draws", "3"]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines() if len(line.split()) == 2)
    assert float(printed["mi_sd"]) > 0 and "mi" in printed
    with pytest.raises(textvae.TextVAEError, match="mi_draws: must be a whole number >= 1"):
        textvae.load(tiny_run).evaluate(split="valid", iw_samples=0, samples=0, mi_draws=0)


def test_bleu_of_identical_text_is_100_and_of_different_text_is_lower():
    text = ["the happy dogs chased their soft ball .", "will the clerk review the report ?"]
    assert corpus_bleu(text, text) == pytest.approx(100.0)
    assert corpus_bleu(["the sad cats ate a hard bone ."] * 2, text) < 30


def test_sample_quality_measures():
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert copied_share(["the cat  sat", "new one"], ["the cat sat", "x"]) == 0.5


def test_roc_auc_and_average_precision_on_separable_and_tied_scores():
    inliers, outliers = np.array([1.0, 2.0, 3.0]), np.array([5.0, 6.0])
    assert roc_auc(inliers, outliers) == 1.0 and average_precision(inliers, outliers) == 1.0
    assert roc_auc(outliers, inliers) == 0.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5


def test_compare_table_has_a_column_per_run_and_the_paper_rows():
    table = compare_table({"a": {"nll": 100.5, "kl": 2.0, "au": 3}, "b": {"nll": 99.0}})
    lines = table.splitlines()
    assert lines[0] == "| metric | a | b |"
    assert "| NLL | 100.50 | 99.00 |" in lines and "| AU | 3 | – |" in lines


def test_evaluate_reports_the_documented_keys_and_score_orders_rows(tiny_run, tmp_path):
    vae = textvae.load(tiny_run)
    results = vae.evaluate("valid", iw_samples=5, samples=20)
    for key in ("nll", "neg_elbo", "rec", "kl", "mi", "au", "ppl", "tokens", "sentences", "iw_samples", "bleu",
                "distinct_1", "distinct_2", "self_bleu", "copied_share", "unigram_nll"):
        assert key in results, key
    assert results["neg_elbo"] == pytest.approx(results["rec"] + results["kl"])
    rows = vae.score(["the dogs ran .", "the clerk wrote the report ."], iw_samples=5)
    assert [row["text"] for row in rows] == ["the dogs ran .", "the clerk wrote the report ."]
    assert rows[0]["tokens"] == 5  # four words and <eos>
    assert rows[0]["nll_per_token"] == pytest.approx(rows[0]["iw_nll"] / 5)


@pytest.mark.slow
def test_detect_separates_the_synthetic_language_from_shuffled_words(demo_run, tmp_path):
    vae = textvae.load(demo_run)
    inliers = vae.corpus_split("test").texts[:300]
    rng = np.random.default_rng(0)
    shuffled = [" ".join(rng.permutation(sentence.split())) for sentence in inliers]
    report = vae.detect(inliers, shuffled, iw_samples=20)
    assert report["iw_nll"]["roc_auc"] >= 0.95, report
    assert report["neg_elbo"]["roc_auc"] >= 0.95, report

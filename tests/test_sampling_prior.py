"""The fitted sampling prior (modeling/sampling_prior.py): the fit, its draws, the file, and where `sample` uses it."""

from __future__ import annotations

import shutil

import pytest
import torch

import textvae
from textvae.cli import main
from textvae.errors import TextVAEError
from textvae.modeling.sampling_prior import SAMPLING_PRIOR_FILE, FittedGaussian


def correlated_codes(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` draws of a 3-d Gaussian with a known mean and a covariance with correlations, and both parameters."""
    generator = torch.Generator().manual_seed(seed)
    mean = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    factor = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.2]], dtype=torch.float64)
    codes = mean + torch.randn(count, 3, generator=generator, dtype=torch.float64) @ factor.T
    return codes, mean, factor @ factor.T


def test_the_fit_recovers_a_gaussians_mean_and_covariance():
    codes, mean, covariance = correlated_codes(50_000)
    fitted = FittedGaussian.fit(codes.float())
    assert fitted.sentences == 50_000
    assert torch.allclose(fitted.mean.double(), mean, atol=0.02)
    fitted_covariance = fitted.scale_tril.double() @ fitted.scale_tril.double().T
    assert torch.allclose(fitted_covariance, covariance, atol=0.02)
    assert torch.equal(fitted.scale_tril, fitted.scale_tril.tril())


def test_its_draws_have_the_fitted_moments_and_follow_the_generator():
    codes, mean, covariance = correlated_codes(50_000)
    fitted = FittedGaussian.fit(codes.float())
    draws = fitted.sample(50_000, torch.Generator().manual_seed(1)).double()
    assert torch.allclose(draws.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(draws.T), covariance, atol=0.03)
    again = fitted.sample(5, torch.Generator().manual_seed(7))
    assert torch.equal(again, fitted.sample(5, torch.Generator().manual_seed(7)))


def test_a_dimension_the_codes_never_use_still_has_a_factor():
    codes = torch.zeros(100, 2)
    codes[:, 0] = torch.linspace(-1, 1, 100)  # dimension 1 constant: a singular covariance without the jitter
    fitted = FittedGaussian.fit(codes)
    assert torch.isfinite(fitted.scale_tril).all() and fitted.scale_tril[1, 1] > 0


def test_the_fit_refuses_fewer_than_two_codes():
    with pytest.raises(ValueError, match="at least 2 codes"):
        FittedGaussian.fit(torch.zeros(1, 4))


def test_the_file_round_trips_and_is_absent_from_runs_without_it(tmp_path):
    assert FittedGaussian.load(tmp_path) is None
    fitted = FittedGaussian.fit(correlated_codes(200)[0].float())
    fitted.save(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [SAMPLING_PRIOR_FILE]  # no scratch file left
    loaded = FittedGaussian.load(tmp_path)
    assert torch.equal(loaded.mean, fitted.mean) and torch.equal(loaded.scale_tril, fitted.scale_tril)
    assert loaded.sentences == 200


def test_a_damaged_file_is_one_clear_error(tmp_path):
    (tmp_path / SAMPLING_PRIOR_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(TextVAEError, match="cannot be read .*delete it to sample from N\\(0, I\\)"):
        FittedGaussian.load(tmp_path)


def test_training_fits_it_from_the_best_models_codes_and_sample_draws_from_it(tiny_run):
    """The default recipe (demo) fits the prior; `sample` draws z from it ('auto' and 'fitted'), 'standard' from
    N(0, I), each with the same seed giving the same sentences."""
    vae = textvae.load(tiny_run)
    assert (tiny_run / SAMPLING_PRIOR_FILE).is_file() and vae.sampling_prior is not None
    texts = vae.corpus_split("train").texts[:200]
    means, _ = vae.posterior(texts)
    fitted = vae.sampling_prior
    assert fitted.sentences > 200
    # the fit's mean is the codes' mean (200 of its sentences agree with it within their spread)
    assert ((means.mean(0) - fitted.mean).abs() <= 4 * means.std(0) / 200 ** 0.5 + 1e-4).all()
    generator = torch.Generator().manual_seed(3)
    assert torch.equal(vae.prior_codes(4, generator, vae.prior_to_draw_from("fitted")),
                       fitted.sample(4, torch.Generator().manual_seed(3)))
    assert vae.prior_to_draw_from("auto") is fitted and vae.prior_to_draw_from("standard") is None
    assert vae.sample(6, seed=0) == vae.sample(6, seed=0, prior="fitted")
    assert vae.sample(6, seed=0, prior="standard") == vae.sample(6, seed=0, prior="standard")


def test_a_run_without_it_samples_from_the_standard_prior_and_refuses_fitted(tiny_run, tmp_path, capsys):
    run = tmp_path / "no_prior"
    shutil.copytree(tiny_run, run)
    (run / SAMPLING_PRIOR_FILE).unlink()
    vae = textvae.load(run)
    assert vae.sampling_prior is None and vae.prior_to_draw_from("auto") is None
    assert vae.sample(3, seed=0) == textvae.load(tiny_run).sample(3, seed=0, prior="standard")
    with pytest.raises(TextVAEError, match="no sampling_prior.safetensors"):
        vae.sample(3, prior="fitted")
    with pytest.raises(TextVAEError, match="prior 'gaussian': choose one of auto, standard, fitted"):
        vae.sample(3, prior="gaussian")
    assert main(["sample", str(run), "-n", "2", "--prior", "fitted"]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "train.fit_sampling_prior" in error[0]


def test_save_pretrained_carries_it(tiny_run, tmp_path):
    vae = textvae.load(tiny_run)
    vae.save_pretrained(tmp_path / "copy")
    copied = textvae.load(tmp_path / "copy")
    assert torch.equal(copied.sampling_prior.scale_tril, vae.sampling_prior.scale_tril)
    assert copied.sample(3, seed=1) == vae.sample(3, seed=1)

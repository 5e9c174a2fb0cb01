"""A Gaussian fitted to the training sentences' posterior means, to draw new sentences from where N(0, I) fails.

A VAE trained with β < 1 or generous free bits (the reconstructing recipes: configs/demo.yaml,
configs/ptb_homotopy.yaml) keeps many nats in z, and its aggregate posterior drifts away from the prior
N(0, I): prior draws then land where no sentence was encoded, and their decodes run on or break down.
Fitting a density to the codes of training sentences after training and sampling from it instead is the
"ex-post density estimation" of Ghosh et al. 2020 (From Variational to Deterministic Autoencoders); one
full-covariance Gaussian is its simplest form. The model's prior, its KL and every likelihood figure are
unchanged: only where `sample` draws z from changes (`train.fit_sampling_prior`, `sample --prior`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic_files import replace_atomically
from ..errors import TextVAEError

SAMPLING_PRIORS = ("auto", "standard", "fitted")  # what `sample --prior` accepts (auto: fitted when the run has it)
SAMPLING_PRIOR_FILE = "sampling_prior.safetensors"  # in the run dir, beside model.safetensors
FIT_SENTENCES = 10_000  # training sentences whose posterior means are fitted (156 a dimension for the demo's 64)
JITTER = 1e-6  # added to the covariance's diagonal so its Cholesky factor exists even for a dimension z ignores


@dataclass
class FittedGaussian:
    """N(mean, scale_tril scale_trilᵀ) over the latent space, fitted to `sentences` posterior means."""

    mean: torch.Tensor  # (latent,)
    scale_tril: torch.Tensor  # (latent, latent), lower triangular
    sentences: int

    @classmethod
    def fit(cls, means: torch.Tensor) -> FittedGaussian:
        """The maximum-likelihood Gaussian of the rows of `means` (n, latent), computed in float64."""
        if means.dim() != 2 or means.size(0) < 2:
            raise ValueError(f"fitting a Gaussian needs at least 2 codes in a (n, latent) tensor, got {tuple(means.shape)}")
        codes = means.detach().to("cpu", torch.float64)
        covariance = torch.cov(codes.T, correction=0).reshape(codes.size(1), codes.size(1))
        covariance += JITTER * torch.eye(codes.size(1), dtype=torch.float64)
        return cls(codes.mean(0).float(), torch.linalg.cholesky(covariance).float(), codes.size(0))

    def sample(self, count: int, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """`count` codes (count, latent): N(0, I) noise from `generator` (as the standard prior draws it), mapped
        through the fitted mean and Cholesky factor."""
        noise = torch.randn((count, self.mean.numel()), generator=generator, device=device)
        return self.mean.to(device) + noise @ self.scale_tril.to(device).T

    def save(self, folder: str | Path) -> None:
        """Write the fit to folder/sampling_prior.safetensors, atomically (atomic_files.replace_atomically)."""
        tensors = {"mean": self.mean.contiguous(), "scale_tril": self.scale_tril.contiguous()}
        replace_atomically(lambda tmp: save_file(tensors, str(tmp), metadata={"sentences": str(self.sentences)}),
                           Path(folder) / SAMPLING_PRIOR_FILE)

    @classmethod
    def load(cls, folder: str | Path) -> FittedGaussian | None:
        """The fit saved in `folder`, or None when it has none (runs trained without train.fit_sampling_prior)."""
        path = Path(folder) / SAMPLING_PRIOR_FILE
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                sentences = int((handle.metadata() or {}).get("sentences", 0))
                return cls(handle.get_tensor("mean"), handle.get_tensor("scale_tril"), sentences)
        except (SafetensorError, OSError, KeyError, ValueError) as error:
            raise TextVAEError(f"{path} cannot be read ({str(error).splitlines()[0][:120]}); delete it to sample from "
                               "N(0, I), or train the run again") from None

"""The Gaussian posterior q(z|x) = N(mu, diag(exp(logvar))), its reparameterized samples and KL to N(0, I)."""

from __future__ import annotations

import math

import torch
from torch import nn


class GaussianPosterior(nn.Module):
    """Maps a sentence summary to the mean and log-variance of q(z|x) (Kingma & Welling 2014)."""

    def __init__(self, summary_size: int, latent_size: int):
        super().__init__()
        self.to_mean_logvar = nn.Linear(summary_size, 2 * latent_size)

    def forward(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.to_mean_logvar(summary).float().chunk(2, dim=-1)
        return mean, logvar


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, samples: int | None = None,
                    generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """z = mean + sigma * eps with eps ~ N(0, I); with `samples`, shape (samples, batch, latent).
    eps is `noise` when given (drawn by the caller), else drawn from `generator` (or torch's global one)."""
    shape = mean.shape if samples is None else (samples, *mean.shape)
    if noise is None:
        noise = torch.randn(shape, device=mean.device, dtype=mean.dtype, generator=generator)
    return mean + noise * torch.exp(0.5 * logvar)


def kl_per_dimension(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each latent dimension, in nats: 0.5 (mu² + sigma² − log sigma² − 1)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, diag(exp(logvar))) summed over the last (latent) dimension."""
    return -0.5 * (((z - mean) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)

"""The Gaussian posterior q(z|x) = N(mu, diag(exp(logvar))), its reparameterized samples and KL to N(0, I)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BatchNormalizedMean(nn.Module):
    """BN-VAE (Zhu et al. 2020): batch normalisation of the posterior means with a fixed scale gamma and a
    learned shift beta per dimension, mu_hat = gamma (mu - mean_B(mu)) / std_B(mu) + beta.

    Over a batch each dimension's mu_hat then has mean beta and mean square gamma^2 v / (v + eps) + beta^2
    (v: the batch variance of the raw means), and since KL_d = (mu^2 + sigma^2 - log sigma^2 - 1) / 2 >= mu^2 / 2,
    the batch-mean KL is at least ~ latent * gamma^2 / 2 + sum_d beta_d^2 / 2 (docs/collapse.md). eps is
    EPS = 1e-12, not batch norm's usual 1e-5: with 1e-5, minimising the KL shrinks the raw means' batch
    variance below eps within tens of steps and the floor vanishes (measured; tests/test_collapse.py).
    Evaluation uses the running statistics, as batch norm does.
    """

    EPS = 1e-12

    def __init__(self, latent_size: int, gamma: float):
        super().__init__()
        self.gamma = gamma
        self.normalize = nn.BatchNorm1d(latent_size, eps=self.EPS, affine=False)
        self.shift = nn.Parameter(torch.zeros(latent_size))

    def forward(self, mean: torch.Tensor) -> torch.Tensor:
        if self.training and mean.size(0) == 1:  # batch statistics need two sentences: use the running ones
            normalized = F.batch_norm(mean, self.normalize.running_mean, self.normalize.running_var,
                                      training=False, eps=self.normalize.eps)
        else:
            normalized = self.normalize(mean)
        return self.gamma * normalized + self.shift

    def floor(self) -> float:
        """The analytic lower bound on the batch-mean KL per sentence: sum_d (gamma^2 + beta_d^2) / 2."""
        return float(0.5 * (self.gamma ** 2 + self.shift.detach().float().pow(2)).sum())


class GaussianPosterior(nn.Module):
    """Maps a sentence summary to the mean and log-variance of q(z|x) (Kingma & Welling 2014); with
    `bn_gamma` > 0 the means are batch-normalised with that fixed scale (BN-VAE, `BatchNormalizedMean`)."""

    def __init__(self, summary_size: int, latent_size: int, bn_gamma: float = 0.0):
        super().__init__()
        self.to_mean_logvar = nn.Linear(summary_size, 2 * latent_size)
        self.mean_norm = BatchNormalizedMean(latent_size, bn_gamma) if bn_gamma > 0 else None

    def forward(self, summary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.to_mean_logvar(summary).float().chunk(2, dim=-1)
        if self.mean_norm is not None:
            mean = self.mean_norm(mean)
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


def gaussian_log_density_pairs(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z_i; mean_j, diag(exp(logvar_j))) for every pair: (rows of z, rows of mean), in float64.

    The same values as gaussian_log_density(z.unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0)) up to
    float rounding, written as one matrix product so that no (rows, N, latent) tensor exists: with
    p = exp(−logvar), sum_d (z_d − mean_d)² p_d = sum_d z_d² p_d − 2 z_d mean_d p_d + mean_d² p_d, i.e.
    [z², z, 1] · [p, −2 mean p, sum(mean² p + logvar) + latent log 2π]. Float64, because the expansion
    subtracts large terms where a posterior is narrow (p large) and z lies near its mean.
    """
    z, mean, logvar = z.double(), mean.double(), logvar.double()
    precision = torch.exp(-logvar)
    constant = (mean.pow(2) * precision + logvar).sum(-1, keepdim=True) + z.size(-1) * math.log(2 * math.pi)
    left = torch.cat([z.pow(2), z, torch.ones_like(z[:, :1])], dim=-1)
    right = torch.cat([precision, -2.0 * mean * precision, constant], dim=-1)
    return -0.5 * (left @ right.t())

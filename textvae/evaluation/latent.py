"""Latent statistics of a split's posteriors: the mutual information I(x; z) (Hoffman & Johnson 2016, estimated as
He et al. 2019 do) and the active units (Burda et al. 2016), the two numbers that tell posterior collapse."""

from __future__ import annotations

import math

import torch

from ..modeling.posterior import gaussian_log_density_pairs, reparameterize
from ..runtime import noise_generator


MI_PAIRS_PER_CHUNK = 1 << 22  # sentence pairs whose log-density is held at once: 32 MB of float64


def mutual_information(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                       chunk: int | None = None) -> float:
    """I(x; z) under q (He et al. 2019): E_x E_q(z|x)[log q(z|x) − log q(z)], where q(z) is the aggregate
    posterior over the evaluated sentences, estimated with one z per sentence. log q(z_i) needs the density
    of every z_i under every sentence's posterior: `chunk` rows of z at a time (by default as many as keep
    the (rows, N) matrix of log-densities under MI_PAIRS_PER_CHUNK), as matrix products, so memory stays
    bounded however many sentences there are."""
    count, latent = mean.shape
    neg_entropy = (-0.5 * latent * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = reparameterize(mean, logvar, generator=generator)
    chunk = chunk or max(1, MI_PAIRS_PER_CHUNK // max(count, 1))
    log_aggregate = []
    for start in range(0, count, chunk):
        log_q = gaussian_log_density_pairs(z[start: start + chunk], mean, logvar)
        log_aggregate.append(torch.logsumexp(log_q, dim=1) - math.log(count))
    return float(neg_entropy - torch.cat(log_aggregate).mean())


def mutual_information_draws(mean: torch.Tensor, logvar: torch.Tensor, seed: int, draws: int) -> list[float]:
    """`draws` one-draw MI estimates, with the noise seeds seed, seed + 1, ... (the first is evaluation's)."""
    return [mutual_information(mean, logvar, noise_generator(torch.device("cpu"), seed + draw)) for draw in range(draws)]


def active_units(mean: torch.Tensor, threshold: float = 0.01) -> int:
    """Dimensions whose posterior mean varies across sentences: Cov_x(E_q[z]) > threshold (Burda et al. 2016)."""
    return int((mean.var(dim=0, unbiased=True) > threshold).sum()) if mean.size(0) > 1 else 0

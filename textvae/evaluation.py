"""Corpus-level scores: the ELBO and its parts per sentence, and the perplexity bound it gives.

Conventions (see README "Metrics"): NLL and KL are per sentence in nats; perplexity is
exp(total NLL / total predicted tokens), where predicted tokens are the words plus one <eos> per
sentence (<bos> is never predicted). For a VAE the NLL here is the ELBO bound −ELBO = rec + KL;
for the LM baseline it is the exact NLL.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from .data import TokenizedSplit, iterate_batches
from .modeling import TextVAE


def noise_generator(device: torch.device, seed: int) -> torch.Generator:
    """A private random stream for evaluation, so scores are reproducible and training's stream is untouched."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


@torch.no_grad()
def evaluate_elbo(model: TextVAE, split: TokenizedSplit, batch_size: int = 128, seed: int = 0) -> dict[str, float]:
    """−ELBO, reconstruction NLL, KL (per sentence, one posterior sample each) and the ELBO-bound PPL."""
    was_training = model.training
    model.eval()
    device = model.device
    generator = noise_generator(device, seed)
    special = {key: getattr(model.config, key) for key in ("pad_token_id", "bos_token_id", "eos_token_id")}
    rec_total = kl_total = 0.0
    kl_per_dim = None
    sentences = tokens = 0
    for batch in iterate_batches(split, batch_size, special):
        output = model(batch.token_ids.to(device), batch.lengths, generator=generator)
        rec_total += float(output.rec_nll.sum())
        if output.kl is not None:
            kl_total += float(output.kl.sum())
            dims = output.kl.sum(0).double().cpu()
            kl_per_dim = dims if kl_per_dim is None else kl_per_dim + dims
        sentences += len(batch.indices)
        tokens += batch.predicted_tokens
    model.train(was_training)
    if sentences == 0:
        raise ValueError("nothing to evaluate: the split has no sentences")
    neg_elbo = (rec_total + kl_total) / sentences
    results = {
        "neg_elbo": neg_elbo,
        "rec": rec_total / sentences,
        "kl": kl_total / sentences,
        "ppl_bound": math.exp((rec_total + kl_total) / tokens),
        "sentences": sentences,
        "tokens": tokens,
    }
    if kl_per_dim is not None:
        results["kl_per_dim"] = [round(v / sentences, 5) for v in kl_per_dim.tolist()]
    else:
        results["nll"] = results["rec"]
        results["ppl"] = results["ppl_bound"]
    return results


def unigram_nll(train: TokenizedSplit, split: TokenizedSplit, vocab_size: int, eos_id: int) -> float:
    """Per-sentence NLL of a add-one-smoothed unigram model fitted on `train`: the floor any model must beat."""
    counts = Counter(token for ids in train.token_ids for token in ids)
    counts[eos_id] += len(train.token_ids)
    total = sum(counts.values()) + vocab_size
    log_prob = {token: math.log((count + 1) / total) for token, count in counts.items()}
    unseen = math.log(1 / total)
    nll = sum(-log_prob.get(token, unseen) for ids in split.token_ids for token in [*ids, eos_id])
    return nll / max(len(split.token_ids), 1)


# ---- importance-weighted NLL, mutual information, active units (the evaluation release) ------------

@torch.no_grad()
def iw_log_likelihood(model: TextVAE, token_ids: torch.Tensor, lengths: torch.Tensor, samples: int,
                      chunk: int = 50, generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x) per sentence by importance sampling with q(z|x) as proposal (Burda et al. 2016):
    logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log k, with the encoder run once."""
    from .modeling.posterior import gaussian_log_density, reparameterize

    mean, logvar = model.encode(token_ids, lengths)
    batch = token_ids.size(0)
    log_weights = []
    for start in range(0, samples, chunk):
        count = min(chunk, samples - start)
        z = reparameterize(mean, logvar, samples=count, generator=generator)  # (count, batch, latent)
        flat_z = z.reshape(count * batch, -1)
        repeated = token_ids.repeat(count, 1)
        hidden, _ = model.decoder(repeated[:, :-1], flat_z)
        rec_nll, _ = model.sequence_nll(hidden, repeated[:, 1:], (lengths - 1).repeat(count))
        log_prior = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_posterior = gaussian_log_density(z, mean, logvar)
        log_weights.append(-rec_nll.view(count, batch) + log_prior - log_posterior)
    weights = torch.cat(log_weights)
    return torch.logsumexp(weights, dim=0) - math.log(samples)


def mutual_information(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
                       chunk: int = 512) -> float:
    """I(x; z) under q (He et al. 2019): E_x E_q(z|x)[log q(z|x) − log q(z)], where q(z) is the aggregate
    posterior over the evaluated sentences, estimated with one z per sentence."""
    from .modeling.posterior import gaussian_log_density, reparameterize

    count, latent = mean.shape
    neg_entropy = (-0.5 * latent * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = reparameterize(mean, logvar, generator=generator)
    log_aggregate = []
    for start in range(0, count, chunk):
        z_chunk = z[start: start + chunk].unsqueeze(1)  # (chunk, 1, latent) against every posterior
        log_q = gaussian_log_density(z_chunk, mean.unsqueeze(0), logvar.unsqueeze(0))  # (chunk, count)
        log_aggregate.append(torch.logsumexp(log_q, dim=1) - math.log(count))
    return float(neg_entropy - torch.cat(log_aggregate).mean())


def active_units(mean: torch.Tensor, threshold: float = 0.01) -> int:
    """Dimensions whose posterior mean varies across sentences: Cov_x(E_q[z]) > threshold (Burda et al. 2016)."""
    return int((mean.var(dim=0, unbiased=True) > threshold).sum())

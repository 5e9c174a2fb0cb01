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

"""Scores researchers can compare: importance-weighted NLL and PPL, ELBO parts, MI, active units, BLEU.

Conventions (docs/metrics.md): NLL, rec and KL are per sentence in nats; perplexity `ppl` is
exp(total NLL / total words), where words are the whitespace-separated words of each sentence plus one
<eos> (the papers' convention, whatever the tokenizer); `ppl_per_token` divides by the predicted tokens
instead (tokens plus one <eos> per sentence; <bos> is never predicted), which differs from `ppl` only for
subword (BPE, pretrained) tokenizers. A VAE's `nll` is the importance-weighted estimate with k samples
(Burda et al. 2016), an upper bound that tightens with k; `neg_elbo` = rec + KL is reported beside it.
For the LM baseline (no z) the NLL is exact.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import TokenizedSplit, iterate_batches
from ..modeling import TextVAE
from ..modeling.posterior import gaussian_log_density, kl_per_dimension, reparameterize
from ..runtime import autocast, keep_freed_memory, noise_generator
from .latent import active_units, mutual_information_draws
from .progress import ScoreProgress, fingerprint, worth_saving


@torch.no_grad()
def iw_log_likelihood(model: TextVAE, token_ids: torch.Tensor, lengths: torch.Tensor, mean: torch.Tensor,
                      logvar: torch.Tensor, samples: int, chunk: int = 50,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """log p(x) per sentence by importance sampling with q(z|x) as proposal (Burda et al. 2016):
    logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log k. The posterior (mean, logvar) comes
    from one encoder pass; samples are decoded `chunk` at a time, all sentences of the batch together."""
    batch = token_ids.size(0)
    log_weights = []
    for start in range(0, samples, chunk):
        count = min(chunk, samples - start)
        z = reparameterize(mean, logvar, samples=count, generator=generator)  # (count, batch, latent)
        rec_nll, _ = model.reconstruction_nll(token_ids.repeat(count, 1), lengths.repeat(count),
                                              z.reshape(count * batch, -1))
        log_prior = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_weights.append(-rec_nll.view(count, batch) + log_prior - gaussian_log_density(z, mean, logvar))
    return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(samples)


@dataclass
class SentenceScores:
    """Per-sentence results over a split, in the split's order (numpy arrays)."""

    rec: np.ndarray  # −log p(x|z), one posterior sample z
    kl: np.ndarray  # KL(q(z|x) || p(z)), 0 for an LM
    nll: np.ndarray  # IW-NLL (VAE with iw_samples > 0), exact NLL (LM), else −ELBO
    tokens: np.ndarray  # predicted tokens
    mean: np.ndarray | None = None  # posterior means (sentences, latent)
    logvar: np.ndarray | None = None
    words: np.ndarray | None = None  # whitespace-separated words + 1 (<eos>), the per-word PPL's denominator

    @property
    def neg_elbo(self) -> np.ndarray:
        return self.rec + self.kl


@torch.no_grad()
def score_split(model: TextVAE, split: TokenizedSplit, batch_size: int = 128, iw_samples: int = 0,
                seed: int = 0, iw_chunk: int = 50, dtype: torch.dtype = torch.float32,
                progress: bool = False, save_dir: Path | None = None, save_interval: float = 60.0) -> SentenceScores:
    """Every sentence's rec, KL, NLL and posterior, with one encoder pass per sentence; matrix products
    run under `dtype` autocast (sums and log-densities stay fp32); `progress` shows a bar with an ETA.
    With `save_dir`, partial scores of a long evaluation are saved there every `save_interval` seconds and
    a rerun resumes them (evaluation/progress.py)."""
    device = model.device
    if device.type == "cpu":
        keep_freed_memory()
    with autocast(device, dtype):
        return _score_split(model, split, batch_size, iw_samples, seed, iw_chunk, progress, save_dir, save_interval,
                            dtype)


def batch_generator(device: torch.device, seed: int, number: int) -> torch.Generator:
    """Batch `number`'s own noise stream, so a batch's scores do not depend on which batches ran before it
    (a resumed evaluation gives the numbers of an uninterrupted one)."""
    return noise_generator(device, seed * 1_000_003 + number)


def _score_split(model: TextVAE, split: TokenizedSplit, batch_size: int, iw_samples: int, seed: int,
                 iw_chunk: int, progress: bool, save_dir: Path | None, save_interval: float,
                 dtype: torch.dtype) -> SentenceScores:
    was_training = model.training
    model.eval()
    device = model.device
    special = {key: getattr(model.config, key) for key in ("pad_token_id", "bos_token_id", "eos_token_id")}
    count = len(split)
    latent = model.config.latent_size if model.config.has_latent else 0
    arrays = {"rec": np.zeros(count), "kl": np.zeros(count), "nll": np.zeros(count), "tokens": np.zeros(count),
              "mean": np.zeros((count, latent)), "logvar": np.zeros((count, latent))}
    if save_dir is not None and not worth_saving(count, iw_samples):
        save_dir = None
    key = fingerprint(model, split.texts, split.token_ids, iw_samples=iw_samples, seed=seed, batch_size=batch_size,
                      iw_chunk=iw_chunk, dtype=dtype) if save_dir is not None else ""
    saved = ScoreProgress(save_dir, key, arrays, save_interval)
    bar = tqdm(total=count, initial=int(saved.done.sum()), disable=not progress, unit="sentence", dynamic_ncols=True,
               desc=f"IW-NLL k={iw_samples}" if iw_samples and latent else "scoring")
    for number, batch in enumerate(iterate_batches(split, batch_size, special)):
        if saved.covers(batch.indices):
            continue
        batch_scores = score_batch(model, batch.token_ids.to(device), batch.lengths, iw_samples, iw_chunk,
                                   batch_generator(device, seed, number))
        for name, values in batch_scores.items():
            arrays[name][batch.indices] = values
        saved.mark(batch.indices)
        bar.update(len(batch.indices))
    bar.close()
    saved.finish()
    model.train(was_training)
    scores = SentenceScores(arrays["rec"], arrays["kl"], arrays["nll"], arrays["tokens"], words=word_counts(split))
    if latent:
        scores.mean, scores.logvar = arrays["mean"], arrays["logvar"]
    return scores


def word_counts(split: TokenizedSplit) -> np.ndarray | None:
    """Each sentence's whitespace-separated words plus one <eos>; None when the split has no texts to count."""
    if len(split.texts) != len(split.token_ids):
        return None
    return np.array([len(text.split()) + 1 for text in split.texts], dtype=np.int64)


def score_batch(model: TextVAE, token_ids: torch.Tensor, lengths: torch.Tensor, iw_samples: int, iw_chunk: int,
                generator: torch.Generator) -> dict[str, np.ndarray]:
    """One batch's scores: predicted tokens, rec, KL, NLL and the posterior (an LM has rec = NLL only)."""
    scores = {"tokens": (lengths - 1).numpy()}
    if not model.config.has_latent:
        scores["rec"] = scores["nll"] = model.reconstruction_nll(token_ids, lengths, None)[0].cpu().numpy()
        return scores
    mean, logvar = model.encode(token_ids, lengths)
    z = reparameterize(mean, logvar, generator=generator)
    scores["rec"] = model.reconstruction_nll(token_ids, lengths, z)[0].cpu().numpy()
    scores["kl"] = kl_per_dimension(mean, logvar).sum(-1).cpu().numpy()
    scores["mean"], scores["logvar"] = mean.cpu().numpy(), logvar.cpu().numpy()
    if iw_samples > 0:
        log_px = iw_log_likelihood(model, token_ids, lengths, mean, logvar, iw_samples, iw_chunk, generator)
        scores["nll"] = -log_px.cpu().numpy()
    else:
        scores["nll"] = scores["rec"] + scores["kl"]
    return scores


# ---- corpus summary -------------------------------------------------------------------------------

def summarise(scores: SentenceScores, iw_samples: int = 0, au_threshold: float = 0.01,
              seed: int = 0, mi_draws: int = 1) -> dict[str, float | int | list[float]]:
    """Corpus numbers from per-sentence scores: means per sentence, PPL per word (and per predicted token),
    MI, AU. MI is the mean of `mi_draws` one-draw estimates (seeds seed, seed + 1, ...), with their standard
    deviation as mi_sd when there are several. Without word counts, `ppl` falls back to per token."""
    sentences, tokens = len(scores.rec), int(scores.tokens.sum())
    if sentences == 0:
        raise ValueError("nothing to evaluate: the split has no sentences")
    words = int(scores.words.sum()) if scores.words is not None else tokens
    results = {
        "nll": float(scores.nll.mean()),
        "ppl": math.exp(scores.nll.sum() / words),
        "ppl_per_token": math.exp(scores.nll.sum() / tokens),
        "neg_elbo": float(scores.neg_elbo.mean()),
        "ppl_bound": math.exp(scores.neg_elbo.sum() / words),
        "ppl_bound_per_token": math.exp(scores.neg_elbo.sum() / tokens),
        "rec": float(scores.rec.mean()),
        "kl": float(scores.kl.mean()),
        "sentences": sentences,
        "words": words,
        "tokens": tokens,
        "iw_samples": iw_samples,
    }
    if scores.mean is not None:
        mean, logvar = torch.from_numpy(scores.mean).float(), torch.from_numpy(scores.logvar).float()
        draws = mutual_information_draws(mean, logvar, seed, mi_draws)
        results["mi"] = sum(draws) / mi_draws
        if mi_draws > 1:
            results["mi_sd"] = statistics.stdev(draws)
        results["au"] = active_units(mean, au_threshold)
        results["kl_per_dim"] = [round(float(v), 5) for v in kl_per_dimension(mean, logvar).mean(0)]
        if iw_samples == 0:  # without importance sampling the VAE's NLL is only the ELBO bound
            results["nll"], results["ppl"] = results["neg_elbo"], results["ppl_bound"]
            results["ppl_per_token"] = results["ppl_bound_per_token"]
    return results


def evaluate_split(model: TextVAE, split: TokenizedSplit, batch_size: int = 128, seed: int = 0,
                   iw_samples: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Score a split and summarise it (what validation during training and `textvae evaluate` report)."""
    scores = score_split(model, split, batch_size, iw_samples, seed, dtype=dtype)
    return summarise(scores, iw_samples, seed=seed)

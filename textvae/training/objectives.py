"""The training objective: KL-weight schedules, word dropout, free bits, the target-rate constraint, and
the ELBO loss they shape."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import TrainConfig
from ..modeling import TextVAEOutput


def kl_weight(step: int, settings: TrainConfig) -> float:
    """The KL weight beta at a training step under the configured schedule.

    constant: kl_max_weight throughout.
    linear: from kl_start_weight to kl_max_weight over kl_anneal_steps, then flat.
    logistic: kl_max_weight / (1 + exp(-rate (step - kl_anneal_steps / 2))) (Bowman et al. 2016).
    cyclical: kl_cycles cycles over kl_anneal_steps; each rises linearly from 0 to kl_max_weight over the
      first kl_cycle_rise_ratio of the cycle and then holds (Fu et al. 2019); flat after the last cycle.
    With pretrain_ae_steps = N the first N steps train an autoencoder (beta = 0) and the schedule's clock
    starts at step N, when the decoder is reset (Li et al. 2019; training/collapse.py).
    """
    if step < settings.pretrain_ae_steps:
        return 0.0
    step -= settings.pretrain_ae_steps
    top = settings.kl_max_weight
    total = settings.kl_anneal_steps
    if settings.kl_schedule == "constant":
        return top
    if settings.kl_schedule == "linear":
        progress = min(step / total, 1.0)
        return settings.kl_start_weight + (top - settings.kl_start_weight) * progress
    if settings.kl_schedule == "logistic":
        exponent = -settings.kl_logistic_rate * (step - total / 2)
        return top / (1.0 + math.exp(min(exponent, 700.0)))
    if settings.kl_schedule == "cyclical":
        if step >= total:
            return top
        cycle_length = total / settings.kl_cycles
        position = (step % cycle_length) / cycle_length
        return top * min(position / settings.kl_cycle_rise_ratio, 1.0)
    raise ValueError(f"unknown KL schedule {settings.kl_schedule!r}")


def word_dropout(input_ids: torch.Tensor, probability: float, unk_id: int, spared_ids: tuple[int, ...],
                 training: bool = True, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """Replace decoder input tokens by <unk> with `probability`, sparing `spared_ids` (<bos>, <pad>).

    Bowman et al. 2016: weakening the decoder's view of the history pushes information into z.
    Outside training (training=False) the inputs pass unchanged. `uniform` (same shape as the inputs)
    gives the U(0, 1) draws; without it they come from torch's global generator.
    """
    if probability <= 0.0 or not training:
        return input_ids
    if uniform is None:
        uniform = torch.rand(input_ids.shape, device=input_ids.device)
    drop = uniform < probability
    for token_id in spared_ids:
        drop &= input_ids != token_id
    return input_ids.masked_fill(drop, unk_id)


def kl_term(kl: torch.Tensor, free_bits: float, mode: str = "batch_dimension") -> torch.Tensor:
    """The KL to penalise per sentence, averaged over the batch, with free bits: a floor of `free_bits`
    (lambda) nats per latent dimension below which the KL gets no gradient (Kingma et al. 2016; Li et al. 2019).

    `kl` is (batch, latent). Modes say what is clamped at the floor:
      batch_dimension: each dimension's batch-mean KL at lambda (Kingma et al.'s groups = dimensions);
      dimension: each sentence's KL in each dimension at lambda;
      sentence: each sentence's total KL at lambda * latent (the same budget, spread as the model likes).
    A clamped value counts as the floor in the loss, so above the floor the KL is penalised as usual.
    """
    if free_bits <= 0.0:
        return kl.sum(-1).mean()
    if mode == "batch_dimension":
        return torch.clamp(kl.mean(0), min=free_bits).sum()
    if mode == "dimension":
        return torch.clamp(kl, min=free_bits).sum(-1).mean()
    if mode == "sentence":
        return torch.clamp(kl.sum(-1), min=free_bits * kl.size(-1)).mean()
    raise ValueError(f"unknown free bits mode {mode!r}")


def updated_multiplier(multiplier: float, batch_kl: float, settings: TrainConfig) -> float:
    """One step of gradient ascent on the Lagrange multiplier u >= 0 of the constraint KL >= r (the
    minimum desired rate of Pelsmaeker & Aziz 2019): u <- max(0, u + target_rate_lr (r - KL)), with KL the
    batch-mean KL per sentence. u grows while the KL is short of the target and decays to 0 once it is met."""
    if settings.target_rate <= 0.0:
        return 0.0
    return max(0.0, multiplier + settings.target_rate_lr * (settings.target_rate - batch_kl))


@dataclass
class Loss:
    """The scalar to minimise and its parts (per-sentence means) for logging."""

    loss: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor
    kl_weight: float
    scale: float = 1.0  # the factor `loss` carries (distributed training); loss / scale is this batch's
    grad_norm: torch.Tensor | None = None  # the gradient norm before clipping, set by the training step

    @property
    def value(self) -> float:
        """The batch's loss as a number, without the distributed scale."""
        return float(self.loss.detach()) / self.scale


def elbo_loss(output: TextVAEOutput, weight: float, free_bits: float = 0.0, scale: float = 1.0,
              free_bits_mode: str = "batch_dimension", target_rate: float = 0.0, multiplier: float = 0.0,
              bag_of_words_weight: float = 0.0) -> Loss:
    """Per-sentence negative ELBO averaged over the batch: rec + beta * KL (free bits applied to the KL),
    plus u (r - KL) when a target rate r is set (the Lagrangian term; u = `multiplier`, see
    `updated_multiplier`), plus `bag_of_words_weight` times the bag-of-words loss when the model has its head
    (modeling.bag_of_words). `scale` multiplies the loss to minimise (not the logged parts): distributed
    training uses it so that averaging the processes' gradients gives the whole batch's."""
    rec = output.rec_nll.mean()
    if output.kl_per_dimension is None:  # LM baseline: no latent, the loss is the NLL
        zero = torch.zeros((), device=rec.device)
        return Loss(scale * rec, rec.detach(), zero, 0.0, scale)
    kl = output.kl_per_dimension.sum(-1).mean()
    objective = rec + weight * kl_term(output.kl_per_dimension, free_bits, free_bits_mode)
    if target_rate > 0.0 and multiplier > 0.0:
        objective = objective + multiplier * (target_rate - kl)
    if output.bag_of_words_nll is not None and bag_of_words_weight > 0.0:
        objective = objective + bag_of_words_weight * output.bag_of_words_nll.mean()
    return Loss(scale * objective, rec.detach(), kl.detach(), weight, scale)

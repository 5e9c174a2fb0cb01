"""Remedies for posterior collapse that change how training proceeds rather than the loss alone: autoencoder
pretraining with a decoder reset, aggressive inference-network training with its switch-off rule, and the
target-rate multiplier's updates, each a part (parts.TrainingPart) the trainer calls at its named points.

The loss-side remedies (KL schedules, word dropout, free bits, the target-rate term) live in
training/objectives.py, BN-VAE in modeling/posterior.py; docs/collapse.md says when to use which.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..config import RunConfig
from ..data import Batch, iterate_batches
from ..errors import TextVAEError
from ..modeling import TextVAE, check_model_section
from ..modeling.registry import build_decoder
from ..modeling.vae import build_bag_of_words_head
from .objectives import Loss, updated_multiplier
from .parts import StepPlan, TrainingPart

if TYPE_CHECKING:
    from .trainer import Trainer

logger = logging.getLogger("textvae")


def check_remedies(config: RunConfig) -> None:
    """Refuse combinations that cannot work, with one line naming the key."""
    settings = config.train
    model_variant = check_model_section(config.model).get("model_variant", "vae")
    if model_variant == "lm":
        for key, value in (("pretrain_ae_steps", settings.pretrain_ae_steps), ("aggressive", settings.aggressive),
                           ("target_rate", settings.target_rate)):
            if value:
                raise TextVAEError(f"config key train.{key}: needs a latent code, but model.model_variant is lm; "
                                   f"remove the key or use model_variant vae")
    if settings.reset_decoder and not settings.init_from:
        raise TextVAEError("config key train.reset_decoder: re-initialises the decoder of the run named by "
                           "train.init_from, which is not set; set train.init_from to a run dir or remove the key")
    if settings.decoder_from and (settings.pretrain_ae_steps or model_variant == "lm"):
        raise TextVAEError("config key train.decoder_from: starts a VAE's decoder from a language model, but "
                           + ("train.pretrain_ae_steps draws the decoder afresh after pretraining; remove one of them"
                              if settings.pretrain_ae_steps else "model.model_variant is lm; use model_variant vae"))
    if settings.aggressive and config.data.streaming:
        raise TextVAEError("config key train.aggressive: the inner encoder updates draw random train batches, which "
                           "needs the train split in memory; set data.streaming=false")


def encoder_parameters(model: TextVAE) -> list[nn.Parameter]:
    """The inference network's parameters: the encoder and the posterior layer (BN-VAE's shift included)."""
    return [*model.encoder.parameters(), *model.posterior.parameters()]


def decoder_parameters(model: TextVAE) -> list[nn.Parameter]:
    """The generative network's parameters: the decoder, and the bag-of-words head (p(words | z)) when there is one."""
    head = list(model.bag_of_words.parameters()) if model.bag_of_words is not None else []
    return [*model.decoder.parameters(), *head]


# ---- autoencoder pretraining, then a fresh decoder (Li et al. 2019) --------------------------------------

def drawn_state(build: Callable[[], nn.Module], seed: int) -> dict[str, torch.Tensor]:
    """The weights of the module `build()` makes, drawn on the CPU from `seed` alone (torch's global random state
    is left as it was), so a redraw is the same on every device and on resume."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().state_dict()


def fresh_decoder_state(model: TextVAE, seed: int) -> dict[str, torch.Tensor]:
    """The weights of a newly initialised decoder for `model`'s config, drawn from `seed` (drawn_state).
    A fresh pretrained decoder is its folder's pretrained weights (read again from model.pretrained_decoder),
    with newly drawn z layers and rows for the added tokens."""
    config = copy.deepcopy(model.config)
    config.pretrained_decoder_config = None  # not the recorded architecture alone: the folder's weights
    return drawn_state(lambda: build_decoder(config), seed)


def reset_decoder(model: TextVAE, optimizers: list[torch.optim.Optimizer], seed: int) -> None:
    """Li et al. 2019, "A Surprisingly Effective Fix for Deep Latent Variable Modeling of Text": after
    pretraining encoder and decoder as an autoencoder (beta = 0), re-initialise the decoder and train on as a
    VAE, so the new decoder learns against an encoder that already carries information. The decoder's
    parameters get fresh weights in place (the optimizers keep referring to them) and lose their optimizer
    state (Adam moments, momentum); the encoder keeps its weights and state. With model.bag_of_words_bias the
    bag-of-words head is part of p(x | z) and is drawn afresh with the decoder (seed + 1); as an auxiliary loss
    alone (bag_of_words_weight) it reads z, not the decoder, and keeps its weights and optimizer state."""
    model.decoder.load_state_dict(fresh_decoder_state(model, seed))
    redrawn = list(model.decoder.parameters())
    if model.config.bag_of_words_bias:
        model.bag_of_words.load_state_dict(drawn_state(lambda: build_bag_of_words_head(model.config), seed + 1))
        redrawn += model.bag_of_words.parameters()
    for optimizer in optimizers:
        for parameter in redrawn:
            optimizer.state.pop(parameter, None)


# ---- aggressive inference-network training (He et al. 2019) --------------------------------------------

def aggressive_inner_loop(update: Callable[[Batch], float], first: Batch, draw: Callable[[], Batch],
                          max_steps: int, window: int) -> int:
    """He et al. 2019, "Lagging Inference Networks and Posterior Collapse": before each joint update, update
    the encoder alone until it catches up with the decoder's current posterior. `update(batch)` makes one
    encoder-only step and returns the batch's summed loss; the first step uses the outer batch, later ones
    fresh batches from `draw()`. The loop stops when the mean loss per predicted token over a window of
    `window` inner steps is not below the previous window's (the encoder stopped improving), or after
    `max_steps`. Returns the number of inner steps run."""
    previous, total, tokens = math.inf, 0.0, 0
    batch = first
    for inner in range(1, max_steps + 1):
        total += update(batch)
        tokens += batch.predicted_tokens
        if inner % window == 0:
            mean = total / max(tokens, 1)
            if mean >= previous:
                return inner
            previous, total, tokens = mean, 0.0, 0
        if inner < max_steps:
            batch = draw()
    return max_steps


def mi_ceiling(sentences: int, latent_size: int) -> float:
    """The MI from which the validation estimate can no longer be seen to rise: log N − sqrt(d / 2N).
    The aggregate posterior over N sentences holds each sentence's own posterior, so the one-draw estimate
    (evaluation.latent.mutual_information) is at most log N in expectation, and sits there once the posteriors no
    longer overlap; around it the estimate varies by the draw, with a standard deviation of about
    sqrt(d / 2N) for d latent dimensions (log q(z|x) at one draw of z has variance d / 2)."""
    return math.log(sentences) - math.sqrt(latent_size / (2 * sentences))


def aggressive_stays_on(previous_mi: float | None, mi: float, ceiling: float = math.inf) -> bool:
    """He et al.'s switch-off rule: aggressive training continues while the validation mutual information
    I(x; z) keeps rising; once a validation's MI is not larger than the previous one's it stops for good.
    textvae adds one case (train.aggressive_mi_ceiling): from the second validation on it also stops once the
    MI has reached `ceiling` (mi_ceiling), where a rise is the estimate's noise, not the encoder's progress."""
    return previous_mi is None or previous_mi < mi < ceiling


# ---- the remedies as parts of a run ---------------------------------------------------------------------

def in_autoencoder_phase(state, settings) -> bool:
    """Whether the run is still training an autoencoder (train.pretrain_ae_steps, before the decoder reset): its
    validations are no candidates for the best model and neither decay the LR nor stop training early."""
    return state.step < settings.pretrain_ae_steps or (settings.pretrain_ae_steps > 0 and not state.decoder_reset)


class AutoencoderPretraining(TrainingPart):
    """train.pretrain_ae_steps (Li et al. 2019): an autoencoder (beta = 0, objectives.kl_weight) until that step,
    then a fresh decoder, and the LR, plateau and early-stopping bookkeeping start again (the autoencoder's
    scores do not compete with the VAE's)."""

    def before_step(self, trainer: Trainer, batch: Batch, plan: StepPlan) -> None:
        """At train.pretrain_ae_steps, switch from autoencoder to VAE (once)."""
        state, settings = trainer.state, trainer.settings
        if state.step >= settings.pretrain_ae_steps and not state.decoder_reset:
            self.start_vae_phase(trainer)

    def start_vae_phase(self, trainer: Trainer) -> None:
        """Reset the decoder (and its optimizer state) and restart the LR and the plateau bookkeeping."""
        state, settings, optimizer, scheduler = trainer.state, trainer.settings, trainer.optimizer, trainer.scheduler
        reset_decoder(trainer.model, [optimizer] + ([trainer.encoder_optimizer] if trainer.encoder_optimizer else []),
                      settings.seed + 2)
        for group in optimizer.param_groups:
            group["lr"] = settings.lr
        scheduler.best, scheduler.num_bad_epochs = scheduler.mode_worse, 0
        state.best_valid, state.evals_since_best, state.decoder_reset = float("inf"), 0, True
        logger.info(f"step {state.step}: autoencoder pretraining done, decoder re-initialised")

    def validation_fields(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Mark a validation of the autoencoder phase: no candidate for the best model."""
        if in_autoencoder_phase(trainer.state, trainer.settings):
            record["pretraining"] = True  # an autoencoder-phase model: not a candidate for the best


class AggressiveTraining(TrainingPart):
    """train.aggressive (He et al. 2019): before each joint step, encoder-only updates on random train batches
    (`aggressive_inner_loop`, with the trainer's `encoder_update`); the joint step then updates the decoder
    alone. Switched off for good by the validation MI rule (`aggressive_stays_on`, with `mi_ceiling` under
    train.aggressive_mi_ceiling)."""

    def on_start(self, trainer: Trainer) -> None:
        """The MI ceiling for this validation split, the train batches inner updates draw from, and, on resume,
        the switch-off rule in force (a changed train.aggressive_mi_ceiling) judging the checkpoint's last
        validation again; under an unchanged rule that repeats its decision."""
        settings, state = trainer.settings, trainer.state
        self.mi_limit = math.inf  # He et al.'s rule alone
        if settings.aggressive_mi_ceiling:
            self.mi_limit = mi_ceiling(len(trainer.splits["valid"]), trainer.model.config.latent_size)
        judged = [record for record in state.history if "aggressive" in record]
        if trainer.resume and self.active(trainer) and judged:
            previous = judged[-2]["mi"] if len(judged) > 1 else None
            if not aggressive_stays_on(previous, judged[-1]["mi"], self.mi_limit):
                state.aggressive_off = True
                self.log_off(trainer, judged[-1]["mi"])
        self.inner_batches = list(iterate_batches(trainer.splits["train"], settings.batch_size, trainer.special))

    def active(self, trainer: Trainer) -> bool:
        """Aggressive training is on until the MI rule switches it off for good."""
        return not trainer.state.aggressive_off

    def draw_inner_batch(self, trainer: Trainer) -> Batch:
        """A random train batch for an inner encoder update, from the shared (checkpointed) generator."""
        index = int(torch.randint(len(self.inner_batches), (1,), device=trainer.device, generator=trainer.draws))
        return self.inner_batches[index]

    def before_step(self, trainer: Trainer, batch: Batch, plan: StepPlan) -> None:
        """Encoder-only updates until the encoder catches up; the joint step then updates the decoder alone."""
        if not self.active(trainer):
            return
        for group in trainer.encoder_optimizer.param_groups:  # the encoder's LR follows the decayed one
            group["lr"] = trainer.optimizer.param_groups[0]["lr"]
        settings = trainer.settings
        plan.inner_steps = aggressive_inner_loop(trainer.encoder_update, batch, lambda: self.draw_inner_batch(trainer),
                                                 settings.aggressive_max_inner_steps, settings.aggressive_window)
        plan.parameters = decoder_parameters(trainer.model)

    def train_line(self, trainer: Trainer, plan: StepPlan) -> dict[str, Any]:
        """How many encoder-only updates the last step ran."""
        return {"inner_steps": plan.inner_steps} if plan.inner_steps else {}

    def validation_fields(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Whether aggressive training stays on (the MI rule), recorded with the validation."""
        if self.active(trainer) and "mi" in record:
            record["aggressive"] = aggressive_stays_on(trainer.state.previous_mi, record["mi"], self.mi_limit)

    def after_validation(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Switch aggressive training off for good when the validation said so."""
        state = trainer.state
        if "aggressive" in record:
            state.aggressive_off, state.previous_mi = not record["aggressive"], record["mi"]
            if state.aggressive_off:
                self.log_off(trainer, record["mi"])

    def log_off(self, trainer: Trainer, mi: float) -> None:
        """Say in the log why aggressive training stopped, and from which step."""
        reason = "reached its ceiling" if mi >= self.mi_limit else "stopped rising"
        logger.info(f"aggressive training off from step {trainer.state.step}: validation MI {mi:.4f} {reason}")


class TargetRate(TrainingPart):
    """train.target_rate: after each step, one step of gradient ascent on the Lagrange multiplier of the constraint
    KL >= target_rate (Pelsmaeker & Aziz 2019; objectives.updated_multiplier), from the whole batch's KL (all
    processes' rows); not during autoencoder pretraining."""

    def after_step(self, trainer: Trainer, batch: Batch, loss: Loss) -> None:
        """Update the multiplier from the whole batch's KL, outside the autoencoder phase."""
        state, workers, settings = trainer.state, trainer.workers, trainer.settings
        if in_autoencoder_phase(state, settings):
            return
        batch_kl = workers.all_sum(float(loss.kl) * workers.share(len(batch.indices)), trainer.device)
        state.kl_multiplier = updated_multiplier(state.kl_multiplier, batch_kl / len(batch.indices), settings)

    def train_line(self, trainer: Trainer, plan: StepPlan) -> dict[str, Any]:
        """The multiplier, on every train line."""
        return {"kl_multiplier": trainer.state.kl_multiplier}

"""Remedies for posterior collapse that change how training proceeds rather than the loss: autoencoder
pretraining with a decoder reset, and aggressive inference-network training with its switch-off rule.

The loss-side remedies (KL schedules, word dropout, free bits, the target-rate constraint) live in
`textvae.objectives`, BN-VAE in `textvae.modeling.posterior`; docs/collapse.md says when to use which.
The training loop (`textvae.training`) calls the functions here at the right steps.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from .config import RunConfig
from .data import Batch
from .errors import TextVAEError
from .modeling import TextVAE, check_model_section
from .modeling.decoders import build_decoder


def check_remedies(config: RunConfig) -> None:
    """Refuse combinations that cannot work, with one line naming the key."""
    settings = config.train
    if check_model_section(config.model).get("model_variant", "vae") == "lm":
        for key, value in (("pretrain_ae_steps", settings.pretrain_ae_steps), ("aggressive", settings.aggressive),
                           ("target_rate", settings.target_rate)):
            if value:
                raise TextVAEError(f"config key train.{key}: needs a latent code, but model.model_variant is lm; "
                                   f"remove the key or use model_variant vae")
    if settings.reset_decoder and not settings.init_from:
        raise TextVAEError("config key train.reset_decoder: re-initialises the decoder of the run named by "
                           "train.init_from, which is not set; set train.init_from to a run dir or remove the key")
    if settings.aggressive and config.data.streaming:
        raise TextVAEError("config key train.aggressive: the inner encoder updates draw random train batches, which "
                           "needs the train split in memory; set data.streaming=false")


def encoder_parameters(model: TextVAE) -> list[nn.Parameter]:
    """The inference network's parameters: the encoder and the posterior layer (BN-VAE's shift included)."""
    return [*model.encoder.parameters(), *model.posterior.parameters()]


def decoder_parameters(model: TextVAE) -> list[nn.Parameter]:
    """The generative network's parameters."""
    return list(model.decoder.parameters())


# ---- autoencoder pretraining, then a fresh decoder (Li et al. 2019) --------------------------------------

def fresh_decoder_state(model: TextVAE, seed: int) -> dict[str, torch.Tensor]:
    """The weights of a newly initialised decoder for `model`'s config, drawn on the CPU from `seed` alone
    (torch's global random state is left as it was), so a reset is the same on every device and resume.
    A fresh pretrained decoder is its folder's pretrained weights (read again from model.pretrained_decoder),
    with newly drawn z layers and rows for the added tokens."""
    config = copy.deepcopy(model.config)
    config.pretrained_decoder_config = None  # not the recorded architecture alone: the folder's weights
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_decoder(config).state_dict()


def reset_decoder(model: TextVAE, optimizers: list[torch.optim.Optimizer], seed: int) -> None:
    """Li et al. 2019, "A Surprisingly Effective Fix for Deep Latent Variable Modeling of Text": after
    pretraining encoder and decoder as an autoencoder (beta = 0), re-initialise the decoder and train on as a
    VAE, so the new decoder learns against an encoder that already carries information. The decoder's
    parameters get fresh weights in place (the optimizers keep referring to them) and lose their optimizer
    state (Adam moments, momentum); the encoder keeps its weights and state."""
    model.decoder.load_state_dict(fresh_decoder_state(model, seed))
    decoder = set(decoder_parameters(model))
    for optimizer in optimizers:
        for parameter in decoder:
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
    (evaluation.mutual_information) is at most log N in expectation, and sits there once the posteriors no
    longer overlap; around it the estimate varies by the draw, with a standard deviation of about
    sqrt(d / 2N) for d latent dimensions (log q(z|x) at one draw of z has variance d / 2)."""
    return math.log(sentences) - math.sqrt(latent_size / (2 * sentences))


def aggressive_stays_on(previous_mi: float | None, mi: float, ceiling: float = math.inf) -> bool:
    """He et al.'s switch-off rule: aggressive training continues while the validation mutual information
    I(x; z) keeps rising; once a validation's MI is not larger than the previous one's it stops for good.
    textvae adds one case (train.aggressive_mi_ceiling): from the second validation on it also stops once the
    MI has reached `ceiling` (mi_ceiling), where a rise is the estimate's noise, not the encoder's progress."""
    return previous_mi is None or previous_mi < mi < ceiling

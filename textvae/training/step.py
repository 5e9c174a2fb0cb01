"""One optimisation step, as the trainer calls it: the step's random draws for the whole batch, word dropout, the
forward pass under autocast, the objective, backward, clipping and the update; and the log window that sums the
steps between two train lines of metrics.jsonl (checkpointed, so a resumed run logs the same lines)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..config import TrainConfig
from ..errors import TextVAEError
from ..modeling import TextVAE
from ..runtime import autocast
from .distributed import Workers
from .objectives import Loss, elbo_loss, kl_weight, word_dropout
from .sparse_gradients import step_with_clipping, total_gradient_norm


class Diverged(TextVAEError):
    """The training or validation loss stopped being a finite number; `train` adds how to go on."""

    def __init__(self, what: str, value: float, step: int, lr: float):
        super().__init__(f"the {what} became {value} at step {step} (train.lr is {lr:g})")
        self.lr = lr


def step_draws(token_ids: torch.Tensor, latent_size: int, settings: TrainConfig,
               generator: torch.Generator | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A step's random numbers for the whole batch: U(0, 1) word-dropout draws for the decoder inputs
    (None without word dropout) and N(0, I) posterior noise (None for an LM)."""
    uniform = noise = None
    if settings.word_dropout > 0.0:
        uniform = torch.rand(token_ids[:, :-1].shape, device=token_ids.device, generator=generator)
    if latent_size:
        noise = torch.randn((token_ids.size(0), latent_size), device=token_ids.device, generator=generator)
    return uniform, noise


@contextlib.contextmanager
def only_these_learn(model: torch.nn.Module, parameters: list[torch.nn.Parameter] | None) -> Iterator[None]:
    """Inside, only `parameters` (all when None) require gradients, so autograd computes no others: aggressive
    training's encoder steps skip the decoder's weight gradients, its decoder steps the encoder's backward."""
    if parameters is None:
        yield
        return
    kept = {id(parameter) for parameter in parameters}
    frozen = [parameter for parameter in model.parameters() if parameter.requires_grad and id(parameter) not in kept]
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)


def training_step(model: TextVAE, optimizer: torch.optim.Optimizer, token_ids: torch.Tensor, lengths: torch.Tensor,
                  step: int, settings: TrainConfig, special: dict[str, int], dtype: torch.dtype = torch.float32,
                  scaler: torch.amp.GradScaler | None = None, generator: torch.Generator | None = None,
                  rows: list[int] | None = None, world_size: int = 1, multiplier: float = 0.0,
                  parameters: list[torch.nn.Parameter] | None = None) -> Loss:
    """One update: word dropout on the decoder inputs → forward (under `dtype` autocast) → ELBO loss →
    backward → clip → step. fp16 needs a `scaler` (loss scaling); fp32 and bf16 do not.

    `multiplier` is the target-rate Lagrange multiplier (objectives.updated_multiplier). With `parameters`
    only those change: every other gradient is dropped before clipping and the step (aggressive training
    updates the encoder alone, then the decoder alone).

    The random numbers come from `generator`, drawn for the whole batch. With `rows` (distributed
    training) this process trains on those rows of the batch only, with the draws a single process
    would have used for them, and a loss scaled so that DDP's gradient average is the whole batch's.
    """
    core = getattr(model, "module", model)  # the TextVAE inside a DistributedDataParallel wrapper
    latent_size = core.config.latent_size if core.config.has_latent else 0
    uniform, noise = step_draws(token_ids, latent_size, settings, generator)
    scale = 1.0
    if rows is not None:
        scale = world_size * len(rows) / token_ids.size(0)
        index = torch.tensor(rows)
        lengths = lengths[index]
        width = int(lengths.max())  # the shard's own padding
        token_ids = token_ids[index.to(token_ids.device), :width]
        uniform = None if uniform is None else uniform[index.to(uniform.device), : width - 1]
        noise = None if noise is None else noise[index.to(noise.device)]
    spared = (special["bos_token_id"], special["pad_token_id"])
    decoder_inputs = word_dropout(token_ids[:, :-1], settings.word_dropout, special["unk_token_id"], spared,
                                  training=model.training, uniform=uniform)
    # DDP reduces every gradient, so under it all are computed and those not updated dropped below
    with only_these_learn(model, parameters if core is model else None):
        with autocast(token_ids.device, dtype):
            output = model(token_ids, lengths, decoder_input_ids=decoder_inputs, noise=noise)
        loss = elbo_loss(output, kl_weight(step, settings), settings.free_bits, scale, settings.free_bits_mode,
                         settings.target_rate, multiplier, core.config.bag_of_words_weight)
        if not torch.isfinite(loss.loss):
            raise Diverged("loss", loss.value, step, optimizer.param_groups[0]["lr"])
        model.zero_grad(set_to_none=True)
        (loss.loss if scaler is None else scaler.scale(loss.loss)).backward()
    updated = list(model.parameters())
    if parameters is not None:
        kept = {id(parameter) for parameter in parameters}
        for parameter in updated:
            if id(parameter) not in kept:
                parameter.grad = None
        updated = [parameter for parameter in updated if id(parameter) in kept]
    if scaler is None and any(parameter.grad is not None and parameter.grad.is_sparse for parameter in updated):
        # embeddings under plain SGD (sparse_gradients.py, which leaves them dense under fp16's scaler): clipping
        # joins the step
        loss.grad_norm = step_with_clipping(optimizer, updated, settings.grad_clip)
        return loss
    if scaler is not None:
        scaler.unscale_(optimizer)
    loss.grad_norm = gradient_norm(updated, settings.grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    return loss


def gradient_norm(parameters: list[torch.nn.Parameter], clip: float) -> torch.Tensor:
    """The gradients' total L2 norm before clipping (logged as grad_norm); with `clip` > 0 they are then
    clipped to that norm."""
    if clip:
        return torch.nn.utils.clip_grad_norm_(parameters, clip)
    return total_gradient_norm(parameters)


WINDOW_SUMS = ("objective", "rec", "kl")  # per-sentence figures summed over the sentences of a log window


def add_to_window(window: dict[str, float], loss: Loss, batch_size: int, workers: Workers) -> None:
    """Add one step to the log window's sums: the whole batch's objective, rec and KL (summed over all
    processes' rows), its sentences, and the gradient norm before clipping (the same on every process).

    Under DDP the sums are reduced at every step, not only when a train line is written: the window is part of
    every checkpoint, and a time-based checkpoint (train.checkpoint_minutes) is written by rank 0 alone, when
    no other process is waiting for a collective, so rank 0 must hold all processes' sums at every step for a
    resumed run to log the lines an uninterrupted one does. (Three float64s per step, beside DDP's gradients.)"""
    rows = workers.share(batch_size)
    local = torch.stack([loss.loss.detach().float() / loss.scale, loss.rec.float(), loss.kl.float()]).double() * rows
    summed = workers.all_sum_tensor(local).tolist()
    for key, value in zip(WINDOW_SUMS, summed):
        window[key] = window.get(key, 0.0) + value
    norm = float(loss.grad_norm) if loss.grad_norm is not None else 0.0
    window["sentences"] = window.get("sentences", 0.0) + batch_size
    window["steps"] = window.get("steps", 0.0) + 1
    window["grad_norm"] = window.get("grad_norm", 0.0) + norm
    window["grad_norm_max"] = max(window.get("grad_norm_max", 0.0), norm)


def window_figures(window: dict[str, float]) -> dict[str, float]:
    """A train line's figures, averaged over the sentences of the steps since the last line: `loss` is the
    −ELBO (rec + KL, β = 1), as on valid lines; `objective` is what the optimizer minimised (β-weighted KL,
    free bits, target-rate term); grad_norm is the steps' mean gradient norm before clipping, grad_norm_max
    their largest."""
    sentences = window["sentences"]
    rec, kl = window["rec"] / sentences, window["kl"] / sentences
    return {"loss": rec + kl, "objective": window["objective"] / sentences, "rec": rec, "kl": kl,
            "grad_norm": window["grad_norm"] / window["steps"], "grad_norm_max": window["grad_norm_max"]}

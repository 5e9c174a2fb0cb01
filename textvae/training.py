"""The training loop, readable top to bottom: data → model → steps → evaluation → checkpoints.

The loop writes its run dir (run_dir.py) at every validation and, between validations, every
train.checkpoint_minutes of training; checkpoints also hold the state of the collapse remedies
(target-rate multiplier, decoder reset done, aggressive mode switched off), so `resume` continues
exactly as an uninterrupted run would.

A train line of metrics.jsonl (every train.log_every steps) averages the steps since the previous one over
their sentences (all processes' under DDP): `loss` is the −ELBO, as on valid lines, `objective` what the
optimizer minimised, `grad_norm` the gradient norm before clipping (`window_figures`). The window's sums
are part of the checkpointed state, so a resumed run logs the same lines.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from .collapse import (
    aggressive_inner_loop,
    aggressive_stays_on,
    check_remedies,
    decoder_parameters,
    encoder_parameters,
    mi_ceiling,
    reset_decoder,
)
from .config import RunConfig, TrainConfig, save_config
from .data import Batch, TokenizedSplit, iterate_batches, load_corpus, prepare_split, resolve_max_length
from .distributed import Workers, teardown
from .distributed import setup as setup_workers
from .errors import TextVAEError, TrainingInterrupted
from .evaluation import evaluate_split
from .logging_sinks import TENSORBOARD_DIR, TensorBoardLog, require_tensorboard
from .modeling import TextVAE, build_model_config, check_model_section
from .modeling.pretrained import read_folder_config
from .objectives import Loss, elbo_loss, kl_weight, updated_multiplier, word_dropout
from .run_dir import (
    CHECKPOINT,
    METRICS,
    TRAIN_CONFIG,
    MetricsLog,
    TrainerState,
    apply_new_lr,
    load_checkpoint,
    peek_state,
    prepare_out_dir,
    resumed_config,
    save_checkpoint,
    save_model,
    weights_mismatch,
)
from .runtime import (
    autocast,
    choose_thread_count,
    describe_precision,
    free_memory,
    keep_freed_memory,
    precision_name,
    resolve_precision,
    select_device,
)
from .streaming import StreamingTrainSplit, load_streaming_splits
from .tokenization import (
    build_tokenizer,
    check_tokenizer_section,
    special_ids,
    vocabulary_size,
)

logger = logging.getLogger("textvae")


class Diverged(TextVAEError):
    """The training or validation loss stopped being a finite number; `train` adds how to go on."""

    def __init__(self, what: str, value: float, step: int, lr: float):
        super().__init__(f"the {what} became {value} at step {step} (train.lr is {lr:g})")
        self.lr = lr


class StopRequests:
    """Turns SIGINT and SIGTERM into a request the training loop honours after the step in flight, instead of
    losing the work since the last checkpoint; a second SIGINT interrupts at once (the last checkpoint is kept).
    Handlers are installed only from the main thread (Python allows no others) and restored on exit."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self.previous[number] = signal.signal(number, self.handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def handle(self, number: int, frame) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now, the last checkpoint stays as it is
        self.received = signal.Signals(number)
        tqdm.write(f"textvae: {self.received.name} received: finishing this step, then checkpointing "
                   "(Ctrl-C again stops at once)", file=sys.stderr)


def limit_reached(state: TrainerState, settings: TrainConfig) -> str | None:
    """The limit that ends training for a run at `state` under `settings`, in words (with the key that raises
    it), or None while it may train on. Asked again on resume, so a finished run stays finished unless a
    new --set raises the limit that ended it."""
    if settings.max_steps and state.step >= settings.max_steps:
        return f"it reached train.max_steps={settings.max_steps}"
    if state.epoch >= settings.max_epochs:
        return f"it reached train.max_epochs={settings.max_epochs}"
    if settings.max_minutes and state.train_seconds >= 60 * settings.max_minutes:
        return f"it reached train.max_minutes={settings.max_minutes:g}"
    last = state.history[-1] if state.history else {}
    if (settings.early_stopping_patience and state.evals_since_best >= settings.early_stopping_patience
            and not last.get("pretraining")):
        return (f"it stopped early: no improvement in {state.evals_since_best} validations "
                f"(train.early_stopping_patience={settings.early_stopping_patience})")
    if settings.lr_decay_max and state.lr_decays >= settings.lr_decay_max:
        return f"the LR decayed {state.lr_decays} times (train.lr_decay_max={settings.lr_decay_max})"
    return None


def run_summary(state: TrainerState, settings: TrainConfig, already_finished: str | None = None) -> dict[str, Any]:
    """What `train` returns: the best and last validation, steps, epochs, training time, the precision of the
    last validation (None in runs from before it was logged); `already_finished` says why a resumed run had
    nothing left to train (None when it trained)."""
    candidates = [record for record in state.history if not record.get("pretraining")] or state.history
    best = min(candidates, key=lambda record: judged_loss(record, settings))
    return {"best_valid": best, "last_valid": state.history[-1], "steps": state.step, "epochs": state.epoch,
            "train_seconds": state.train_seconds, "precision": state.history[-1].get("precision"),
            "already_finished": already_finished}


def finished_without_loading(out_dir: Path, config: RunConfig) -> dict[str, Any] | None:
    """On resume, the summary of a run that has nothing left to train under `config` (a limit reached, its
    last validation at its last step, and its best model saved), read from the checkpoint alone, before any
    data is loaded; None when it must be loaded (to train on, to finish what a kill cut short, or to check a
    changed model section against the checkpoint)."""
    state = peek_state(out_dir)
    if state is None or not state.history or state.history[-1]["step"] != state.step:
        return None
    if config.model != resumed_config(out_dir, ()).model:  # --set model.*: the full load says what does not fit
        return None
    reason = limit_reached(state, config.train)
    model_file = out_dir / "model.safetensors"
    best_saved = state.evals_since_best > 0 or (
        model_file.exists() and model_file.stat().st_mtime_ns >= (out_dir / CHECKPOINT).stat().st_mtime_ns)
    if reason is None or not best_saved:
        return None
    logger.info(f"{out_dir} has finished training: {reason}")
    return run_summary(state, config.train, reason)


def diverged_advice(error: Diverged, out_dir: Path) -> str:
    """The divergence message plus the fix: resume from the last (good) checkpoint, or start again."""
    lower = f"--set train.lr={error.lr / 10:g}"
    if (out_dir / CHECKPOINT).exists():
        return (f"{error}; lower train.lr or train.grad_clip and continue from the last checkpoint, which is from "
                f"before the problem: textvae train --out {out_dir} --resume {lower}")
    return (f"{error}; no checkpoint was written yet: train again (the same --out will do) with a lower "
            f"train.lr (e.g. {lower}) or train.grad_clip")


# ---- setup ----------------------------------------------------------------------------------------

BYTES_PER_PARAMETER = 16  # fp32 weight, gradient and Adam's two moments: the least training needs


def skeleton_config(model_config):
    """A copy of the model config whose pretrained sides are built from their folders' configs alone, so the
    meta-device build reads no weights (transformers refuses from_pretrained under a meta device)."""
    skeleton = copy.deepcopy(model_config)
    for side in ("encoder", "decoder"):
        folder = getattr(skeleton, f"pretrained_{side}")
        if getattr(skeleton, f"{side}_type") == "pretrained" and folder and not getattr(skeleton, f"pretrained_{side}_config"):
            setattr(skeleton, f"pretrained_{side}_config", read_folder_config(folder, f"model.pretrained_{side}").to_dict())
    return skeleton


def check_model_fits(model_config, device: torch.device) -> None:
    """Refuse a model whose weights, gradients and optimizer state alone exceed the free memory, with the
    sizes to lower, instead of an allocation error or the kernel killing the process."""
    try:
        with torch.device("meta"):  # count the parameters without allocating them
            parameters = sum(parameter.numel() for parameter in TextVAE(skeleton_config(model_config)).parameters())
    except Exception:  # a model that cannot be built on the meta device: building it for real will tell
        return
    needed, free = parameters * BYTES_PER_PARAMETER, free_memory(device)
    if free is not None and needed > free:
        raise TextVAEError(f"the model has {parameters:,} parameters: training needs at least {needed / 2**30:.1f} GiB "
                           f"but {free / 2**30:.1f} GiB of {device.type} memory is free; lower model.embedding_size, "
                           "the hidden sizes, model.latent_size or tokenizer.vocab_size")


def reload_best_weights(model: TextVAE, out_dir: Path, optimizers: list[torch.optim.Optimizer | None]) -> None:
    """Put the run dir's best weights (model.safetensors, written at the best validation) back into `model`
    and empty the optimizers' state (momentum, Adam moments), as a newly built optimizer would have it."""
    best = TextVAE.from_pretrained(str(out_dir)).to(model.device)
    model.load_state_dict(best.state_dict())
    for optimizer in optimizers:
        if optimizer is not None:
            optimizer.state.clear()


def judged_loss(validation: dict[str, Any], settings: TrainConfig) -> float:
    """The validation figure that picks the best model and drives the LR schedule: the objective at the KL
    schedule's final weight, rec + kl_max_weight * KL. That is the −ELBO for a VAE (kl_max_weight 1) and the
    reconstruction loss for an autoencoder (kl_max_weight 0), as the published code judges its runs."""
    if settings.kl_max_weight == 1.0:
        return validation["loss"]
    return validation["rec"] + settings.kl_max_weight * validation["kl"]


def source_tokenizer(init_from: str | None) -> PreTrainedTokenizerFast | None:
    """The tokenizer of the run dir a run starts from (its weights index that vocabulary), or None."""
    if not init_from:
        return None
    if not (Path(init_from) / "tokenizer.json").is_file():
        raise TextVAEError(f"train.init_from: {init_from} is not a textvae run dir (no tokenizer.json); give the "
                           "folder of a finished run")
    return PreTrainedTokenizerFast.from_pretrained(init_from)


def start_from_run(model: TextVAE, source: Path, settings: TrainConfig) -> None:
    """Load the best weights of the run dir `source` into `model` and, with train.reset_decoder, draw the decoder
    afresh: Li et al. 2019 start the VAE from a pretrained autoencoder's encoder with a new decoder."""
    if not (source / "model.safetensors").is_file():
        raise TextVAEError(f"train.init_from: {source} has no model.safetensors; train that run first (its best "
                           "weights are what this run starts from)")
    weights = TextVAE.from_pretrained(str(source)).state_dict()
    mismatch = weights_mismatch(model, {name: tuple(value.shape) for name, value in weights.items()}, str(source))
    if mismatch:
        raise TextVAEError(f"train.init_from: the weights of {source} do not fit this run's model ({mismatch}); give "
                           "both runs the same model settings")
    model.load_state_dict(weights)
    if settings.reset_decoder:
        reset_decoder(model, [], settings.seed + 2)
    logger.info(f"started from the weights of {source}" + (", decoder re-initialised" if settings.reset_decoder else ""))


def local_processes(workers: Workers) -> int:
    """Training processes on this machine (torchrun's LOCAL_WORLD_SIZE; else all of them)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", workers.world_size)))
    except ValueError:
        return max(1, workers.world_size)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(model: torch.nn.Module | list[torch.nn.Parameter], settings: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over a model's (or a list of) parameters; Adam/AdamW use PyTorch's fused
    kernel (one pass over all parameters)."""
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


def load_splits(config: RunConfig, tokenizer: PreTrainedTokenizerFast | None) -> tuple[PreTrainedTokenizerFast, dict[str, TokenizedSplit]]:
    """Load the corpus, build (or reuse) the tokenizer, and tokenize every split under the length policy
    (with data.streaming the train split stays a stream: textvae.streaming)."""
    if config.data.streaming:
        return load_streaming_splits(config.data, config.tokenizer, tokenizer)
    corpus = load_corpus(config.data)
    train_texts = corpus["train"].select_columns(["text"]).to_dict()["text"]
    if tokenizer is None:  # tokenizer.vocab_size auto is chosen here (tokenization.choose_vocabulary)
        tokenizer = build_tokenizer(config.tokenizer, train_texts)
    resolve_max_length(train_texts, tokenizer, config.data)  # data.max_length auto
    splits = {name: prepare_split(split, tokenizer, config.data) for name, split in corpus.items()}
    for name, split in splits.items():
        split.report.log(name, config.data, config.tokenizer.vocab_size)
    if len(splits["train"]) == 0:
        raise TextVAEError("the train split has no usable sentences (all blank or longer than "
                           f"data.max_length={config.data.max_length}); check the file or raise max_length")
    if "valid" not in splits or len(splits["valid"]) == 0:
        splits["valid"] = hold_out(splits["train"])
        logger.info(f"no valid split given: held out the last {len(splits['valid'])} train sentences")
    return tokenizer, splits


def train_batches(train: TokenizedSplit | StreamingTrainSplit, batch_size: int, special: dict[str, int], seed: int,
                  epoch: int, skip: int) -> Iterator[Batch]:
    """One epoch of shuffled, length-bucketed training batches, from memory or from a stream."""
    if isinstance(train, StreamingTrainSplit):
        return train.batches(batch_size, special, seed, epoch, skip)
    return iterate_batches(train, batch_size, special, shuffle=True, seed=seed, epoch=epoch, skip=skip)


def hold_out(train: TokenizedSplit, share: float = 0.05) -> TokenizedSplit:
    """Move the last `share` of train (at least one sentence) into a validation split."""
    count = max(1, int(len(train) * share))
    if count >= len(train):
        raise TextVAEError("the corpus is too small to hold out validation sentences; give a valid split")
    held = TokenizedSplit(train.texts[-count:], train.token_ids[-count:],
                          {k: v[-count:] for k, v in train.labels.items()})
    del train.texts[-count:], train.token_ids[-count:]
    for values in train.labels.values():
        del values[-count:]
    return held


# ---- the loop -------------------------------------------------------------------------------------

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
                         settings.target_rate, multiplier)
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
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if clip:
        return torch.nn.utils.clip_grad_norm_(parameters, clip)
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(grad.float()) for grad in grads]))


WINDOW_SUMS = ("objective", "rec", "kl")  # per-sentence figures summed over the sentences of a log window


def add_to_window(window: dict[str, float], loss: Loss, batch_size: int, workers: Workers) -> None:
    """Add one step to the log window's sums: the whole batch's objective, rec and KL (summed over all
    processes' rows), its sentences, and the gradient norm before clipping (the same on every process)."""
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


def train(config: RunConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train a model as `config` says, writing the run dir; returns the best validation results.
    Under torchrun it trains with DDP across the processes (textvae.distributed)."""
    out_dir = Path(out_dir)
    settings = config.train
    check_model_section(config.model)  # fail on a typo before any data is read
    check_remedies(config)
    check_tokenizer_section(config.tokenizer)
    if settings.tensorboard:
        require_tensorboard()  # a missing package fails now, not after the data is read
    workers, device = setup_workers(select_device(settings.device))
    resolve_precision(settings.precision, device)  # fp16 on a CPU, say, fails before the run dir is made
    created = not out_dir.exists()
    with contextlib.ExitStack() as cleanup:  # closes what the loop opens (the TensorBoard writer), even on errors
        cleanup.callback(teardown, workers)
        try:
            return train_loop(config, out_dir, resume, workers, device, cleanup)
        except Diverged as error:
            raise TextVAEError(diverged_advice(error, out_dir)) from None
        except BaseException:
            if created and workers.is_main:
                remove_unused_run_dir(out_dir)
            raise


def remove_unused_run_dir(out_dir: Path) -> None:
    """Remove the run dir a failed run created before it checkpointed anything: an empty or half-made folder
    would only be in the way (and look like a run); one with a checkpoint is kept for --resume."""
    if out_dir.is_dir() and not (out_dir / CHECKPOINT).exists() and not (out_dir / "model.safetensors").exists():
        shutil.rmtree(out_dir, ignore_errors=True)


def train_loop(config: RunConfig, out_dir: Path, resume: bool, workers: Workers, device: torch.device,
               cleanup: contextlib.ExitStack) -> dict[str, Any]:
    settings = config.train
    if workers.is_main:
        prepare_out_dir(out_dir, resume)
    workers.barrier()
    if resume:
        done = finished_without_loading(out_dir, config)
        if done is not None:
            return done
    hf_logging.disable_progress_bar()
    if not settings.progress_bar or not workers.is_main:
        import datasets

        datasets.disable_progress_bars()  # --quiet: no "Generating train split" bars either
    if device.type == "cpu" or settings.num_threads:
        threads, reason = choose_thread_count(settings.num_threads, local_processes(workers))
        torch.set_num_threads(threads)
        logger.info(reason)
    seed_everything(settings.seed)
    dtype = resolve_precision(settings.precision, device)
    logger.info(f"training on {device} in {describe_precision(settings.precision, dtype)}")
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    if device.type == "cpu":
        keep_freed_memory()
    draws = torch.Generator(device=device)  # the steps' word-dropout and posterior draws, shared by all processes
    draws.manual_seed(settings.seed + 1)

    if workers.is_main and not resume:  # rank 0 builds the tokenizer; the others read it back
        tokenizer, splits = load_splits(config, source_tokenizer(settings.init_from))
        tokenizer.save_pretrained(str(out_dir))
        save_config(config, out_dir / TRAIN_CONFIG)
    workers.barrier()
    if not workers.is_main or resume:
        tokenizer, splits = load_splits(config, PreTrainedTokenizerFast.from_pretrained(str(out_dir)))
    special = special_ids(tokenizer)
    model_config = build_model_config(config.model, vocabulary_size(tokenizer), special)
    check_model_fits(model_config, device)
    model = TextVAE(model_config).to(device)
    model.attach_tokenizer(tokenizer)  # a pretrained encoder reads sentences back as text (modeling.pretrained)
    optimizer = build_optimizer(model, settings)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=settings.lr_decay_factor, patience=settings.lr_decay_patience, min_lr=settings.min_lr)
    # aggressive training (He et al. 2019) updates the encoder with an optimizer of its own
    encoder_optimizer = build_optimizer(encoder_parameters(model), settings) if settings.aggressive else None

    if resume:
        state = load_checkpoint(out_dir, model, optimizer, scheduler, scaler, draws, encoder_optimizer)
        # the resumed run's own limits decide: a finished run stays finished unless --set raised what ended it
        reason = limit_reached(state, settings)
        state.finished = reason is not None
        apply_new_lr(state, out_dir, settings.lr, [optimizer, encoder_optimizer])
        at_validation = bool(state.history) and state.history[-1]["step"] == state.step
        already_finished = reason if at_validation else None  # else: validate once more
        if state.evals_since_best == 0 and at_validation and workers.is_main:
            save_model(model, out_dir)  # the checkpoint's weights are the best: redo a save a kill may have cut
        if already_finished is None:
            logger.info(f"resumed at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
        else:
            logger.info(f"{out_dir} has finished training: {already_finished}")
    else:
        if settings.init_from:
            start_from_run(model, Path(settings.init_from), settings)
        state, already_finished = TrainerState(train_lr=settings.lr), None
        if workers.is_main:
            model.config.save_pretrained(str(out_dir))
            (out_dir / METRICS).unlink(missing_ok=True)  # left by a run that died before its first checkpoint
            shutil.rmtree(out_dir / TENSORBOARD_DIR, ignore_errors=True)  # its events too
    metrics = MetricsLog(out_dir / METRICS, state.step if resume else None) if workers.is_main else None
    board = None
    if settings.tensorboard and workers.is_main:
        board = TensorBoardLog(out_dir / TENSORBOARD_DIR, state.step if resume else None)
        cleanup.callback(board.close)
    trained = DistributedDataParallel(model) if workers.distributed else model
    if settings.compile:
        trained = torch.compile(trained)

    batches_per_epoch = -(-len(splits["train"]) // settings.batch_size)
    total_steps = settings.max_steps or settings.max_epochs * batches_per_epoch
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_epochs * batches_per_epoch)
    bar = tqdm(total=total_steps, initial=state.step, disable=not (settings.progress_bar and workers.is_main),
               desc="train", dynamic_ncols=True)

    checkpointed_at = state.train_seconds  # the training time when the last checkpoint was written

    def log(record: dict[str, Any]) -> None:
        if metrics is not None:
            metrics.write(record)
        if board is not None:
            board.write(record)

    def evaluate_and_checkpoint() -> None:
        """Score the valid split, keep the best model, adapt the LR, decide on early stopping, checkpoint.
        Rank 0 evaluates and writes; every process takes the same decisions from its results."""
        nonlocal checkpointed_at
        record = None
        if workers.is_main:
            results = evaluate_split(model, splits["valid"], settings.eval_batch_size, seed=settings.seed, dtype=dtype)
            record = {"step": state.step, "epoch": state.epoch, "split": "valid", "loss": results["neg_elbo"],
                      "rec": results["rec"], "kl": results["kl"], "kl_weight": kl_weight(state.step, settings),
                      "ppl_bound": results["ppl_bound"], "train_seconds": round(state.train_seconds, 1),
                      "precision": precision_name(dtype)}
            record.update({key: results[key] for key in ("mi", "au") if key in results})  # collapse diagnostics
            if pretraining():
                record["pretraining"] = True  # an autoencoder-phase model: not a candidate for the best
            if aggressive_now() and "mi" in record:
                record["aggressive"] = aggressive_stays_on(state.previous_mi, record["mi"], mi_limit)
            log(record)
        record = workers.from_main(record)
        if not math.isfinite(record["loss"]):  # keep the last checkpoint, from before the problem
            raise Diverged("validation loss", record["loss"], state.step, optimizer.param_groups[0]["lr"])
        state.history.append(record)
        if "aggressive" in record:
            state.aggressive_off, state.previous_mi = not record["aggressive"], record["mi"]
            if state.aggressive_off:
                log_aggressive_off(record["mi"])
        judged = judged_loss(record, settings)
        improved = judged < state.best_valid
        if improved:
            state.best_valid, state.evals_since_best = judged, 0
        else:
            state.evals_since_best += 1
        if not record.get("pretraining"):  # the autoencoder phase neither decays the LR nor stops early
            decay_on_plateau(judged)
        if (settings.early_stopping_patience and state.evals_since_best >= settings.early_stopping_patience
                and not record.get("pretraining")):
            logger.info(f"early stop at step {state.step}: no improvement in {state.evals_since_best} evaluations")
            state.finished = True
        if workers.is_main:  # checkpoint first: a kill between the two leaves what resume repairs (below)
            save_checkpoint(out_dir, model, optimizer, scheduler, state, scaler, draws, encoder_optimizer)
            if improved:
                save_model(model, out_dir)
        checkpointed_at = state.train_seconds
        workers.barrier()

    def decay_on_plateau(loss: float) -> None:
        """Let the plateau scheduler judge a validation loss, no sooner than train.lr_decay_from_epoch. At a
        decay, with train.lr_decay_reload_best, go back to the best weights so far and restart the optimizers
        (the published PTB code of He et al. 2019 and Li et al. 2019, which also judge the next plateau against
        the loss that triggered the decay); after train.lr_decay_max decays, training ends."""
        scheduler.patience = settings.lr_decay_patience if state.epoch >= settings.lr_decay_from_epoch else math.inf
        before = optimizer.param_groups[0]["lr"]
        scheduler.step(loss)
        if optimizer.param_groups[0]["lr"] >= before:
            return
        state.lr_decays += 1
        logger.info(f"step {state.step}: LR decay {state.lr_decays}, {before:g} -> {optimizer.param_groups[0]['lr']:g}")
        if settings.lr_decay_reload_best:
            reload_best_weights(model, out_dir, [optimizer, encoder_optimizer])
            scheduler.best = loss
        if settings.lr_decay_max and state.lr_decays >= settings.lr_decay_max:
            logger.info(f"training ends: the LR has decayed {state.lr_decays} times (train.lr_decay_max)")
            state.finished = True

    def checkpoint_between_evaluations() -> None:
        """After train.checkpoint_minutes of training since the last checkpoint, write one without validating,
        so a kill in a long epoch (aggressive training, a large corpus) loses at most that much. Rank 0 alone
        decides and writes; the others need not wait."""
        nonlocal checkpointed_at
        if not settings.checkpoint_minutes or state.train_seconds - checkpointed_at < 60 * settings.checkpoint_minutes:
            return
        if workers.is_main:
            save_checkpoint(out_dir, model, optimizer, scheduler, state, scaler, draws, encoder_optimizer)
        checkpointed_at = state.train_seconds

    def pretraining() -> bool:
        return state.step < settings.pretrain_ae_steps or (settings.pretrain_ae_steps > 0 and not state.decoder_reset)

    def aggressive_now() -> bool:
        return settings.aggressive and not state.aggressive_off

    def log_aggressive_off(mi: float) -> None:
        reason = "reached its ceiling" if mi >= mi_limit else "stopped rising"
        logger.info(f"aggressive training off from step {state.step}: validation MI {mi:.4f} {reason}")

    def judge_last_validation_again() -> None:
        """On resume, the switch-off rule in force (a changed train.aggressive_mi_ceiling) judges the
        checkpoint's last validation again; under an unchanged rule this repeats its decision."""
        judged = [record for record in state.history if "aggressive" in record]
        if aggressive_now() and judged:
            previous = judged[-2]["mi"] if len(judged) > 1 else None
            if not aggressive_stays_on(previous, judged[-1]["mi"], mi_limit):
                state.aggressive_off = True
                log_aggressive_off(judged[-1]["mi"])

    def start_vae_phase() -> None:
        """Li et al. 2019: the autoencoder phase is over; a fresh decoder, and the LR, plateau and
        early-stopping bookkeeping start again (the autoencoder's scores do not compete with the VAE's)."""
        reset_decoder(model, [optimizer] + ([encoder_optimizer] if encoder_optimizer else []), settings.seed + 2)
        for group in optimizer.param_groups:
            group["lr"] = settings.lr
        scheduler.best, scheduler.num_bad_epochs = scheduler.mode_worse, 0
        state.best_valid, state.evals_since_best, state.decoder_reset = float("inf"), 0, True
        logger.info(f"step {state.step}: autoencoder pretraining done, decoder re-initialised")

    mi_limit = math.inf  # He et al.'s rule alone
    if settings.aggressive_mi_ceiling:
        mi_limit = mi_ceiling(len(splits["valid"]), model.config.latent_size)
    if resume:
        judge_last_validation_again()
    inner_batches = list(iterate_batches(splits["train"], settings.batch_size, special)) if settings.aggressive else []

    def draw_inner_batch() -> Batch:
        """A random train batch for an inner encoder update, from the shared (checkpointed) generator."""
        index = int(torch.randint(len(inner_batches), (1,), device=device, generator=draws))
        return inner_batches[index]

    def encoder_update(batch: Batch) -> float:
        """One encoder-only update; the whole batch's summed loss (all processes together)."""
        rows = workers.rows(len(batch.indices))
        loss = training_step(trained, encoder_optimizer, batch.token_ids.to(device), batch.lengths, state.step,
                             settings, special, dtype, scaler, draws, rows, workers.world_size,
                             state.kl_multiplier, encoder_parameters(model))
        return workers.all_sum(loss.value * workers.share(len(batch.indices)), device)

    def over_time() -> bool:
        """train.max_minutes spent (every process agrees: rank 0's clock decides)."""
        if not settings.max_minutes:
            return False
        return bool(workers.from_main(state.train_seconds >= 60 * settings.max_minutes))

    def stop_requested() -> bool:
        """Whether a SIGINT/SIGTERM asked training to stop (on any process: all of them stop at the same step)."""
        asked = stops.received is not None
        if workers.distributed:
            asked = workers.all_sum(float(asked), device) > 0
        return asked

    def stop_for_signal() -> None:
        """Checkpoint the step just finished (rank 0 writes, atomically) and end training with TrainingInterrupted."""
        if workers.is_main:
            save_checkpoint(out_dir, model, optimizer, scheduler, state, scaler, draws, encoder_optimizer)
        workers.barrier()
        bar.close()  # before the message, so that it gets a line of its own
        received = stops.received or signal.SIGTERM  # another process received it
        logger.info(f"{received.name}: checkpointed step {state.step}")
        raise TrainingInterrupted(received.name, 128 + int(received), state.step, out_dir)

    window_tokens, window_start = 0, time.perf_counter()
    step_start = window_start
    with StopRequests() as stops:
        while not state.finished and state.epoch < settings.max_epochs:
            trained.train()
            for batch in train_batches(splits["train"], settings.batch_size, special, settings.seed, state.epoch,
                                       state.batch_in_epoch):
                state.batch_in_epoch += 1
                if len(batch.indices) < workers.world_size:  # too few sentences to give every process one
                    continue
                if settings.pretrain_ae_steps and state.step >= settings.pretrain_ae_steps and not state.decoder_reset:
                    start_vae_phase()
                inner_steps, updated = 0, None
                if state.step < settings.warmup_steps:  # linear warm-up
                    for group in optimizer.param_groups:
                        group["lr"] = settings.lr * (state.step + 1) / settings.warmup_steps
                if settings.lr_cooldown and state.step >= (1 - settings.lr_cooldown) * total_steps:  # linear cool-down
                    for group in optimizer.param_groups:
                        group["lr"] = settings.lr * (total_steps - state.step) / (settings.lr_cooldown * total_steps)
                if aggressive_now():  # the encoder catches up first; then the joint step updates the decoder alone
                    for group in encoder_optimizer.param_groups:  # the encoder's LR follows the decayed one
                        group["lr"] = optimizer.param_groups[0]["lr"]
                    inner_steps = aggressive_inner_loop(encoder_update, batch, draw_inner_batch,
                                                        settings.aggressive_max_inner_steps, settings.aggressive_window)
                    updated = decoder_parameters(model)
                rows = workers.rows(len(batch.indices))
                loss = training_step(trained, optimizer, batch.token_ids.to(device), batch.lengths, state.step,
                                     settings, special, dtype, scaler, draws, rows, workers.world_size,
                                     state.kl_multiplier, updated)
                if settings.target_rate and not pretraining():
                    batch_kl = workers.all_sum(float(loss.kl) * workers.share(len(batch.indices)), device)
                    state.kl_multiplier = updated_multiplier(state.kl_multiplier, batch_kl / len(batch.indices), settings)
                add_to_window(state.log_window, loss, len(batch.indices), workers)
                state.step += 1
                window_tokens += batch.predicted_tokens
                state.train_seconds += time.perf_counter() - step_start
                bar.update(1)

                if state.step % settings.log_every == 0:
                    elapsed = time.perf_counter() - window_start
                    tokens_per_s = window_tokens / elapsed if elapsed > 0 else 0.0
                    figures = window_figures(state.log_window)
                    state.log_window = {}
                    record = {"step": state.step, "epoch": state.epoch, "split": "train", **figures,
                              "kl_weight": loss.kl_weight, "lr": optimizer.param_groups[0]["lr"],
                              "tokens_per_s": round(tokens_per_s, 1)}
                    if settings.target_rate:
                        record["kl_multiplier"] = state.kl_multiplier
                    if inner_steps:
                        record["inner_steps"] = inner_steps
                    log(record)
                    bar.set_postfix(loss=f"{figures['loss']:.2f}", kl=f"{figures['kl']:.2f}", tok_s=f"{tokens_per_s:.0f}")
                    window_tokens, window_start = 0, time.perf_counter()
                if settings.eval_every and state.step % settings.eval_every == 0:
                    evaluate_and_checkpoint()
                    window_tokens, window_start = 0, time.perf_counter()
                checkpoint_between_evaluations()
                if state.finished or (settings.max_steps and state.step >= settings.max_steps) or over_time():
                    state.finished = True
                    break
                if stop_requested():
                    stop_for_signal()
                step_start = time.perf_counter()
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
                if not settings.eval_every:
                    evaluate_and_checkpoint()
                    step_start = time.perf_counter()
                if stop_requested():
                    stop_for_signal()
        bar.close()
        if not state.history or state.history[-1]["step"] != state.step:
            evaluate_and_checkpoint()
    return run_summary(state, settings, already_finished)

"""When training ends and how a run is judged: the limits that end it (steps, epochs, minutes, early stopping, LR
decays), the validation figure that picks the best model, the summary `train` returns, and stop requests by
signal (SIGINT, SIGTERM), honoured after the step in flight."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config import RunConfig, TrainConfig, resumed_config
from .checkpoint import CHECKPOINT, TrainerState, peek_state
from .step import Diverged

logger = logging.getLogger("textvae")


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


def judged_loss(validation: dict[str, Any], settings: TrainConfig) -> float:
    """The validation figure that picks the best model and drives the LR schedule: the objective at the KL
    schedule's final weight, rec + kl_max_weight * KL. That is the −ELBO for a VAE (kl_max_weight 1) and the
    reconstruction loss for an autoencoder (kl_max_weight 0), as the published code judges its runs."""
    if settings.kl_max_weight == 1.0:
        return validation["loss"]
    return validation["rec"] + settings.kl_max_weight * validation["kl"]


class StopRequests:
    """Turns SIGINT and SIGTERM into a request the training loop honours after the step in flight, instead of
    losing the work since the last checkpoint; a second SIGINT interrupts at once (the last checkpoint is kept).
    Handlers are installed only from the main thread (Python allows no others) and restored on exit. A signal the
    process was started ignoring (SIGINT for `nohup cmd &` or a background job of a script) stays ignored, as
    Python itself leaves it."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name, None)
                if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
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

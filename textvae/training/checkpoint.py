"""Checkpoint I/O: the files of a run dir, and how they are written so that no kill loses work.

A run dir holds what users load (config.json + model.safetensors of the best model, tokenizer files,
train_config.yaml), metrics.jsonl, and what resuming needs: checkpoint.pt (weights, optimizers,
scheduler, the TrainerState counters, random states). Every file is written to a temporary name and
renamed (textvae/atomic_files.py), so a run killed at any moment leaves the previous good files in place.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic_files import replace_atomically
from ..config import TRAIN_CONFIG, read_yaml
from ..errors import TextVAEError
from ..modeling import TextVAE
from ..modeling.shapes import weights_mismatch

logger = logging.getLogger("textvae")
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


@dataclass
class TrainerState:
    """Counters that place a run in time; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_valid: float = float("inf")
    evals_since_best: int = 0
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # validation results, in order
    kl_multiplier: float = 0.0  # Lagrange multiplier of the target-rate constraint (train.target_rate)
    decoder_reset: bool = False  # the decoder has been re-initialised after train.pretrain_ae_steps
    aggressive_off: bool = False  # train.aggressive was switched off for good by the MI rule
    previous_mi: float | None = None  # validation MI the aggressive switch-off rule compares with
    train_seconds: float = 0.0  # training time so far, evaluations excluded (train.max_minutes)
    train_lr: float | None = None  # the train.lr setting the run last trained with (a new one applies on resume)
    lr_decays: int = 0  # times the LR has decayed (train.lr_decay_max stops training at that many)
    log_window: dict[str, float] = field(default_factory=dict)  # sums over the train steps not yet logged


def save_model(model: TextVAE, out_dir: Path) -> None:
    """save_pretrained into a scratch folder, then move each file into the run dir atomically."""
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".save-") as scratch:
        model.save_pretrained(scratch)
        for name in os.listdir(scratch):
            replace_atomically(lambda tmp, name=name: shutil.copyfile(Path(scratch) / name, tmp), out_dir / name)


def save_checkpoint(out_dir: Path, model: TextVAE, optimizer, scheduler, state: TrainerState,
                    scaler: torch.amp.GradScaler | None = None, draws: torch.Generator | None = None,
                    encoder_optimizer: torch.optim.Optimizer | None = None) -> None:
    """checkpoint.pt: everything resuming needs to continue exactly (weights, optimizers, counters, RNGs)."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "encoder_optimizer": encoder_optimizer.state_dict() if encoder_optimizer is not None else None,
        "scheduler": scheduler.state_dict(),
        "state": asdict(state),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python_rng": random.getstate(),
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
        "draws": draws.get_state() if draws is not None else None,
    }
    replace_atomically(lambda tmp: torch.save(payload, tmp), out_dir / CHECKPOINT)


def read_checkpoint(path: Path, device: torch.device | str = "cpu", mmap: bool = False) -> dict[str, Any]:
    """checkpoint.pt read with `weights_only=True`: torch's restricted unpickler accepts tensors and plain
    Python data (dicts, lists, tuples, numbers, strings), which is all save_checkpoint writes (random states
    are tuples of ints and ByteTensors), and refuses anything else, so a file that carries a pickled callable
    is never run. Such a file, or a damaged one, is one clear line."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        detail = next((line.strip() for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported" in line),
                      "")
        if "Weights only load failed" in str(error):
            raise TextVAEError(f"checkpoint {path} holds Python objects a textvae checkpoint never does "
                               f"({detail[:120] or 'not tensors or plain data'}); it was not loaded, since loading "
                               "it could run code: use a checkpoint written by textvae, or start a new run with "
                               "another --out") from None
        raise TextVAEError(f"checkpoint {path} cannot be read ({str(error).splitlines()[0][:120]}); it is truncated "
                           "or damaged: start a new run with another --out") from None
    except (RuntimeError, EOFError, OSError, AttributeError, TypeError, ValueError) as error:
        raise TextVAEError(f"checkpoint {path} cannot be read ({str(error).splitlines()[0][:120]}); it is truncated "
                           "or damaged: start a new run with another --out") from None
    if not isinstance(payload, dict):
        raise TextVAEError(f"checkpoint {path} holds a {type(payload).__name__}, not a textvae checkpoint; start a "
                           "new run with another --out")
    return payload


def load_checkpoint(out_dir: Path, model: TextVAE, optimizer, scheduler,
                    scaler: torch.amp.GradScaler | None = None, draws: torch.Generator | None = None,
                    encoder_optimizer: torch.optim.Optimizer | None = None) -> TrainerState:
    """Restore what save_checkpoint wrote into the given objects; a damaged or mismatched file is one clear line."""
    path = out_dir / CHECKPOINT
    payload = read_checkpoint(path, model.device)
    try:
        saved = {name: tuple(value.shape) for name, value in payload["model"].items()}
    except (KeyError, AttributeError, TypeError) as error:
        raise TextVAEError(f"checkpoint {path} cannot be read (no model weights: {error}); it is truncated "
                           "or damaged: start a new run with another --out") from None
    mismatch = weights_mismatch(model, saved, str(path))
    if mismatch:
        raise TextVAEError(f"checkpoint {path} does not fit the model of this run's config: {mismatch}; resume with "
                           "the run's own model settings (no --set model.*), or start a new run with another --out")
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if encoder_optimizer is not None and payload.get("encoder_optimizer") is not None:
        encoder_optimizer.load_state_dict(payload["encoder_optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"].cpu())
    if payload["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    random.setstate(payload["python_rng"])
    if scaler is not None and payload.get("grad_scaler"):
        scaler.load_state_dict(payload["grad_scaler"])
    if draws is not None and payload.get("draws") is not None:
        draws.set_state(payload["draws"].cpu())
    return TrainerState(**payload["state"])


def peek_state(out_dir: Path) -> TrainerState | None:
    """The TrainerState of a run dir's checkpoint, read without building a model (the weights are mapped, not
    read); None when the file cannot be read that way (load_checkpoint then says what is wrong)."""
    try:
        payload = torch.load(out_dir / CHECKPOINT, map_location="cpu", weights_only=True, mmap=True)
        return TrainerState(**payload["state"])
    except Exception:  # damaged, truncated or foreign files: reported by load_checkpoint
        return None


def prepare_out_dir(out_dir: Path, resume: bool) -> None:
    """Check the run dir suits a new run (empty of runs) or a resumed one (has a checkpoint)."""
    if resume:
        if not (out_dir / CHECKPOINT).exists():
            raise TextVAEError(f"--resume: {out_dir} has no {CHECKPOINT}; train into it first without --resume")
        for leftover in [*out_dir.glob(".save-*"), *out_dir.glob(".*.tmp")]:  # from a run killed mid-write
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        return
    if (out_dir / CHECKPOINT).exists() or (out_dir / "model.safetensors").exists():
        raise TextVAEError(f"--out {out_dir} already holds a run; pass --resume to continue it, or choose a new --out")
    out_dir.mkdir(parents=True, exist_ok=True)


def apply_new_lr(state: TrainerState, out_dir: Path, lr: float, optimizers: list[torch.optim.Optimizer | None]) -> None:
    """On resume, a train.lr that differs from the one the checkpointed run trained with (`--set train.lr=...`)
    replaces the checkpoint's, possibly decayed, learning rate; an unchanged train.lr keeps the checkpoint's."""
    before = state.train_lr  # None in checkpoints older than this field: the run's train_config.yaml tells
    if before is None:
        before = float(read_yaml(out_dir / TRAIN_CONFIG).get("train", {}).get("lr", lr))
    state.train_lr = lr
    if before == lr:
        return
    for optimizer in optimizers:
        for group in optimizer.param_groups if optimizer is not None else []:
            group["lr"] = lr
    logger.info(f"train.lr changed on resume: {before:g} -> {lr:g}")

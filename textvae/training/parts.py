"""The parts of a run the trainer calls at named points, so that the loop reads the same whatever recipe is on:
a part changes how training proceeds before a step (the LR warm-up, aggressive encoder updates, the switch from
autoencoder to VAE), after a step (the target-rate multiplier), or after a validation (aggressive training's
switch-off rule), and may add fields to the lines of metrics.jsonl. The collapse remedies are parts of
collapse.py; the LR warm-up, here, shapes the optimisation itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..data import Batch
from .objectives import Loss

if TYPE_CHECKING:
    from .trainer import Trainer


@dataclass
class StepPlan:
    """What the parts decided for one step before it runs."""

    parameters: list[torch.nn.Parameter] | None = None  # what the step updates (None: every parameter)
    inner_steps: int = 0  # encoder-only updates run before it (aggressive training)


class TrainingPart:
    """The named points; every one does nothing unless a part overrides it."""

    def on_start(self, trainer: Trainer) -> None:
        """After setup, before the first step (of the run, or of its resume)."""

    def before_step(self, trainer: Trainer, batch: Batch, plan: StepPlan) -> None:
        """Before the step on `batch`, which follows `plan`."""

    def after_step(self, trainer: Trainer, batch: Batch, loss: Loss) -> None:
        """After the step, before the step counter moves on."""

    def train_line(self, trainer: Trainer, plan: StepPlan) -> dict[str, Any]:
        """Fields this part adds to a train line of metrics.jsonl (`plan`: the last step's)."""
        return {}

    def validation_fields(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Add this part's fields to a validation record (rank 0, before it is logged and shared)."""

    def after_validation(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After every process has the validation record and it is in the run's history."""


class LinearWarmup(TrainingPart):
    """train.warmup_steps: the LR rises linearly from lr / warmup_steps to lr over the first steps (Transformers)."""

    def before_step(self, trainer: Trainer, batch: Batch, plan: StepPlan) -> None:
        """Set the LR of a step inside the warm-up."""
        settings, step = trainer.settings, trainer.state.step
        if step < settings.warmup_steps:
            for group in trainer.optimizer.param_groups:
                group["lr"] = settings.lr * (step + 1) / settings.warmup_steps


class LinearCooldown(TrainingPart):
    """train.lr_cooldown: over the last share of the run's steps the LR falls linearly to 0 (measured on the demo:
    more exact reconstructions than a constant LR for the same steps, docs/homotopy.md)."""

    def before_step(self, trainer: Trainer, batch: Batch, plan: StepPlan) -> None:
        """Set the LR of a step inside the cool-down."""
        settings, step, total = trainer.settings, trainer.state.step, trainer.total_steps
        if step >= (1 - settings.lr_cooldown) * total:
            for group in trainer.optimizer.param_groups:
                group["lr"] = settings.lr * (total - step) / (settings.lr_cooldown * total)

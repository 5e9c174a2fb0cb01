"""Training: the Trainer (setup, steps, validations, checkpoints as methods over explicit state), one optimisation
step, the objectives and the collapse remedies it calls at named points, checkpoint I/O, distributed setup,
CPU threads, and the logs. `train(config, out_dir, resume=...)` is the entry point."""

from .limits import StopRequests, judged_loss
from .setup import build_optimizer, seed_everything
from .step import training_step
from .trainer import Trainer, train

__all__ = ["StopRequests", "Trainer", "build_optimizer", "judged_loss", "seed_everything", "train", "training_step"]

"""Where a run's metrics go: metrics.jsonl (MetricsLog, the record of the run) and, optionally, TensorBoard: the
scalars of each metrics.jsonl record, under RUN_DIR/tensorboard/.

metrics.jsonl stays the record of a run (plots and tests read it); TensorBoard is a live view of the
same numbers for people who already use it, so it is optional (`pip install tensorboard`, or the
`textvae[tensorboard]` extra) and asked for with `train.tensorboard: true` or `textvae train --tensorboard`.
Each record's numbers go to tags `SPLIT/KEY` (train/loss, valid/kl, valid/mi, ...) at the record's step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checks import is_real
from ..atomic_files import replace_atomically, write_failure
from ..errors import TextVAEError

TENSORBOARD_DIR = "tensorboard"
NOT_SCALARS = ("step", "epoch", "split")  # placing keys, not measurements
INSTALL_HINT = "pip install tensorboard (or pip install 'textvae[tensorboard]')"


def require_tensorboard():
    """torch's SummaryWriter class, or one line saying how to install what it needs."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TextVAEError(f"train.tensorboard (--tensorboard) needs the tensorboard package; {INSTALL_HINT}, "
                           "or train without it (metrics.jsonl has the same numbers)") from None
    return SummaryWriter


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The tag → value pairs of a metrics record: its numbers (not flags like `pretraining`) under SPLIT/."""
    split = record.get("split", "train")
    return {f"{split}/{key}": float(value) for key, value in record.items()
            if key not in NOT_SCALARS and is_real(value)}


class TensorBoardLog:
    """Writes each metrics record to TensorBoard event files in `folder`.

    On resume (`resume_step` given), TensorBoard is told to hide the events a killed run logged after
    its last checkpoint (SummaryWriter's purge_step), as MetricsLog drops those lines, so the resumed
    run's events continue the curves instead of doubling them. Every write is flushed, so a crash or a
    kill loses nothing that metrics.jsonl kept.
    """

    def __init__(self, folder: Path, resume_step: int | None = None):
        writer_class = require_tensorboard()
        purge_step = resume_step + 1 if resume_step is not None else None
        self.writer = writer_class(log_dir=str(folder), purge_step=purge_step)

    def write(self, record: dict[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MetricsLog:
    """metrics.jsonl: one JSON object a line; on resume, lines after the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        if resume_step is not None and path.exists():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
            text = "".join(line + "\n" for line in kept)
            replace_atomically(lambda tmp: tmp.write_text(text, encoding="utf-8"), path)

    def write(self, record: dict[str, Any]) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as error:
            raise TextVAEError(f"could not append to {self.path} ({write_failure(error)}); free disk space, then "
                               "--resume: the last checkpoint is kept") from None

"""Per-sentence scores saved while a long evaluation runs, so a stopped `evaluate` or `score` resumes.

IW-NLL with k = 500 over a test set takes most of an hour on a CPU; an ended session or a closed laptop
must not throw that work away. The score arrays are written atomically (at most every `interval`
seconds) to a file named by a fingerprint of everything that decides them: the model's weights, the
sentences, k, the seed, the batch size and the precision. A rerun with the same inputs finds the file,
skips the batches already scored and, because every batch draws its noise from its own seeded stream,
ends with exactly the numbers an uninterrupted run gives. The file is removed once the run completes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..atomic_files import replace_atomically
from ..errors import TextVAEError

logger = logging.getLogger(__name__)

PREFIX = ".textvae-scores-"
WORTH_SAVING = 20_000  # sentences × importance samples; below this a rerun takes seconds, not worth a weights digest
UNREADABLE = (OSError, KeyError, ValueError, zipfile.BadZipFile)  # what reading a damaged or foreign file raises


def worth_saving(sentences: int, iw_samples: int) -> bool:
    """Whether an evaluation is long enough to save as it goes (scoring one sentence in a loop must stay cheap)."""
    return sentences * max(iw_samples, 1) >= WORTH_SAVING


def fingerprint(model: torch.nn.Module, texts: list[str], token_ids: list[list[int]], **settings) -> str:
    """A digest of the weights, the sentences and the scoring settings: equal digests, equal scores."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for text, ids in zip(texts, token_ids):
        digest.update(text.encode())
        digest.update(np.asarray(ids, dtype=np.int64).tobytes())
    return digest.hexdigest()


class ScoreProgress:
    """The score arrays of one evaluation, with a per-sentence `done` mask, loaded from and saved to `folder`."""

    def __init__(self, folder: Path | None, key: str, arrays: dict[str, np.ndarray], interval: float = 60.0):
        self.path = folder / f"{PREFIX}{key[:16]}.npz" if folder is not None else None
        self.key, self.arrays, self.interval = key, arrays, interval
        self.done = np.zeros(len(next(iter(arrays.values()))), dtype=bool)
        self.last_save = time.monotonic()
        if self.path is not None and self.path.is_file():
            self.load()

    def load(self) -> None:
        """Take the saved arrays when they belong to this evaluation; otherwise start afresh."""
        try:
            with np.load(self.path) as saved:
                if str(saved["key"]) != self.key or saved["done"].shape != self.done.shape:
                    return
                for name, array in self.arrays.items():
                    array[...] = saved[name]
                self.done[...] = saved["done"]
        except UNREADABLE as error:
            # a damaged file is only lost time, never wrong numbers: `done` stays empty, every batch is scored again
            logger.warning(f"ignoring unreadable saved scores {self.path} ({error}); scoring from the start")
            return
        logger.info(f"resuming: {int(self.done.sum())} of {len(self.done)} sentences already scored ({self.path})")

    def covers(self, rows: np.ndarray) -> bool:
        """Whether every sentence of a batch was scored before."""
        return bool(self.done[rows].all())

    def mark(self, rows: np.ndarray) -> None:
        """Record a scored batch and save if the last save is `interval` seconds old."""
        self.done[rows] = True
        if self.path is not None and time.monotonic() - self.last_save >= self.interval:
            self.save()

    def save(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, key=np.array(self.key), done=self.done, **self.arrays)

        try:
            replace_atomically(write, self.path)
        except TextVAEError as error:  # saving is insurance: its failure must not stop the evaluation itself
            logger.warning(f"{error}; scoring goes on without saving partial scores")
            self.path = None
        self.last_save = time.monotonic()

    def finish(self) -> None:
        """The evaluation is complete: its saved partial scores are no longer needed."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def scored_share(path: Path) -> float:
    """The share of the sentences a saved partial-scores file holds (for progress reports); raises one of
    UNREADABLE when the file is damaged."""
    with np.load(path) as saved:
        return float(saved["done"].mean())


def progress_folder(run_dir: Path | None) -> Path | None:
    """Where a run's partial scores go: its run dir, when there is one and it can be written."""
    if run_dir is None or not run_dir.is_dir() or not os.access(run_dir, os.W_OK):
        return None
    return run_dir

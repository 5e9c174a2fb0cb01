"""Faults: a training process killed (SIGKILL) at random moments, again and again, resumes to the same end."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODEL

SETTINGS = [*TINY_MODEL, "--set", "train.max_steps=240", "--set", "train.eval_every=15", "--set", "train.batch_size=16",
            "--set", "train.word_dropout=0.3", "--set", "train.num_threads=1", "--set", "train.log_every=5"]


def start(out: Path, resume: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "textvae.cli", "train", "--out", str(out), "--quiet", *SETTINGS]
    return subprocess.Popen(command + (["--resume"] if resume else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})


def checkpoint_time(out: Path) -> float:
    path = out / "checkpoint.pt"
    return path.stat().st_mtime_ns if path.exists() else 0


def run_until_killed(out: Path, rng: random.Random, after_checkpoint: bool) -> bool:
    """Start (or resume) training and SIGKILL it: at a random moment of start-up, or a random moment
    (0-300 ms) after it next writes a checkpoint. False if it finished before being killed."""
    process = start(out, resume=(out / "checkpoint.pt").exists())
    if after_checkpoint:
        seen = checkpoint_time(out)
        while checkpoint_time(out) == seen and process.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
    else:
        time.sleep(rng.uniform(0.5, 4.0))
    if process.poll() is not None:
        assert process.returncode == 0, process.stderr.read().decode()[-2000:]
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def final_weights(out: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["state"]["step"] == 240
    return checkpoint["model"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_reaches_the_uninterrupted_parameters(tmp_path: Path) -> None:
    straight = start(tmp_path / "straight", resume=False)
    assert straight.wait(timeout=600) == 0, straight.stderr.read().decode()[-2000:]

    rng = random.Random(7)
    killed = tmp_path / "killed"
    kills = [run_until_killed(killed, rng, after_checkpoint=False)]  # during start-up
    kills += [run_until_killed(killed, rng, after_checkpoint=True) for _ in range(4)]  # during training
    assert sum(kills) >= 3, "the run finished before it could be killed: make it longer"
    final = start(killed, resume=(killed / "checkpoint.pt").exists())
    assert final.wait(timeout=600) == 0, final.stderr.read().decode()[-2000:]

    expected = final_weights(tmp_path / "straight")
    for name, weight in final_weights(killed).items():
        torch.testing.assert_close(weight, expected[name], rtol=0, atol=0, msg=f"{name} differs after kills")
    assert (killed / "model.safetensors").exists()
    assert not list(killed.glob(".*.tmp")) and not list(killed.glob(".save-*"))  # no half-written leftovers

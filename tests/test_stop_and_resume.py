"""A run's end and its interruptions: a finished run stays finished on --resume (unless a limit is raised), and
SIGINT/SIGTERM finish the step in flight, checkpoint it and exit so that --resume continues exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_MODEL, read_metrics

import textvae.training.trainer
from textvae.cli import main
from textvae.config import load_config
from textvae.errors import TrainingInterrupted
from textvae.config import resumed_config
from textvae.training import StopRequests, train

SETTINGS = [value for value in TINY_MODEL if value != "--set"] + [
    "train.batch_size=32", "train.progress_bar=false", "train.precision=fp32", "train.num_threads=1"]


def settings(*extra: str):
    return load_config(None, [*SETTINGS, *extra])


def checkpoint_step(run: Path) -> int:
    return torch.load(run / "checkpoint.pt", weights_only=True)["state"]["step"]


def untouched(run: Path):
    """The files a resume that has nothing to do must leave as they are: their contents and times."""
    return {name: ((run / name).read_bytes(), (run / name).stat().st_mtime_ns)
            for name in ("checkpoint.pt", "metrics.jsonl", "model.safetensors")}


def test_a_run_finished_by_max_steps_does_nothing_on_resume_until_the_limit_is_raised(tmp_path, capsys):
    run = tmp_path / "run"
    train(settings("train.max_steps=2"), run)
    before = untouched(run)
    summary = train(resumed_config(run, []), run, resume=True)
    assert summary["steps"] == 2 and "train.max_steps=2" in summary["already_finished"]
    assert untouched(run) == before  # no step, no validation, no file written

    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train: the run has finished (it reached train.max_steps=2)" in out
    assert "--set train.max_steps=" in out and "trained 2 steps in fp32;" in out
    assert untouched(run) == before

    summary = train(resumed_config(run, ["train.max_steps=3"]), run, resume=True)  # a raised limit trains on
    assert summary["steps"] == 3 and summary["already_finished"] is None
    assert [line["step"] for line in read_metrics(run) if line["split"] == "valid"] == [2, 3]


def test_a_run_finished_by_max_minutes_runs_no_further_validation_on_resume(tmp_path):
    run = tmp_path / "run"
    first = train(settings("train.max_minutes=0.0001"), run)  # stops after its first step
    before = untouched(run)
    summary = train(resumed_config(run, []), run, resume=True)
    assert summary["steps"] == first["steps"] and "train.max_minutes" in summary["already_finished"]
    assert untouched(run) == before


def test_early_stopped_and_lr_capped_runs_stay_finished_unless_their_limit_is_raised(tmp_path, monkeypatch):
    losses = iter(range(10, 100))  # every validation worse than the first

    def worse_each_time(model, split, batch_size, seed=0, dtype=None):
        loss = float(next(losses))
        return {"neg_elbo": loss, "rec": loss - 1.0, "kl": 1.0, "ppl_bound": 10.0, "mi": 0.5, "au": 1}

    monkeypatch.setattr(textvae.training.trainer, "evaluate_split", worse_each_time)
    stopped = tmp_path / "stopped"
    assert train(settings("train.eval_every=1", "train.early_stopping_patience=2"), stopped)["steps"] == 3
    before = untouched(stopped)
    summary = train(resumed_config(stopped, []), stopped, resume=True)
    assert "early" in summary["already_finished"] and untouched(stopped) == before
    assert train(resumed_config(stopped, ["train.early_stopping_patience=3"]), stopped, resume=True)["steps"] == 4

    capped = tmp_path / "capped"
    assert train(settings("train.eval_every=1", "train.lr_decay_patience=0", "train.lr_decay_max=2"), capped)["steps"] == 3
    before = untouched(capped)
    assert "train.lr_decay_max=2" in train(resumed_config(capped, []), capped, resume=True)["already_finished"]
    assert untouched(capped) == before


# ---- SIGINT / SIGTERM -------------------------------------------------------------------------------

INTERRUPTED = [*SETTINGS, "train.max_steps=150", "train.log_every=1", "train.word_dropout=0.3"]


def train_arguments(out: Path) -> list[str]:
    """`textvae train` of the demo recipe, tiny and in fp32, for INTERRUPTED's 150 steps (about one epoch)."""
    return ["train", "--out", str(out), "--quiet", *[part for setting in INTERRUPTED for part in ("--set", setting)]]


def start(out: Path, resume: bool) -> subprocess.Popen:
    command = [sys.executable, "-m", "textvae.cli", *train_arguments(out)]
    return subprocess.Popen(command + (["--resume"] if resume else []), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal


def logged_steps(out: Path) -> int:
    path = out / "metrics.jsonl"
    return sum(1 for line in path.read_text().splitlines() if '"train"' in line) if path.exists() else 0


def interrupt(out: Path, signal_number: int, after_steps: int) -> int:
    """Start (or resume) training, send it a signal once `after_steps` more steps are logged; the step it kept."""
    resume = (out / "checkpoint.pt").exists()
    seen = logged_steps(out) if resume else 0
    process = start(out, resume)
    while logged_steps(out) < seen + after_steps and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, f"training ended before the signal: make it longer\n{process.stderr.read()}"
    process.send_signal(signal_number)
    _, err = process.communicate(timeout=300)
    name = signal.Signals(signal_number).name
    assert process.returncode == 128 + signal_number, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"textvae: interrupted by {name}: stopped after step "), err
    step = checkpoint_step(out)
    assert f"step {step}, kept in {out / 'checkpoint.pt'}; continue with: textvae train --out {out} --resume" in last
    return step


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="needs POSIX signals")
@pytest.mark.slow
def test_sigint_and_sigterm_checkpoint_the_last_step_and_resume_reaches_the_uninterrupted_parameters(tmp_path):
    straight = tmp_path / "straight"
    assert main(train_arguments(straight)) == 0

    run = tmp_path / "run"
    first = interrupt(run, signal.SIGTERM, after_steps=3)
    assert first >= 3
    assert not [line for line in read_metrics(run) if line["split"] == "valid"]  # the signal alone checkpointed it
    second = interrupt(run, signal.SIGINT, after_steps=3)
    assert second >= first + 3
    assert train(resumed_config(run, []), run, resume=True)["steps"] == 150

    expected = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
    for name, weight in torch.load(run / "checkpoint.pt", weights_only=True)["model"].items():
        torch.testing.assert_close(weight, expected[name], rtol=0, atol=0, msg=f"{name} differs after the signals")
    assert [line["step"] for line in read_metrics(run)] == [line["step"] for line in read_metrics(straight)]
    assert not list(run.glob(".*.tmp"))


@pytest.fixture
def sigint_as(request):
    """SIGINT's handler set to request.param for the test (whatever the suite was started with: a background job
    of a script starts with SIGINT ignored), and put back after it."""
    previous = signal.signal(signal.SIGINT, request.param)
    yield request.param
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("sigint_as", [signal.default_int_handler], indirect=True)
def test_the_handler_defers_the_first_signal_and_lets_a_second_ctrl_c_through(capsys, sigint_as):
    with StopRequests() as stops:
        assert signal.getsignal(signal.SIGINT) == stops.handle
        stops.handle(signal.SIGTERM, None)
        assert stops.received == signal.SIGTERM
        assert "SIGTERM received: finishing this step, then checkpointing" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            stops.handle(signal.SIGINT, None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


@pytest.mark.parametrize("sigint_as", [signal.SIG_IGN], indirect=True)
def test_a_signal_ignored_when_training_starts_stays_ignored(sigint_as):
    """`nohup textvae train ... &` from a script starts with SIGINT ignored: training leaves it so (as Python does)
    and still checkpoints on SIGTERM."""
    with StopRequests() as stops:
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == stops.handle
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_training_interrupted_is_a_keyboard_interrupt_with_the_shell_exit_code(tmp_path):
    error = TrainingInterrupted("SIGTERM", 143, 7, tmp_path)
    assert isinstance(error, KeyboardInterrupt) and error.exit_code == 143 and error.step == 7

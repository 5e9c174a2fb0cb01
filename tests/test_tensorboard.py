"""TensorBoard logging: the event files hold metrics.jsonl's numbers, resume continues them, and a missing
package is one line saying how to install it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL

from textvae.cli import main
from textvae.config import load_config
from textvae.training.logging_sinks import scalars
from textvae.config import resumed_config
from textvae.training import train

SETTINGS = [value for value in TINY_MODEL if value != "--set"] + [
    "train.batch_size=64", "train.progress_bar=false", "train.log_every=2", "train.eval_every=4",
    "train.tensorboard=true"]


def logged_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in RUN/tensorboard as tag → [(step, value)], read back the way TensorBoard reads it."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def expected_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl's numbers as tag → [(step, value)], rounded to float32 as event files store them."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for tag, value in scalars(record).items():
            expected.setdefault(tag, []).append((record["step"], float(np.float32(value))))
    return expected


def test_event_files_hold_the_metrics_and_resume_continues_them(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    train(load_config(None, [*SETTINGS, "train.max_steps=8"]), run)
    logged = logged_scalars(run)
    assert logged == expected_scalars(run)
    assert {"train/loss", "train/rec", "train/kl", "train/kl_weight", "train/lr", "train/tokens_per_s",
            "valid/loss", "valid/kl", "valid/mi", "valid/au"} <= set(logged)
    assert [step for step, _ in logged["valid/kl"]] == [4, 8]

    # a run killed after its checkpoint at step 8 had logged step 10 already: resume must hide that event
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(str(run / "tensorboard")) as orphan:
        orphan.add_scalar("train/loss", 12345.0, 10)
    train(resumed_config(run, ["train.max_steps=12"]), run, resume=True)
    logged = logged_scalars(run)
    assert logged == expected_scalars(run)
    assert [step for step, _ in logged["train/loss"]] == [2, 4, 6, 8, 10, 12]
    assert 12345.0 not in [value for _, value in logged["train/loss"]]


def test_scalars_keep_numbers_and_skip_placing_keys_and_flags():
    record = {"step": 4, "epoch": 0, "split": "valid", "loss": 3.5, "au": 2, "pretraining": True}
    assert scalars(record) == {"valid/loss": 3.5, "valid/au": 2.0}


def test_missing_tensorboard_package_is_one_line_before_anything_is_written(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now fails as if not installed
    out = tmp_path / "out"
    assert main(["train", "--tensorboard", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("textvae: error: "), err
    assert "--tensorboard" in err and "pip install tensorboard" in err and "textvae[tensorboard]" in err
    assert not out.exists()
    assert main(["train", "--out", str(out), "--quiet", "--set", "train.tensorboard=true"]) == 2
    assert "pip install tensorboard" in capsys.readouterr().err

"""Run dirs written by older textvae keep working: tests/fixtures/resumable_run/ was written by the code of
8ea70cc (tests/fixtures/make_resumable_run.py), stopped by a SIGTERM after step 6 of 10. Today's code must
load it, evaluate it and resume it to completion with the numbers that code gave (resumable_run_expected.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import untimed_metrics

import textvae
from textvae.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "resumable_run_expected.json").read_text(encoding="utf-8"))
TIMINGS = ("tokens_per_s", "train_seconds")


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A copy of the fixture run dir (the committed files stay as they are)."""
    return Path(shutil.copytree(FIXTURES / "resumable_run", tmp_path / "run"))


def close(found, expected) -> bool:
    """Equal, with floats equal to 1e-5 relative (thread counts may round the last bits differently)."""
    if isinstance(expected, float):
        return found == pytest.approx(expected, rel=1e-5, abs=1e-9)
    if isinstance(expected, list):
        return len(found) == len(expected) and all(close(a, b) for a, b in zip(found, expected))
    if isinstance(expected, dict):
        return found.keys() == expected.keys() and all(close(found[key], expected[key]) for key in expected)
    return found == expected


def test_an_old_run_dir_loads_and_evaluates_to_the_numbers_it_gave(old_run):
    vae = textvae.load(old_run, device="cpu", precision="fp32")
    results = vae.evaluate(**EXPECTED["evaluate"])
    assert results.pop("split") == "valid"
    # added since 8ea70cc: which prior the samples came from (an old run has no fitted one)
    assert results.pop("sampling_prior") == "standard"
    assert close(results, EXPECTED["evaluation"])
    assert vae.sample(3, seed=0) == EXPECTED["samples"]


def test_an_old_run_dir_stopped_mid_run_resumes_to_completion_as_it_did(old_run, capsys):
    assert main(["train", "--out", str(old_run), "--resume", "--quiet"]) == 0
    assert "trained 10 steps in fp32" in capsys.readouterr().out
    expected = [{key: value for key, value in line.items() if key not in TIMINGS} for line in EXPECTED["metrics"]]
    assert close(untimed_metrics(old_run), expected)
    assert textvae.load(old_run, device="cpu").sample(1, seed=0)  # the resumed run's best model loads

"""The installed `textvae` command and the scripts/ wrappers run as separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess:
    """Run a command on this checkout's package (PYTHONPATH), whichever copy of textvae is installed."""
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_console_script_and_script_wrappers(tiny_run, tmp_path):
    sampled = run("textvae", "sample", str(tiny_run), "-n", "2")
    assert sampled.returncode == 0, sampled.stderr
    assert len(sampled.stdout.strip().splitlines()) == 2
    interpolated = run(sys.executable, "scripts/interpolate.py", str(tiny_run), "the dogs ran .", "the clerk wrote .",
                       "--steps", "3")
    assert interpolated.returncode == 0, interpolated.stderr
    assert len(interpolated.stdout.strip().splitlines()) == 3
    evaluated = run(sys.executable, "scripts/evaluate.py", str(tiny_run), "--split", "test")
    assert evaluated.returncode == 0 and "neg_elbo" in evaluated.stdout
    sampled_script = run(sys.executable, "scripts/sample.py", str(tiny_run), "-n", "1", "--seed", "3",
                         "--strategy", "sample")
    assert sampled_script.returncode == 0 and sampled_script.stdout.strip()


def test_bad_input_is_one_line_with_exit_code_2(tmp_path):
    result = run("textvae", "sample", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("textvae: error: run dir not found:")

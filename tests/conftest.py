"""Shared fixtures: tiny models and batches built in memory, and one tiny trained run dir per session."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch

# What train.precision 'auto' means in every test and in the processes tests start: fp32, so that no result
# depends on whether the CPU has bf16 (AVX-512 BF16, AMX), unless the run asks for bf16 itself
# (TEXTVAE_AUTO_PRECISION=bf16 python -m pytest: the README's "both ways"). Tests that compare numbers exactly
# name fp32 themselves, so they hold in both runs.
os.environ.setdefault("TEXTVAE_AUTO_PRECISION", "fp32")
# The torch thread count of every test and the processes tests start: fixed, so a run and its resume in two
# processes multiply with the same threads (train.num_threads 0 otherwise counts the cores busy right now).
# Under pytest-xdist (`-n auto`, the README's command) each of the N workers gets its share of the cores, so the
# workers do not oversubscribe them.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, CORES // WORKERS))
    torch.set_num_threads(max(1, CORES // WORKERS))
os.environ.setdefault("OMP_NUM_THREADS", str(CORES))

from textvae import runtime
from textvae.cli import main
from textvae.data import collate
from textvae.modeling import TextVAE, TextVAEConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

TINY_MODEL = ["--set", "model.embedding_size=16", "--set", "model.encoder_hidden_size=24",
              "--set", "model.decoder_hidden_size=24", "--set", "model.latent_size=4"]


def tiny_config(**overrides) -> TextVAEConfig:
    settings = dict(vocab_size=30, embedding_size=8, encoder_hidden_size=12, decoder_hidden_size=10, latent_size=3)
    settings.update(overrides)
    return TextVAEConfig(**settings)


def tiny_model(seed: int = 0, **overrides) -> TextVAE:
    torch.manual_seed(seed)
    return TextVAE(tiny_config(**overrides)).eval()


def batch_of(sentences: list[list[int]]):
    """A padded batch (bos=1, eos=2, pad=0) of word-id lists."""
    return collate(sentences, list(range(len(sentences))), bos_id=1, eos_id=2, pad_id=0)


def scramble_padding(token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A copy of a padded batch with random word ids where the padding was (there must be some)."""
    scrambled = token_ids.clone()
    padding = torch.arange(scrambled.size(1)).unsqueeze(0) >= lengths.unsqueeze(1)
    assert padding.any()
    scrambled[padding] = torch.randint(4, 30, (int(padding.sum()),))
    return scrambled


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run dir trained for a few steps on the embedded corpus with a tiny model."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["train", "--out", str(out), "--quiet", *TINY_MODEL, "--set", "train.max_steps=12",
                 "--set", "train.eval_every=6", "--set", "train.batch_size=32", "--set", "train.log_every=4"])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A run dir trained with the demo recipe (configs/demo.yaml): about two minutes; slow tests only."""
    out = tmp_path_factory.mktemp("runs") / "demo"
    assert main(["train", "--config", str(REPO / "configs" / "demo.yaml"), "--out", str(out), "--quiet"]) == 0
    return out


def pytest_collection_modifyitems(items) -> None:
    """Under pytest-xdist (--dist loadgroup), every test of the demo run goes to one worker, so the two-minute
    training behind the session fixture runs once, not once per worker; and the slow tests run first, the demo's
    first of all, so the workers do not wait at the end on one worker's long test."""
    for item in items:
        if "demo_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("demo_run"))

    def start_order(item) -> int:
        if "demo_run" in getattr(item, "fixturenames", ()):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=start_order)  # stable: collection order within each kind


def read_metrics(run: Path) -> list[dict]:
    """The records of a run dir's metrics.jsonl, in order."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def untimed_metrics(run: Path) -> list[dict]:
    """metrics.jsonl without its timings (tokens/s and the trainer's clock differ between any two runs)."""
    timings = ("tokens_per_s", "train_seconds")
    return [{key: value for key, value in line.items() if key not in timings} for line in read_metrics(run)]


def pytest_report_header(config) -> str:
    return f"textvae: precision 'auto' means {os.environ['TEXTVAE_AUTO_PRECISION']} in this run (TEXTVAE_AUTO_PRECISION)"


def pytest_configure(config) -> None:
    """A bf16 run of the suite needs a CPU (or GPU) with fast bf16; elsewhere say so, once, instead of failing."""
    if os.environ["TEXTVAE_AUTO_PRECISION"] == "bf16" and not runtime.bf16_is_fast(torch.device("cpu")):
        raise pytest.UsageError("TEXTVAE_AUTO_PRECISION=bf16: this CPU has neither AVX-512 BF16 nor AMX, so bf16 "
                                "would be emulated (very slow); run the suite without it (fp32)")


def requires_fast_bf16():
    """Skip marker for tests of bf16 itself on CPUs that would only emulate it."""
    return pytest.mark.skipif(not runtime.bf16_is_fast(torch.device("cpu")),
                              reason="this CPU has neither AVX-512 BF16 nor AMX: bf16 is emulated here")


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module, with benchmarks/ importable as when it runs as a script."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def no_network(monkeypatch) -> list:
    """Make every name lookup and connection fail at once; returns the list of attempts."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts

"""DDP training (torchrun, gloo on CPU) makes the same updates as one process on the combined batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from textvae import TextVAE, TextVAEConfig

CONFIG = """\
data: {source: null, max_length: 40}
tokenizer: {vocab_size: 400}
model: {embedding_size: 16, encoder_hidden_size: 16, decoder_hidden_size: 16, latent_size: 4,
        embedding_dropout: 0.0, decoder_dropout: 0.0}
train: {batch_size: 11, max_steps: 5, eval_every: 3, num_threads: 1, device: cpu, word_dropout: 0.3,
        kl_schedule: linear, kl_anneal_steps: 4, eval_batch_size: 256, progress_bar: false, log_every: 1,
        precision: fp32}  # exact comparisons: bf16 rounds the processes' halves differently from the whole batch
"""


def run_training(config: Path, out: Path, processes: int, extra: list[str] = ()) -> None:
    """`textvae train` in one process, or under torchrun with `processes` processes."""
    train = ["-m", "textvae.cli", "train", "--config", str(config), "--out", str(out), "--quiet", *extra]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), *train]
    else:
        command = [sys.executable, *train]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is needed")
@pytest.mark.slow
def test_two_process_ddp_equals_one_process_on_the_combined_batches_and_resumes(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    run_training(config, tmp_path / "single", processes=1)
    board = ["--tensorboard"] if has_tensorboard() else []
    run_training(config, tmp_path / "ddp", processes=2, extra=board)
    # the same 5 steps under DDP, interrupted after 3 (the checkpoint at the evaluation) and resumed
    run_training(config, tmp_path / "resumed", processes=2, extra=["--set", "train.max_steps=3"])
    run_training(config, tmp_path / "resumed", processes=2, extra=["--resume", "--set", "train.max_steps=5"])

    single = final_weights(tmp_path / "single")
    for other in ("ddp", "resumed"):
        weights = final_weights(tmp_path / other)
        for name, weight in single.items():
            torch.testing.assert_close(weights[name], weight, rtol=1e-4, atol=1e-5, msg=f"{other}: {name} differs")
    assert torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["state"]["step"] == 5

    # equality is not trivial: 5 Adam steps moved the weights far beyond the tolerance
    torch.manual_seed(0)  # train() seeds torch with train.seed before building the model
    initial = TextVAE(TextVAEConfig.from_pretrained(str(tmp_path / "single"))).state_dict()
    assert max(float((single[name] - initial[name]).abs().max()) for name in single) > 1e-3

    # only rank 0 wrote metrics: one line per step (log_every 1) and per evaluation, as in one process
    ddp_lines = (tmp_path / "ddp" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    single_lines = (tmp_path / "single" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(ddp_lines) == len(single_lines) == 5 + 2
    # and its train lines are the whole batch's, summed over both processes' rows, not rank 0's half
    figures = ("loss", "objective", "rec", "kl", "grad_norm")
    for ddp_line, single_line in zip(map(json.loads, ddp_lines), map(json.loads, single_lines)):
        if single_line["split"] == "train":
            for key in figures:
                assert ddp_line[key] == pytest.approx(single_line[key], rel=1e-4), (single_line["step"], key)
    if board:  # and only rank 0 wrote TensorBoard events: one event file
        assert len(list((tmp_path / "ddp" / "tensorboard").glob("events.out.tfevents.*"))) == 1


def has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True

"""Tests for benchmarks/: each benchmark runs end to end and prints its summary line."""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"tokens_per_s=(\d+) reference_tokens_per_s=(\d+) ratio=(\d+\.\d{2}) plain_tokens_per_s=(\d+) "
                     r"plain_ratio=(\d+\.\d{2}) peak_rss_mb=(\d+) reference_peak_rss_mb=(\d+) precision=fp32 "
                     r"padding_share=(\d\.\d{4})")

TINY_CONFIG = """\
data: {source: null, max_length: 40}
tokenizer: {vocab_size: 500}
model: {embedding_size: 16, encoder_hidden_size: 16, decoder_hidden_size: 16, latent_size: 4}
train: {batch_size: 8, num_threads: 1, device: cpu}
"""


def run_on_tiny_config(tmp_path: Path, script: str, *arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`benchmarks/<script> --config <TINY_CONFIG written to tmp_path> *arguments`, run in tmp_path."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG, encoding="utf-8")
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--config", str(config), *arguments],
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_speed_prints_summary_line(tmp_path: Path) -> None:
    result = run_on_tiny_config(tmp_path, "train_speed.py", "--steps", "3", "--warmup", "1", "--precision", "fp32")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    match = SUMMARY.fullmatch(lines[-1])
    assert match, f"unexpected last line: {lines[-1]!r}"
    tokens, reference, ratio, plain, plain_ratio, rss, reference_rss, padding = match.groups()
    assert int(tokens) > 0 and int(reference) > 0 and int(plain) > 0 and int(rss) > 0 and int(reference_rss) > 0
    assert abs(float(ratio) - int(tokens) / int(reference)) < 0.02 and float(plain_ratio) > 0
    reference_row = next(line for line in lines if line.startswith("reference fp32"))
    assert "padding   0.0%" in reference_row  # the published batching: one length per batch
    faults = re.search(r"(\d+) page faults/step", reference_row)  # a warm-up too short shows here
    assert faults and int(faults.group(1)) >= 0
    assert any(line.startswith("plain loop fp32") for line in lines)


@pytest.mark.slow
def test_train_speed_measures_textvae_and_the_reference_in_ddp_processes(tmp_path: Path) -> None:
    """--processes 2 runs textvae (and, asked, the reference) as torchrun would, and puts their ratios against
    the single-process reference in the summary line."""
    result = run_on_tiny_config(tmp_path, "train_speed.py", "--steps", "3", "--warmup", "1", "--precision", "fp32",
                                "--processes", "2", "--processes-reference")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    tokens = {match.group(1): float(match.group(2)) for match in
              (re.match(r"(.+?)\s+(\d+) target tokens/s", line) for line in lines) if match}
    assert {"textvae fp32 ×2 procs", "reference fp32 ×2 procs", "reference fp32"} <= set(tokens), lines
    summary = dict(item.split("=") for item in lines[-1].split())
    assert abs(float(summary["ratio_fp32_2_processes"])
               - tokens["textvae fp32 ×2 procs"] / tokens["reference fp32"]) < 0.02
    assert abs(float(summary["ratio_reference_fp32_2_processes"])
               - tokens["reference fp32 ×2 procs"] / tokens["reference fp32"]) < 0.02


@pytest.mark.slow
def test_train_speed_times_the_arithmetic_floor_beside_the_reference(tmp_path: Path) -> None:
    """--floor adds the floor's row (LSTMs and output products alone) and its ratio to the reference."""
    result = run_on_tiny_config(tmp_path, "train_speed.py", "--steps", "3", "--warmup", "1", "--precision", "fp32",
                                "--floor")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    tokens = {match.group(1): float(match.group(2)) for match in
              (re.match(r"(.+?)\s+(\d+) target tokens/s", line) for line in lines) if match}
    summary = dict(item.split("=") for item in lines[-1].split())
    assert "floor fp32" in tokens and "floor_ratio_fp32" not in summary, lines
    assert abs(float(summary["floor_ratio"]) - tokens["floor fp32"] / tokens["reference fp32"]) < 0.02


def test_floor_step_runs_both_lstms_backward_and_the_three_products() -> None:
    step_floor = load_benchmark("step_floor")
    c = argparse.Namespace(embedding_size=6, latent_size=2, encoder_hidden_size=5, decoder_hidden_size=4)
    model = step_floor.FloorModel(11, c, torch.float32)
    batch = argparse.Namespace(token_ids=torch.zeros(3, 7, dtype=torch.long))
    step_floor.floor_step(model, torch.device("cpu"), torch.float32)(batch)
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in model.parameters())
    assert model.output_weight.grad.shape == (11, 4)


@pytest.mark.slow
@pytest.mark.parametrize("grouping", ["shape", "name"])
def test_train_profile_breaks_a_step_into_parts_and_lists_operators(tmp_path: Path, grouping: str) -> None:
    result = run_on_tiny_config(tmp_path, "train_profile.py", "--steps", "3", "--warmup", "1", "--precisions", "fp32",
                                "--operators", "5", "--operators-by", grouping)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    shares = [float(match.group(1)) for match in (re.search(r"ms/step\s+([\d.]+)%$", line) for line in lines) if match]
    assert len(shares) == 11 and abs(sum(shares) - 100) < 0.5, lines  # every part, the shares adding up
    assert ("Input Shapes" in result.stdout) == (grouping == "shape")
    assert re.fullmatch(r"fp32_ms_per_step=\d+\.\d", lines[-1])


def load_train_speed():
    return load_benchmark("train_speed")


def test_train_speed_reports_a_precision_failing_at_run_time_as_skipped(monkeypatch) -> None:
    train_speed = load_train_speed()

    def onednn_refuses():
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive\nmore")

    assert train_speed.guarded(onednn_refuses, may_skip=True) == {
        "skipped": "failed at run time: could not create a primitive descriptor for the LSTM forward propagation "
                   "primitive"}
    with pytest.raises(RuntimeError):  # fp32 and the plain loop must not fail quietly
        train_speed.guarded(onednn_refuses, may_skip=False)
    assert train_speed.guarded(lambda: 7, may_skip=True) == {"result": 7}
    # a child process killed inside a kernel (SIGSEGV / abort) is a skip for bf16/fp16, a failure for fp32
    crashed = subprocess.CompletedProcess([], -11, "", "oneDNN: something\nSegmentation fault\n")
    monkeypatch.setattr(train_speed.subprocess, "run", lambda *args, **kwargs: crashed)
    args = argparse.Namespace(config="c.yaml", steps=1, warmup=0, overrides=[])
    for variant in ("fp16", "bf16", "reference-bf16"):
        assert train_speed.run_child(args, variant)["skipped"] == "failed at run time (exit status -11): Segmentation fault"
    for variant in ("fp32", "reference-fp32", "plain"):
        with pytest.raises(SystemExit):
            train_speed.run_child(args, variant)


def test_train_speed_never_runs_fp16_on_a_cpu_unless_asked() -> None:
    train_speed = load_train_speed()
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert train_speed.precisions_to_measure(None, "bf16", cpu) == ["fp32", "bf16"]
    assert train_speed.precisions_to_measure(None, "bf16", gpu) == ["fp32", "bf16", "fp16"]
    assert train_speed.precisions_to_measure("fp16", "bf16", cpu) == ["fp16"]
    assert train_speed.precisions_to_measure("auto", "fp32", cpu) == ["fp32"]


def test_train_speed_reference_batches_hold_one_length_each_and_cover_the_split_once_per_epoch() -> None:
    train_speed = load_train_speed()
    token_ids = [[5] * (1 + n % 4) for n in range(23)]  # lengths 1..4, 5 or 6 sentences each
    special = {"bos_token_id": 1, "eos_token_id": 2}
    batches = train_speed.equal_length_batches(token_ids, 4, special, seed=0)
    epoch = [next(batches) for _ in range(8)]  # ceil(6/4) + 3 * ceil(5/4) + ... = 8 batches per epoch
    assert sorted(i for batch in epoch for i in batch.indices) == list(range(23))
    for batch in epoch:
        assert batch.token_ids.size(0) <= 4 and (batch.lengths == batch.token_ids.size(1)).all()
        assert (batch.token_ids[:, 0] == 1).all() and (batch.token_ids[:, -1] == 2).all()


def test_aggressive_speed_prints_both_rates_and_their_ratio(tmp_path: Path) -> None:
    result = run_on_tiny_config(tmp_path, "aggressive_speed.py", "--steps", "2", "--rounds", "2", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"encoder_steps_per_s=(\d+\.\d\d) baseline_steps_per_s=(\d+\.\d\d) ratio=(\d+\.\d\d)", last)
    assert match, f"unexpected last line: {last!r}"
    fast, slow, ratio = map(float, match.groups())
    assert fast > 0 and slow > 0 and ratio > 0


def test_streaming_memory_reports_peak_memory_per_file_size(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "streaming_memory.py"), "--lines", "3000", "1500", "--steps", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    sizes = [match.group(1) for match in (re.match(r"streaming,\s+([\d,]+) lines", line) for line in lines) if match]
    assert sizes == ["1,500", "3,000"]  # smallest first
    match = re.fullmatch(r"lines=3000 streaming_peak_rss_mb=(\d+)", lines[-1])
    assert match and int(match.group(1)) > 0


MI_NOISE = re.compile(r"sentences=(\d+) latent=(\d+) log_n=(\S+) sqrt_d_over_2n=(\S+) ceiling=(\S+)\n"
                      r"first_draw=(\S+) mean=(\S+) sd=(\S+) min=(\S+) max=(\S+) draws=5")


def test_mi_noise_reports_the_estimates_spread_beside_its_ceiling(tiny_run: Path, tmp_path: Path) -> None:
    sentences = tmp_path / "valid.txt"
    sentences.write_text("".join(f"sentence number {n} is here\n" for n in range(30)), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "mi_noise.py"), str(tiny_run), str(sentences), "--checkpoint",
         "--draws", "5"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    match = MI_NOISE.fullmatch(result.stdout.strip())
    assert match, f"unexpected output: {result.stdout!r}"
    count, latent, log_n, spread, ceiling, first, mean, sd, low, high = (float(value) for value in match.groups())
    assert count == 30 and abs(log_n - math.log(30)) < 1e-4 and abs(ceiling - (log_n - spread)) < 2e-4
    assert low <= first <= high and low <= mean <= high and sd >= 0


DECODE_SUMMARY = re.compile(r"greedy_batched_per_s=(\d+) greedy_single_per_s=(\d+) ratio=(\d+\.\d) "
                            r"top_p_per_s=(\d+) beam5_per_s=(\d+)")


def test_decode_speed_prints_summary_line(tiny_run: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "decode_speed.py"), str(tiny_run), "--count", "12",
         "--max-length", "12", "--device", "cpu"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "one-at-a-time greedy gave the batched sentence for 12/12 codes" in lines
    match = DECODE_SUMMARY.fullmatch(lines[-1])
    assert match, f"unexpected last line: {lines[-1]!r}"
    assert all(float(value) > 0 for value in match.groups())


def test_matmul_speed_prints_rates_for_both_precisions_and_layouts() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "matmul_speed.py"), "--size", "64", "--rows", "16", "--hidden", "8",
         "--vocab", "50"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.fullmatch(r"fp32_gflops=(\d+) bf16_gflops=(\d+\.\d) vocab_major_speedup=(\d+\.\d\d)",
                         result.stdout.strip().splitlines()[-1])
    assert match and float(match.group(3)) > 0


def summary_of(script: str, arguments: list[str], prefixes: tuple[str, ...], lines_each: int,
               last_line: str) -> re.Match:
    """Run `benchmarks/<script>` with `arguments`; check that it succeeded and printed `lines_each` lines starting
    with each of `prefixes`; the match of its last line against the regular expression `last_line`."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *arguments], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    for prefix in prefixes:
        assert sum(line.startswith(prefix) for line in lines) == lines_each, result.stdout
    match = re.fullmatch(last_line, lines[-1])
    assert match, f"unexpected last line: {lines[-1]!r}"
    return match


def test_score_passes_speed_times_every_pass_in_both_dtypes() -> None:
    match = summary_of("score_passes_speed.py", ["--rows", "64", "--vocab", "500", "--repeats", "3"],
                       ("torch.float32", "torch.bfloat16"), 3,
                       r"exp_bf16_over_fp32=(\S+) sum_bf16_over_fp32=(\S+) scale_bf16_over_fp32=(\S+) "
                       r"conversions_ms=(\d+\.\d{3})")
    assert float(match.group(4)) > 0


def test_softmax_kernel_speed_compares_both_passes_in_both_dtypes() -> None:
    from textvae.modeling import cpu_kernels

    if cpu_kernels.softmax_kernels() is None:
        pytest.skip("the C++ kernels could not be built on this machine (no compiler or ninja)")
    match = summary_of("softmax_kernel_speed.py", ["--rows", "40", "--vocab", "300", "--repeats", "3"],
                       ("fp32", "bf16"), 2,
                       r"march=native fp32_forward_speedup=(\S+) fp32_backward_speedup=(\S+) "
                       r"bf16_forward_speedup=(\S+) bf16_backward_speedup=(\S+)")
    assert all(float(value) > 0 for value in match.groups())


def test_transformer_vs_lstm_trains_both_for_the_budget_and_tables_their_own_results(tmp_path: Path) -> None:
    lstm, transformer = tmp_path / "lstm.yaml", tmp_path / "transformer.yaml"
    lstm.write_text(TINY_CONFIG, encoding="utf-8")
    transformer.write_text(TINY_CONFIG.replace(
        "latent_size: 4}", "latent_size: 4, encoder_type: transformer, decoder_type: transformer, attention_heads: 2, "
        "feedforward_size: 32, z_conditioning: memory}"), encoding="utf-8")
    command = [sys.executable, str(ROOT / "benchmarks" / "transformer_vs_lstm.py"), "--models",
               f"lstm={lstm},transformer={transformer}", "--budget-minutes", "0.01", "--iw-samples", "2",
               "--runs-dir", str(tmp_path / "runs"), "--table", str(tmp_path / "table.md"), "--quiet",
               "--set", "train.eval_every=1000", "--set", "train.log_every=2"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.fullmatch(r"seconds=\d+ models=2 lstm_nll=\d+\.\d\d transformer_nll=\d+\.\d\d",
                        result.stdout.strip().splitlines()[-1])
    table = (tmp_path / "table.md").read_text(encoding="utf-8")
    for name, kind in (("lstm", "lstm encoder, lstm decoder"), ("transformer", "transformer encoder, transformer decoder")):
        results = json.loads((tmp_path / "runs" / name / "budget_results.json").read_text())
        assert 0.6 <= results["train_seconds"] < 60  # the 0.6 s budget, then the step that crossed it
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}`"))
        assert kind in row and f"| {results['nll']:.2f} |" in row and f"| {results['ppl']:.2f} |" in row
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already trained, skipped" in again.stderr


TRAIN_MEMORY = re.compile(r"sentences=300 vae_peak_rss_mb=(\d+) lm_peak_rss_mb=(\d+) ratio=(\d+\.\d\d)")


def test_train_memory_trains_both_models_and_prints_their_peaks(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_memory.py"), "--config", str(ROOT / "configs" / "ptb.yaml"),
         "--lm-config", str(ROOT / "configs" / "ptb_lm.yaml"), "--sentences", "300", "--valid-sentences", "40",
         "--test-sentences", "20", "--words", "96", "--steps", "4", "--eval-every", "2",
         "--set", "model.embedding_size=16", "--set", "model.encoder_hidden_size=16",
         "--set", "model.decoder_hidden_size=16", "--set", "model.latent_size=4", "--set", "train.num_threads=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("corpus: 300 train / 40 valid / 20 test sentences") and "vocab 100;" in lines[0]
    for name in ("VAE", "LM "):
        assert any(line.startswith(f"{name} peak RSS") and line.endswith("after 4 steps") for line in lines)
    assert sum(line.strip().startswith("after validation 2") for line in lines) == 2  # one per model
    match = TRAIN_MEMORY.fullmatch(lines[-1])
    assert match, f"unexpected last line: {lines[-1]!r}"
    vae, lm, ratio = int(match.group(1)), int(match.group(2)), float(match.group(3))
    assert vae > 0 and lm > 0 and abs(ratio - vae / lm) < 0.01
    assert list(tmp_path.iterdir()) == []  # the corpus and the runs went to a temporary folder, now removed


def test_train_memory_repeats_a_corpus_to_the_counts_asked(tmp_path: Path) -> None:
    train_memory = load_benchmark("train_memory")
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir(), target.mkdir()
    for split, lines in (("train", "a b\n\nc d e\n"), ("valid", "f\n"), ("test", "g h\n")):
        (source / f"{split}.txt").write_text(lines, encoding="utf-8")
    train_memory.write_repeated_corpus(target, {"train": 5, "valid": 2, "test": 1}, source)
    assert (target / "train.txt").read_text(encoding="utf-8") == "a b\nc d e\na b\nc d e\na b\n"  # blank lines skipped
    assert (target / "valid.txt").read_text(encoding="utf-8") == "f\nf\n"
    assert (target / "test.txt").read_text(encoding="utf-8") == "g h\n"
    train_memory.write_random_corpus(target, {"train": 50}, words=7, seed=3)
    sentences = (target / "train.txt").read_text(encoding="utf-8").splitlines()
    assert len(sentences) == 50 and all(5 <= len(sentence.split()) <= 45 for sentence in sentences)
    assert {word for sentence in sentences for word in sentence.split()} <= {f"w{n}" for n in range(7)}


def test_dropout_speed_times_the_three_masks_in_one_run() -> None:
    match = summary_of("dropout_speed.py", ["--shape", "4", "8", "--repeats", "2", "--rounds", "1"],
                       ("integer ", "uniform ", "torch "), 1,
                       r"dtype=fp32 integer_ms=(\S+) uniform_ms=(\S+) torch_ms=(\S+) "
                       r"speedup_over_uniform=(\S+) speedup_over_torch=(\S+)")
    assert all(float(value) > 0 for value in match.groups())

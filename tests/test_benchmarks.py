"""Tests for benchmarks/: each benchmark runs end to end and prints its summary line."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"tokens_per_s=(\d+) reference_tokens_per_s=(\d+) ratio=(\d+\.\d{2}) peak_rss_mb=(\d+)")

TINY_CONFIG = """\
data: {source: null, max_length: 40}
tokenizer: {vocab_size: 500}
model: {embedding_size: 16, encoder_hidden_size: 16, decoder_hidden_size: 16, latent_size: 4}
train: {batch_size: 8, num_threads: 1, device: cpu}
"""


def test_train_speed_prints_summary_line(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--config", str(config),
         "--steps", "3", "--warmup", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    match = SUMMARY.fullmatch(last)
    assert match, f"unexpected last line: {last!r}"
    tokens, reference, ratio, rss = match.groups()
    assert int(tokens) > 0 and int(reference) > 0 and float(ratio) > 0 and int(rss) > 0


def test_aggressive_speed_prints_both_rates_and_their_ratio(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "aggressive_speed.py"), "--config", str(config),
         "--steps", "2", "--rounds", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
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

"""Peak memory of streamed training as the corpus grows: flat, because the train file is never held whole.

Writes train files of each --lines size (sentences drawn at random from the package's synthetic
corpus, so no outside text), then runs `textvae train` with data.streaming=true for --steps steps on
each, in a child process, and reports the child's peak resident memory (ru_maxrss of that child, from wait4). With
--in-memory it also trains the largest file without streaming, for contrast. Last line:
  lines=N streaming_peak_rss_mb=N
for the largest file. Run from the repo root:
  python benchmarks/streaming_memory.py --lines 200000 2000000 --steps 200
"""

from __future__ import annotations

import argparse
import random
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from textvae.data.synthetic import write_corpus


def write_big_train_file(source: Path, target: Path, lines: int, seed: int = 0) -> None:
    """`lines` sentences drawn with replacement from the synthetic train split, streamed to disk."""
    sentences = source.read_text(encoding="utf-8").splitlines()
    rng = random.Random(seed)
    with open(target, "w", encoding="utf-8") as handle:
        for start in range(0, lines, 10_000):
            handle.write("".join(rng.choice(sentences) + "\n" for _ in range(min(10_000, lines - start))))


def train_child(train_file: Path, valid_file: Path, out: Path, steps: int, streaming: bool) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of a `textvae train` child process."""
    command = [sys.executable, "-m", "textvae.cli", "train", "--quiet", "--out", str(out),
               "--set", f"data.train_file={train_file}", "--set", f"data.valid_file={valid_file}",
               "--set", f"data.streaming={str(streaming).lower()}", "--set", f"train.max_steps={steps}",
               "--set", "train.eval_batch_size=256"]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            sys.exit(f"streaming_memory: training failed:\n{errors.read().decode(errors='replace')[-3000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[200_000, 2_000_000], help="train file sizes")
    parser.add_argument("--steps", type=int, default=200, help="training steps on each file (default 200)")
    parser.add_argument("--in-memory", action="store_true", help="also train the largest file without streaming")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        corpus = write_corpus(scratch / "synthetic")
        sizes = sorted(args.lines)
        results = []
        for lines in sizes:
            train_file = scratch / f"train_{lines}.txt"
            write_big_train_file(corpus / "train.txt", train_file, lines)
            seconds, peak = train_child(train_file, corpus / "valid.txt", scratch / f"run_{lines}", args.steps, True)
            size_mb = train_file.stat().st_size / 2**20
            results.append((lines, peak))
            print(f"streaming, {lines:>9,} lines ({size_mb:5.0f} MB): peak RSS {peak:6.0f} MB, {seconds:5.0f} s "
                  f"for {args.steps} steps", flush=True)
        if args.in_memory:
            seconds, peak = train_child(scratch / f"train_{sizes[-1]}.txt", corpus / "valid.txt", scratch / "in_memory",
                                        args.steps, False)
            print(f"in memory, {sizes[-1]:>9,} lines: peak RSS {peak:6.0f} MB, {seconds:5.0f} s for {args.steps} steps")
    lines, peak = results[-1]
    print(f"lines={lines} streaming_peak_rss_mb={peak:.0f}")


if __name__ == "__main__":
    main()

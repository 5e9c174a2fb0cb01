"""Peak memory (RSS) of training as a user runs it on a 100k-sentence corpus, VAE against LM, phase by phase.

Writes a corpus into a temporary folder: --sentences train, --valid-sentences and --test-sentences
sentences of random words (a --words-word vocabulary, lengths uniform in 5..45 words, seeded), or with
--ptb PATH the lines of PATH/{train,valid,test}.txt repeated to those counts (nothing is copied into the
repo). Then trains the VAE (--config, configs/ptb.yaml: its model and recipe) and the LM (--lm-config,
configs/ptb_lm.yaml) on it, each in its own process, through `textvae.training.train` as `textvae train`
calls it, for --steps steps with a full validation every --eval-every steps. Each child's peak resident
set is ru_maxrss of that child (os.wait4); inside the child it is also read (with the resident set at that
moment) after loading and tokenizing the data, before and after each validation, and at the end, so each
phase's figure is the peak so far, beside what glibc malloc holds in use and what it keeps freed
(mallinfo2). With --glibc-defaults both models are trained again with glibc's own malloc thresholds
(textvae's runtime.keep_freed_memory, which keeps freed blocks for reuse, not applied), for comparison.
The default 9,998 words make the vocabulary 10,002 (PTB's). Run from the repo root:
  OMP_NUM_THREADS=1 python benchmarks/train_memory.py --set train.num_threads=1
Last line: sentences=N vae_peak_rss_mb=N lm_peak_rss_mb=N ratio=R [glibc_vae_peak_rss_mb=N glibc_lm_peak_rss_mb=N]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's textvae, not another install

SPLITS = ("train", "valid", "test")


def rss_mb() -> tuple[float, float]:
    """(peak so far, now) resident set of this process, in MB."""
    now = 0.0
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, now


class MallocInfo(ctypes.Structure):
    """glibc's struct mallinfo2 (glibc 2.33 and later)."""
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_mb() -> tuple[float, float] | None:
    """(in use, free but kept) by glibc malloc in all arenas, in MB; None where mallinfo2 is missing."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = MallocInfo
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def write_random_corpus(folder: Path, counts: dict[str, int], words: int, seed: int) -> None:
    """Sentences of random words w0..w{words-1}, 5..45 words each, one per line."""
    rng = random.Random(seed)
    vocabulary = [f"w{index}" for index in range(words)]
    for split, count in counts.items():
        with open(folder / f"{split}.txt", "w", encoding="utf-8") as handle:
            for start in range(0, count, 10_000):
                handle.write("".join(" ".join(rng.choices(vocabulary, k=rng.randint(5, 45))) + "\n"
                                     for _ in range(min(10_000, count - start))))


def write_repeated_corpus(folder: Path, counts: dict[str, int], source: Path) -> None:
    """Each split's lines of `source` (a folder with train/valid/test.txt), repeated to its count."""
    for split, count in counts.items():
        lines = [line for line in (source / f"{split}.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
        with open(folder / f"{split}.txt", "w", encoding="utf-8") as handle:
            handle.write("".join(lines[index % len(lines)] + "\n" for index in range(count)))


def measure(args: argparse.Namespace) -> dict:
    """Train one model in this process; the readings taken along the way."""
    from textvae.evaluation import likelihood as evaluation
    from textvae.training import trainer as training
    from textvae.config import load_config

    if args.child.endswith("-glibc"):  # both callers look it up at call time
        training.keep_freed_memory = evaluation.keep_freed_memory = lambda: False

    config = load_config(args.config, args.overrides)
    config.train.progress_bar = False  # as --quiet
    readings, report = [], {"model": args.child}

    def read(phase: str) -> None:
        peak, now = rss_mb()
        readings.append({"phase": phase, "peak_mb": round(peak), "rss_mb": round(now), "s": round(time.perf_counter() - start, 1)})
        heap = heap_mb()
        if heap is not None:
            readings[-1] |= {"heap_used_mb": round(heap[0]), "heap_free_mb": round(heap[1])}

    load_splits, evaluate_split = training.load_splits, training.evaluate_split

    def loading(*call_args, **kwargs):
        tokenizer, splits = load_splits(*call_args, **kwargs)
        report["vocab"] = len(tokenizer)
        report["sentences"] = {name: len(split) for name, split in splits.items()}
        read("data loaded")
        return tokenizer, splits

    def validating(*call_args, **kwargs):
        count = sum(reading["phase"].startswith("after validation") for reading in readings) + 1
        read(f"before validation {count}")
        results = evaluate_split(*call_args, **kwargs)
        read(f"after validation {count}")
        return results

    training.load_splits, training.evaluate_split = loading, validating  # the Trainer looks both up at call time
    start = time.perf_counter()
    read("start")
    summary = training.train(config, args.out)
    read("end")
    report |= {"readings": readings, "steps": summary["steps"]}
    return report


def run_child(args: argparse.Namespace, child: str, config: str, corpus: Path, scratch: Path) -> dict:
    """One model trained in a child process: its report, with ru_maxrss from wait4 as `peak_mb`."""
    overrides = [f"data.source={corpus}", f"train.max_steps={args.steps}", f"train.eval_every={args.eval_every}",
                 *args.overrides]
    command = [sys.executable, __file__, "--child", child, "--config", config, "--out", str(scratch / f"run_{child}")]
    command += [item for override in overrides for item in ("--set", override)]
    with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=output, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own resource usage
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            sys.exit(f"train_memory: the {child} run failed:\n{errors.read().decode(errors='replace')[-3000:]}")
        output.seek(0)
        report = json.loads(output.read().decode().strip().splitlines()[-1])
    return report | {"peak_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ptb.yaml", help="the VAE's recipe (default configs/ptb.yaml)")
    parser.add_argument("--lm-config", default="configs/ptb_lm.yaml", help="the LM's (default configs/ptb_lm.yaml)")
    parser.add_argument("--sentences", type=int, default=100_000, help="train sentences (default 100000)")
    parser.add_argument("--valid-sentences", type=int, default=10_000, help="validation sentences (default 10000)")
    parser.add_argument("--test-sentences", type=int, default=10_000, help="test sentences (default 10000)")
    parser.add_argument("--words", type=int, default=9998, help="random words' vocabulary (default 9998: 10,002 "
                        "with the 4 special tokens, PTB's)")
    parser.add_argument("--seed", type=int, default=0, help="the random corpus's seed")
    parser.add_argument("--ptb", type=Path, help="a folder with PTB's train/valid/test.txt: its lines, repeated, "
                        "instead of random words")
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--eval-every", type=int, default=150, help="steps between validations (default 150)")
    parser.add_argument("--glibc-defaults", action="store_true", help="also train both models with glibc's own "
                        "malloc thresholds (textvae's keep_freed_memory off)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override for both models (after data.source, train.max_steps, train.eval_every)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return

    counts = {"train": args.sentences, "valid": args.valid_sentences, "test": args.test_sentences}
    with tempfile.TemporaryDirectory(prefix="train_memory_") as scratch:
        scratch = Path(scratch)
        corpus = scratch / "corpus"
        corpus.mkdir()
        if args.ptb:
            write_repeated_corpus(corpus, counts, args.ptb)
            what = f"PTB's lines from {args.ptb} repeated"
        else:
            write_random_corpus(corpus, counts, args.words, args.seed)
            what = f"random words from {args.words:,}, 5-45 words a sentence, seed {args.seed}"
        children = [("vae", args.config), ("lm", args.lm_config)]
        if args.glibc_defaults:
            children += [("vae-glibc", args.config), ("lm-glibc", args.lm_config)]
        rows = {child: run_child(args, child, config, corpus, scratch) for child, config in children}
    sizes = rows["vae"]["sentences"]
    print(f"corpus: {sizes['train']:,} train / {sizes['valid']:,} valid / {sizes.get('test', 0):,} test sentences "
          f"({what}), vocab {rows['vae']['vocab']:,}; {args.steps} steps, validation every {args.eval_every}; "
          f"VAE {args.config}, LM {args.lm_config}, each in its own process; overrides: {' '.join(args.overrides) or 'none'}")
    names = {"vae": "VAE", "lm": "LM", "vae-glibc": "VAE, glibc's malloc thresholds",
             "lm-glibc": "LM, glibc's malloc thresholds"}
    for child, row in rows.items():
        name = names[child]
        print(f"{name:3} peak RSS {row['peak_mb']:6.0f} MB after {row['steps']} steps")
        for reading in row["readings"]:
            heap = (f"; malloc: {reading['heap_used_mb']:5d} in use, {reading['heap_free_mb']:5d} freed and kept"
                    if "heap_used_mb" in reading else "")
            print(f"    {reading['phase']:21} {reading['s']:6.0f} s  peak so far {reading['peak_mb']:5d} MB, "
                  f"now {reading['rss_mb']:5d} MB{heap}")
    vae, lm = rows["vae"]["peak_mb"], rows["lm"]["peak_mb"]
    glibc = (f" glibc_vae_peak_rss_mb={rows['vae-glibc']['peak_mb']:.0f} glibc_lm_peak_rss_mb={rows['lm-glibc']['peak_mb']:.0f}"
             if args.glibc_defaults else "")
    print(f"sentences={sizes['train']} vae_peak_rss_mb={vae:.0f} lm_peak_rss_mb={lm:.0f} ratio={vae / lm:.2f}{glibc}")


if __name__ == "__main__":
    main()

"""Reports: the evaluations a run dir keeps in results.json (one per split or file evaluated), read from any
textvae version, and the Markdown table that compares runs (`textvae compare`)."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic_files import replace_atomically
from ..data import SPLIT_ALIASES, SPLITS, split_name
from ..errors import TextVAEError


COMPARE_ROWS = (("NLL", "nll"), ("-ELBO", "neg_elbo"), ("rec", "rec"), ("KL", "kl"), ("MI", "mi"), ("AU", "au"),
                ("PPL per word", "ppl"), ("PPL per token", "ppl_per_token"), ("BLEU", "bleu"),
                ("BLEU tokenize", "bleu_tokenize"), ("BLEU decoding", "bleu_decoding"),
                ("IW samples", "iw_samples"), ("sentences", "sentences"))
RESULTS = "results.json"


def read_old_results(results: dict) -> dict:
    """results.json as textvae writes it now, from any version: one written before per-word PPL (no `words`
    key) has its per-token PPL under `ppl`, so it moves to `ppl_per_token` and the per-word PPL is unknown;
    one written before `bleu_tokenize` scored BLEU with sacrebleu's 13a tokenizer, and one written before
    `bleu_decoding` from greedy reconstructions."""
    results = dict(results)
    if "words" not in results and "ppl" in results:
        results["ppl_per_token"], results["ppl"] = results["ppl"], None
    if ("bleu" in results or "self_bleu" in results) and "bleu_tokenize" not in results:
        results["bleu_tokenize"] = "13a"
    if "bleu" in results and "bleu_decoding" not in results:
        results["bleu_decoding"] = "greedy"
    return results


def read_results(run_dir: Path) -> dict[str, dict]:
    """The evaluations saved in a run dir's results.json, keyed by what was evaluated: a split's name, or a
    file's absolute path. A results.json of one evaluation (as textvae wrote it before) reads as one entry."""
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise TextVAEError(f"{path} is not valid JSON; delete it and run textvae evaluate {run_dir} again") from None
    if not isinstance(loaded, dict):
        raise TextVAEError(f"{path} does not hold evaluation results; delete it and run textvae evaluate again")
    if loaded and all(isinstance(value, dict) for value in loaded.values()):
        return loaded
    return {str(loaded.get("split", "test")): loaded}


def save_results(run_dir: Path, results: dict) -> Path:
    """Add one evaluation to the run dir's results.json under what was evaluated (results['split']),
    keeping the others: `--split test` and `--file other.txt` never overwrite each other."""
    saved = read_results(run_dir)
    saved[str(results["split"])] = results
    target = Path(run_dir) / RESULTS
    replace_atomically(lambda tmp: tmp.write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8"), target)
    return target


def unique_labels(paths: list[str | Path]) -> list[str]:
    """The shortest trailing part of each path that tells it from the others: runs/a, runs/b -> a, b;
    x/run, y/run -> x/run, y/run. Equal paths keep equal labels."""
    parts = [Path(path).resolve().parts for path in paths]
    labels = []
    for own in parts:
        others = {other for other in parts if other != own}
        depth = 1
        while depth < len(own) and any(other[-depth:] == own[-depth:] for other in others):
            depth += 1
        labels.append("/".join(own[-depth:]))
    return labels


def evaluated_on(key: str) -> str:
    """How a results key reads in a table: a split's name as it is, a file's path relative to here if it can."""
    if not key.startswith("/"):
        return key
    try:
        return str(Path(key).relative_to(Path.cwd()))
    except ValueError:
        return key


def compare_table(columns: dict[str, dict] | list[tuple[str, dict]]) -> str:
    """A Markdown table with one column per (label, results) and the rows of the papers' tables (NLL, KL, MI, AU,
    PPL per word and per token, BLEU with the tokenizer it was scored with), under a row saying what each column
    was evaluated on (its split or file); results.json of older versions are read as `read_old_results` says."""
    pairs = [(label, read_old_results(results))
             for label, results in (columns.items() if isinstance(columns, dict) else columns)]
    lines = ["| metric | " + " | ".join(label for label, _ in pairs) + " |", "| --- |" + " ---: |" * len(pairs)]
    if any("split" in results for _, results in pairs):
        lines.append("| evaluated on | " + " | ".join(evaluated_on(str(results.get("split", "–")))
                                                      for _, results in pairs) + " |")
    for label, key in COMPARE_ROWS:
        cells = []
        for _, results in pairs:
            value = results.get(key)
            cells.append("–" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_runs(run_dirs: list[str | Path], on: str | None = None) -> str:
    """The compare table of several run dirs: one column per run and evaluation (all of them, or only those
    of the split or file `on`), each headed by the shortest part of the run's path that is unique."""
    columns = []
    for run_dir, label in zip(run_dirs, unique_labels(run_dirs)):
        saved = read_results(Path(run_dir))
        if not saved:
            raise TextVAEError(f"{run_dir} has no results.json; run: textvae evaluate {run_dir}")
        if on is not None:
            wanted = results_key(on)
            if wanted not in saved:
                known = ", ".join(evaluated_on(key) for key in saved)
                raise TextVAEError(f"{run_dir} has no evaluation on {on} (it has: {known}); run: textvae evaluate "
                                   f"{run_dir} {'--file' if wanted.startswith('/') else '--split'} {on}")
            saved = {wanted: saved[wanted]}
        columns.extend((label, results) for results in saved.values())
    return compare_table(columns)


def results_key(split_or_file: str) -> str:
    """The results.json key of a split name (aliases such as dev -> valid) or of a text file (its absolute path)."""
    if split_or_file in SPLITS or split_or_file in SPLIT_ALIASES:
        return split_name(split_or_file)
    return str(Path(split_or_file).resolve())

"""The PTB table's committed row records: one small JSON file per evaluated row, holding what the table and its
plots need (training facts, test results, training curves) and no weights, so that a row trained in one
session stays in the table after its run dir (gitignored: 140 MB of weights and checkpoint a row) is gone.

A record is written from a run dir once the row's test evaluation is done (`record_from_run`); rows whose run
dirs were lost before records existed can be recovered from a table the script wrote (`records_from_table`):
its printed numbers, with no curves.
"""

from __future__ import annotations

import json
import platform
import re
import statistics
from datetime import date
from pathlib import Path

import torch

from textvae.atomic_files import replace_atomically
from textvae.training.checkpoint import METRICS

# curve name: (split of metrics.jsonl, field)
CURVE_SOURCES = {"kl": ("train", "kl"), "mi": ("valid", "mi"), "au": ("valid", "au"), "nll": ("valid", "loss")}


def read_metrics(run_dir: Path) -> list[dict]:
    """The lines of a run's metrics.jsonl ([] when it has none)."""
    path = run_dir / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_speed(run_dir: Path) -> float | None:
    """Median target tokens/s over the logged training windows (evaluation time excluded)."""
    speeds = [line["tokens_per_s"] for line in read_metrics(run_dir) if line["split"] == "train"]
    return statistics.median(speeds) if speeds else None


def curves(run_dir: Path) -> dict[str, list[list[float]]]:
    """Each curve of CURVE_SOURCES as [step, value] points from the run's metrics.jsonl."""
    lines = read_metrics(run_dir)
    return {name: [[line["step"], round(line[field], 4)] for line in lines if line["split"] == split and field in line]
            for name, (split, field) in CURVE_SOURCES.items()}


def record_from_run(run_dir: Path, trained: dict, results: dict) -> dict:
    """A row's record: its training facts (ptb_table_train.json), test results, speed and curves."""
    return {"trained": trained, "results": results, "tokens_per_s": training_speed(run_dir),
            "curves": curves(run_dir), "recorded": date.today().isoformat()}


def write_json(path: Path, value: dict) -> None:
    """Write `value` as JSON, atomically: a killed process leaves the old file or the new one, never half."""
    text = json.dumps(value, indent=1, ensure_ascii=False) + "\n"
    replace_atomically(lambda tmp: tmp.write_text(text, encoding="utf-8"), path)


def save_record(records_dir: Path, name: str, record: dict) -> None:
    """Write RECORDS_DIR/<name>.json."""
    records_dir.mkdir(parents=True, exist_ok=True)
    write_json(records_dir / f"{name}.json", record)


def load_records(records_dir: Path, names) -> dict[str, dict]:
    """The records of `names` that exist, in the order of `names`."""
    paths = {name: records_dir / f"{name}.json" for name in names}
    return {name: json.loads(path.read_text(encoding="utf-8")) for name, path in paths.items() if path.is_file()}


def records_from_table(text: str, columns, names) -> dict[str, dict]:
    """Records of the measured rows (those labelled (`name`) for a name in `names`) of a Markdown table this script
    wrote: its printed numbers and header facts, marked as recovered, with no curves."""
    header = _search(r"^(?:Date|Written) (\S+);.*trained on: (.*)\.$", text)  # "Date" before 2026-11-29
    split = _search(r"^Test split: (\d+) sentences, (\d+) predicted tokens", text)
    k = int(_search(r"importance-weighted with k = (\d+)", text)[0])
    command = _search(r"^```\n(.+)\n```$", text)[0]
    table_header = next(line for line in text.splitlines() if line.startswith("| row |"))
    marks_bleu = "scored by sacrebleu on the tokenized text" in text  # older tables: all BLEU from 13a, unmarked
    labels = [cell.strip() for cell in table_header.strip("|").split("|")]
    records = {}
    for line in text.splitlines():
        match = re.match(r"^\| .*\(`(\w+)`\) \|", line)
        if not match or match.group(1) not in names:
            continue
        name = match.group(1)
        cells = dict(zip(labels, (cell.strip() for cell in line.strip("|").split("|"))))
        results = {key: _number(cells[label]) for label, key, _ in columns}
        results.update(sentences=int(split[0]), tokens=int(split[1]), split="test", iw_samples_asked=k)
        if results.get("bleu") is not None and marks_bleu and not cells.get("BLEU", "").endswith("*"):
            results["bleu_tokenize"] = "none"  # unmarked in a table that marks 13a BLEU: scored with tokenize="none"
        origin = re.search(rf"^- `{name}`: .*; training finished by `(.+)`$", text, re.MULTILINE)
        trained = {"seconds": _seconds(cells["train time"]), "device": header[1],
                   "command": origin.group(1) if origin else None}
        recipe = re.search(rf"^- `{name}`: .*?: `([^`]+)` with `([^`]*)`; trained on", text, re.MULTILINE)
        if recipe:  # tables written since the recipe changed (2026-12-02) name each row's recipe and overrides
            trained.update(recipe=recipe.group(1), overrides=recipe.group(2).split())
        records[name] = {"trained": trained, "results": results, "tokens_per_s": _number(cells["tokens/s"]),
                         "curves": {}, "recorded": header[0],
                         "recovered_from": f"the table written on {header[0]} by `{command}`"}
    return records


def _search(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise ValueError(f"not a table written by benchmarks/ptb_table.py: no line matches {pattern!r}")
    return match.groups()


def _number(cell: str) -> float | int | None:
    cell = cell.rstrip("*")  # the table's mark on a BLEU scored with sacrebleu's 13a tokenizer
    if cell == "–":
        return None
    return int(cell) if cell.lstrip("-").isdigit() else float(cell)


def _seconds(cell: str) -> int:
    """Seconds from a duration as the table prints it ('2h 43m' or '7m 05s')."""
    hours = re.fullmatch(r"(\d+)h (\d+)m", cell)
    if hours:
        return int(hours[1]) * 3600 + int(hours[2]) * 60
    minutes = re.fullmatch(r"(\d+)m (\d+)s", cell)
    if minutes is None:
        raise ValueError(f"not a train time this script prints: {cell!r}")
    return int(minutes[1]) * 60 + int(minutes[2])


def provenance(command: str, devices: list[str]) -> list[str]:
    """The lines every benchmark table opens with after its title: the command that wrote it, as a code block,
    then the date, the torch and Python versions and the devices its rows trained on."""
    return ["```", command, "```", "",
            f"Written {date.today().isoformat()}; torch {torch.__version__}, Python {platform.python_version()}; "
            f"trained on: {', '.join(devices)}."]

"""benchmarks/ptb_table.py on a tiny fake corpus: two rows train a few steps, the Markdown table's numbers are
the runs' own test results, finished rows are skipped and unfinished ones resume."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import textvae
from conftest import load_benchmark, read_metrics

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the a cat dog bird sat ran flew on under mat tree big small red blue and saw it".split()


def load_script():
    return load_benchmark("ptb_table")


def write_corpus(folder: Path) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for name, count in (("train", 120), ("valid", 24), ("test", 20)):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(count)]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """Train two rows (LM and free bits) 3 steps each, then stop; the table and the run dirs."""
    tmp = tmp_path_factory.mktemp("ptb_table")
    corpus = write_corpus(tmp / "corpus")
    config = tmp / "tiny.yaml"
    config.write_text(f"""\
data: {{source: {corpus}, max_length: 20}}
tokenizer: {{vocab_size: 100}}
model: {{embedding_size: 8, encoder_hidden_size: 8, decoder_hidden_size: 8, latent_size: 4}}
train: {{batch_size: 16, eval_batch_size: 32, log_every: 1, num_threads: 1}}
""", encoding="utf-8")
    script = load_script()
    common = ["--config", str(config), "--runs-dir", str(tmp / "runs"), "--table", str(tmp / "out" / "table.md"),
              "--records", str(tmp / "records"), "--iw-samples", "3", "--device", "cpu", "--quiet"]
    assert script.main(["--rows", "lm,free_bits", "--max-steps", "3", *common]) == 0
    return script, tmp, common


def with_option(options: list[str], name: str, value) -> list[str]:
    """`options` with the value of `name` replaced."""
    changed = [*options]
    changed[changed.index(name) + 1] = str(value)
    return changed


def status_lines(script, options: list[str], capsys) -> dict[str, str]:
    """--status's line for each row, keyed by row name (output printed before the call is dropped)."""
    capsys.readouterr()
    assert script.main([*options, "--status"]) == 0
    return {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}


def markdown_row(text: str, start: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(start))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_numbers_come_from_the_runs_results(table_run):
    script, tmp, _ = table_run
    text = (tmp / "out" / "table.md").read_text(encoding="utf-8")
    assert "python benchmarks/ptb_table.py --rows lm,free_bits --max-steps 3" in text
    header = markdown_row(text, "| row |")
    assert header == ["row", "recipe", "NLL", "−ELBO", "KL", "MI", "AU", "PPL", "BLEU", "train time", "tokens/s"]
    for name, label in (("lm", "LSTM-LM (`lm`)"), ("free_bits", "free bits")):
        results = json.loads((tmp / "runs" / name / "ptb_table_results.json").read_text())
        assert results["iw_samples_asked"] == 3 and results["split"] == "test" and results["sentences"] == 20
        cells = dict(zip(header, markdown_row(text, f"| {label}")))
        assert cells["NLL"] == f"{results['nll']:.2f}" and cells["PPL"] == f"{results['ppl']:.2f}"
        assert cells["−ELBO"] == f"{results['neg_elbo']:.2f}" and cells["KL"] == f"{results['kl']:.2f}"
        metrics = read_metrics(tmp / "runs" / name)
        speeds = sorted(line["tokens_per_s"] for line in metrics if line["split"] == "train")
        assert len(speeds) == 3 and cells["tokens/s"] == str(int(speeds[1]))  # the median of 3
        if name == "lm":
            assert cells["MI"] == cells["AU"] == cells["BLEU"] == "–"
        else:
            assert cells["MI"] == f"{results['mi']:.2f}" and cells["AU"] == str(results["au"])
            assert cells["BLEU"] == f"{results['bleu']:.2f}"
    published = markdown_row(text, "| LSTM-LM (published)")
    assert published[1] == "papers' code" and published[2] == "101.04" and published[7] == "100.47"
    assert "| AE pretraining + free bits (published) | papers' code | – | – | 6.54 | 5.31 | 32 | 96.86 |" in text
    measured = [line for line in text.splitlines() if line.startswith("| ") and "`)" in line]
    assert len(measured) == 2  # only the rows that were run
    pending = next(line for line in text.splitlines() if line.startswith("Not yet trained"))
    assert "`bowman`" in pending and "`textvae`" in pending and "`lm`" not in pending and "`free_bits`" not in pending
    command = "python benchmarks/ptb_table.py --rows lm,free_bits --max-steps 3"
    assert f"- `free_bits`: free bits λ = 0.25 (Kingma et al. 2016): `{tmp / 'tiny.yaml'}` with " \
           f"`train.free_bits=0.25`; trained on cpu; training finished by `{command}" in text
    assert "Target (PPL below the LM baseline's" in text


def test_plots_are_written_or_skipped_with_a_message(table_run, capsys):
    script, tmp, _ = table_run
    pngs = sorted(path.name for path in (tmp / "out").glob("*.png"))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert pngs == []
        script.plot_curves({"lm": {}}, script.parse_args(["--table", str(tmp / "out" / "table.md"),
                                                          "--runs-dir", str(tmp / "runs")]))
        assert "matplotlib is not installed" in capsys.readouterr().out
    else:
        assert pngs == ["table_au.png", "table_kl.png", "table_mi.png", "table_nll.png"]


def test_finished_rows_are_skipped_and_unfinished_ones_resume(table_run):
    script, tmp, common = table_run
    runs = tmp / "runs"
    lm_checkpoint = (runs / "lm" / "checkpoint.pt").stat().st_mtime_ns
    (runs / "free_bits" / "ptb_table_train.json").unlink()  # as if that row had been stopped part-way
    first_lines = (runs / "free_bits" / "metrics.jsonl").read_text().splitlines()
    first_seconds = torch.load(runs / "free_bits" / "checkpoint.pt", weights_only=True)["state"]["train_seconds"]
    assert script.main(["--rows", "lm,free_bits", "--max-steps", "5", *common]) == 0
    assert (runs / "lm" / "checkpoint.pt").stat().st_mtime_ns == lm_checkpoint  # finished: not trained again
    trained = json.loads((runs / "free_bits" / "ptb_table_train.json").read_text())
    assert trained["steps"] == 5  # resumed from step 3, not restarted
    assert trained["seconds"] > first_seconds > 0  # the trainer's clock, carried across the resume
    steps = [json.loads(line)["step"] for line in (runs / "free_bits" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == [1, 2, 3, 4, 5]
    assert (runs / "free_bits" / "metrics.jsonl").read_text().splitlines()[: len(first_lines)] == first_lines
    results = json.loads((runs / "free_bits" / "ptb_table_results.json").read_text())
    assert results["trained_steps"] == 5  # the resumed model was evaluated again
    text = (tmp / "out" / "table.md").read_text(encoding="utf-8")
    assert f"| {results['nll']:.2f} |" in next(line for line in text.splitlines() if "(`free_bits`)" in line)


def test_status_tells_where_each_row_stands(table_run, tmp_path, capsys):
    script, tmp, common = table_run
    runs = tmp_path / "runs"
    shutil.copytree(tmp / "runs", runs)
    shutil.copytree(runs / "free_bits", runs / "cyclical")  # a row stopped part-way through training
    for name in ("ptb_table_train.json", "ptb_table_results.json"):
        (runs / "cyclical" / name).unlink()
    checkpoint = torch.load(runs / "cyclical" / "checkpoint.pt", weights_only=True)
    checkpoint["state"].update(epoch=2, train_seconds=600.0)  # two epochs of 5 minutes each
    for record in checkpoint["state"]["history"]:
        record.pop("train_seconds", None)  # validations that do not tell the last epoch's pace
    torch.save(checkpoint, runs / "cyclical" / "checkpoint.pt")
    shutil.copytree(runs / "cyclical", runs / "aggressive")  # its first epoch took 8 minutes, its second 2
    checkpoint["state"]["history"] = [{"step": 10, "epoch": 1, "split": "valid", "train_seconds": 480.0},
                                      {"step": 20, "epoch": 2, "split": "valid", "train_seconds": 600.0}]
    torch.save(checkpoint, runs / "aggressive" / "checkpoint.pt")
    shutil.copytree(runs / "free_bits", runs / "bowman")  # trained, its test evaluation stopped at a quarter
    (runs / "bowman" / "ptb_table_results.json").unlink()
    done = np.array([True] * 5 + [False] * 15)
    np.savez(runs / "bowman" / ".textvae-scores-0123456789abcdef.npz", key=np.array("k"), done=done)
    options = with_option(common, "--runs-dir", runs)
    lines = status_lines(script, options, capsys)
    assert set(lines) == set(script.ROWS)
    results = json.loads((runs / "lm" / "ptb_table_results.json").read_text())
    assert f"evaluated with k = 3: NLL {results['nll']:.2f}, PPL {results['ppl']:.2f}" in lines["lm"]
    assert "test evaluation 25% of the sentences scored; rerun to finish it" in lines["bowman"]
    last = [json.loads(line) for line in (runs / "cyclical" / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["split"] == "valid"][-1]
    assert f"cyclical: training, epoch {last['epoch']} of " in lines["cyclical"]
    max_epochs = script.resumed_config(runs / "cyclical", []).train.max_epochs
    assert lines["cyclical"].endswith(
        f"; trained 10m 00s, at most {script.duration((max_epochs - 2) * 300)} to go at this pace"
        "; stopped: rerun to resume it")
    assert f"validation loss {last['loss']:.2f}, KL {last['kl']:.2f}" in lines["cyclical"]
    assert lines["aggressive"].endswith(
        f"; trained 10m 00s, at most {script.duration((max_epochs - 2) * 120)} to go at this pace"
        "; stopped: rerun to resume it")
    assert not (runs / "cyclical" / "ptb_table_train.json").exists()  # --status trains nothing


@pytest.mark.skipif(importlib.util.find_spec("fcntl") is None, reason="no advisory file locks on this platform")
def test_a_row_another_process_is_evaluating_is_left_out(table_run, tmp_path, capsys):
    import fcntl

    script, tmp, common = table_run
    runs = tmp_path / "runs"
    shutil.copytree(tmp / "runs", runs)
    (runs / "free_bits" / "ptb_table_results.json").unlink()  # trained, not evaluated yet
    options = with_option(common, "--runs-dir", runs)
    options = with_option(options, "--records", tmp_path / "records") + ["--rows", "lm"]  # lm: trained, skipped
    with open(runs / "free_bits" / script.EVALUATING, "a") as held:  # as a row process evaluating it would
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status = status_lines(script, options, capsys)
        assert status["free_bits"].endswith("; another process is evaluating it")
        assert script.main(options) == 0
        assert not (runs / "free_bits" / "ptb_table_results.json").exists()  # not scored a second time
        text = (tmp / "out" / "table.md").read_text(encoding="utf-8")
        assert "(`free_bits`)" not in text and "(`lm`)" in text
        assert "another process is evaluating them, so not in the table yet: `free_bits`." in text
        assert "`free_bits`" not in next(line for line in text.splitlines() if line.startswith("Not yet trained"))
    assert script.main(options) == 0  # the lock is gone: this run evaluates the row itself
    assert (runs / "free_bits" / "ptb_table_results.json").is_file()
    assert "(`free_bits`)" in (tmp / "out" / "table.md").read_text(encoding="utf-8")


def test_a_queue_records_each_row_before_it_trains_the_next(table_run, tmp_path, monkeypatch):
    script, tmp, common = table_run
    runs, records = tmp_path / "runs", tmp_path / "records"
    shutil.copytree(tmp / "runs", runs)
    (runs / "lm" / "ptb_table_results.json").unlink()  # trained, not evaluated yet
    options = with_option(with_option(common, "--runs-dir", runs), "--records", records)
    train_row, recorded_at_start = script.train_row, {}

    def spy(name, args):  # what is recorded when each row's training starts
        recorded_at_start[name] = sorted(path.stem for path in records.glob("*.json"))
        return train_row(name, args)

    monkeypatch.setattr(script, "train_row", spy)
    assert script.main([*options, "--rows", "lm,free_bits"]) == 0
    assert recorded_at_start == {"lm": [], "free_bits": ["lm"]}  # lm scored and kept before free_bits' turn
    assert (runs / "lm" / "ptb_table_results.json").is_file() and (records / "free_bits.json").is_file()


@pytest.mark.skipif(importlib.util.find_spec("fcntl") is None, reason="no advisory file locks on this platform")
def test_a_queue_skips_a_row_another_process_is_training(table_run, tmp_path, capsys):
    import fcntl

    script, tmp, common = table_run
    runs, records, table = tmp_path / "runs", tmp_path / "records", tmp_path / "table.md"
    options = with_option(with_option(common, "--runs-dir", runs), "--records", records)
    options = with_option(options, "--table", table)
    (runs / "bowman").mkdir(parents=True)
    with open(runs / "bowman" / script.TRAINING, "a") as held:  # as another queue training bowman would
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert script.main([*options, "--rows", "bowman,cyclical", "--max-steps", "3"]) == 0
        assert not (runs / "bowman" / script.CHECKPOINT).exists()  # left to the holder: not trained a second time
        assert (records / "cyclical.json").is_file()  # the queue went on to its next row, and recorded it
        assert "`bowman`" in next(line for line in table.read_text(encoding="utf-8").splitlines()
                                  if line.startswith("Not yet trained"))
        status = status_lines(script, options, capsys)
        assert status["bowman"] == "bowman: training, no validation yet; another process is training it"
    status = status_lines(script, options, capsys)  # the holder is gone, having checkpointed nothing
    assert status["bowman"] == "bowman: not started"
    assert script.main([*options, "--rows", "bowman", "--max-steps", "3"]) == 0  # free again: this run trains it
    assert (records / "bowman.json").is_file()


def test_recorded_rows_stay_in_the_table_after_their_run_dirs_are_gone(table_run, tmp_path, capsys):
    script, tmp, common = table_run
    records = tmp_path / "records"
    shutil.copytree(tmp / "records", records)
    record = json.loads((records / "free_bits.json").read_text(encoding="utf-8"))
    results = json.loads((tmp / "runs" / "free_bits" / "ptb_table_results.json").read_text())
    assert record["results"] == results and "model.safetensors" not in json.dumps(record)
    metrics = [json.loads(line) for line in (tmp / "runs" / "free_bits" / "metrics.jsonl").read_text().splitlines()]
    assert [point[0] for point in record["curves"]["kl"]] == [line["step"] for line in metrics
                                                             if line["split"] == "train"]
    table = tmp_path / "out" / "table.md"
    options = with_option(with_option(common, "--records", records), "--table", table)
    (records / "free_bits.json").write_text(json.dumps({**record, "recorded": "2000-01-01"}), encoding="utf-8")
    assert script.main([*options, "--rows", ""]) == 0  # same results from the run dir: the record is not rewritten
    assert json.loads((records / "free_bits.json").read_text(encoding="utf-8"))["recorded"] == "2000-01-01"
    options = with_option(options, "--runs-dir", tmp_path / "no_runs")  # a later session: the run dirs are gone
    assert script.main([*options, "--rows", ""]) == 0
    text = table.read_text(encoding="utf-8")
    row = dict(zip(markdown_row(text, "| row |"), markdown_row(text, "| free bits")))
    assert row["NLL"] == f"{results['nll']:.2f}" and row["KL"] == f"{results['kl']:.2f}"
    pending = next(line for line in text.splitlines() if line.startswith("Not yet trained"))
    assert "(`lm`)" in text and "`bowman`" in pending and "`free_bits`" not in pending
    assert sorted(path.name for path in table.parent.glob("*.png")) == [
        "table_au.png", "table_kl.png", "table_mi.png", "table_nll.png"]
    status = status_lines(script, options, capsys)
    assert status["free_bits"].startswith(f"free_bits: recorded in {records} (no run dir here), k = 3: "
                                          f"NLL {results['nll']:.2f}")
    assert status["bowman"] == "bowman: not started"
    assert script.main([*with_option(options, "--iw-samples", "4"), "--rows", ""]) == 0  # records hold k = 3
    text = table.read_text(encoding="utf-8")
    assert "(`free_bits`)" not in text
    assert "Recorded with another k, so not in this table: `lm`, `free_bits`" in text


def test_a_bleu_scored_with_the_13a_tokenizer_is_left_out_of_the_table():
    """Issue 26: results without bleu_tokenize were scored with 13a, which splits <unk> into three matching
    tokens; the table must not print such a number as a BLEU, only say that it is left out and why."""
    script = load_script()
    trained = {"seconds": 60.0, "recipe": "configs/ptb.yaml", "overrides": []}
    old = {"trained": trained, "tokens_per_s": 1000.0, "results": {"nll": 100.0, "kl": 5.0, "bleu": 9.8765}}
    new = {**old, "results": {**old["results"], "bleu": 4.321, "bleu_tokenize": "none"}}
    old_row, new_row = script.table_rows({"bowman": old, "free_bits": new})[:2]
    assert "9.88" not in old_row and f"| {script.INFLATED_BLEU} |" in old_row
    assert "| 4.32 |" in new_row and script.INFLATED_BLEU not in new_row


def test_a_note_on_a_recorded_row_is_kept_in_its_record_and_printed_with_it(table_run, tmp_path):
    script, tmp, common = table_run
    records, table = tmp_path / "records", tmp_path / "table.md"
    shutil.copytree(tmp / "records", records)
    options = with_option(with_option(common, "--records", records), "--table", table)
    assert script.main([*options, "--rows", "", "--note", "free_bits=paused for 11 min"]) == 0
    assert json.loads((records / "free_bits.json").read_text(encoding="utf-8"))["note"] == "paused for 11 min"
    row_line = next(line for line in table.read_text(encoding="utf-8").splitlines() if line.startswith("- `free_bits`"))
    assert row_line.endswith(". Note: paused for 11 min")
    assert script.main([*options, "--rows", ""]) == 0  # a later table keeps the note: it lives in the record
    assert "Note: paused for 11 min" in table.read_text(encoding="utf-8")
    assert script.main([*options, "--rows", "", "--note", "free_bits="]) == 0
    assert "note" not in json.loads((records / "free_bits.json").read_text(encoding="utf-8"))
    assert "Note:" not in table.read_text(encoding="utf-8")
    with pytest.raises(SystemExit, match="bowman has no record in"):
        script.main([*options, "--rows", "", "--note", "bowman=never trained"])
    with pytest.raises(SystemExit):  # argparse: no ROW=
        script.main([*options, "--rows", "", "--note", "paused"])


def test_a_table_whose_run_dirs_are_lost_is_adopted_as_records(table_run, tmp_path):
    script, tmp, common = table_run
    written = (tmp / "out" / "table.md").read_text(encoding="utf-8")
    old = tmp_path / "old.md"
    old.write_text(written, encoding="utf-8")
    records, table = tmp_path / "records", tmp_path / "new.md"
    options = with_option(with_option(common, "--records", records), "--table", table)
    options = with_option(options, "--runs-dir", tmp_path / "no_runs")
    assert script.main([*options, "--rows", "", "--adopt-table", str(old)]) == 0
    adopted = json.loads((records / "free_bits.json").read_text(encoding="utf-8"))
    assert adopted["recovered_from"].startswith("the table written on ")
    command = written.split("```\n")[1].strip()  # the command that wrote the adopted table
    assert adopted["recovered_from"].endswith(f" by `{command}`") and command.startswith("python benchmarks/")
    assert adopted["curves"] == {} and adopted["results"]["iw_samples_asked"] == 3
    measured = [line for line in written.splitlines() if "(`" in line and line.startswith("| ")]
    again = table.read_text(encoding="utf-8")
    assert [line for line in again.splitlines() if "(`" in line and line.startswith("| ")] == measured
    assert "recovered from the table written on " in again
    (records / "free_bits.json").write_text(json.dumps({**adopted, "results": {**adopted["results"], "nll": 1.0}}))
    assert script.main([*options, "--rows", "", "--adopt-table", str(old)]) == 0  # an existing record is kept
    assert json.loads((records / "free_bits.json").read_text())["results"]["nll"] == 1.0
    with pytest.raises(SystemExit, match="not a table written by benchmarks/ptb_table.py"):
        old.write_text("# some other table\n", encoding="utf-8")
        script.main([*options, "--rows", "", "--adopt-table", str(old)])


def test_status_of_a_row_checkpointed_before_its_first_validation_gives_its_training_time(table_run, tmp_path, capsys):
    """A long first epoch (aggressive training) leaves only checkpoints written between validations
    (train.checkpoint_minutes); --status reads the trainer's clock and step from them."""
    script, tmp, common = table_run
    runs = tmp_path / "runs"
    shutil.copytree(tmp / "runs" / "free_bits", runs / "aggressive")
    for trained_or_scored in (script.TRAINED, "ptb_table_results.json"):
        (runs / "aggressive" / trained_or_scored).unlink()
    metrics = runs / "aggressive" / "metrics.jsonl"
    train_lines = [line for line in metrics.read_text().splitlines() if json.loads(line)["split"] == "train"]
    metrics.write_text("\n".join(train_lines) + "\n")
    checkpoint = torch.load(runs / "aggressive" / script.CHECKPOINT, weights_only=True)
    checkpoint["state"].update(epoch=0, history=[], train_seconds=4000.0)
    torch.save(checkpoint, runs / "aggressive" / script.CHECKPOINT)
    status = status_lines(script, with_option(common, "--runs-dir", runs), capsys)
    steps = checkpoint["state"]["step"]
    assert status["aggressive"] == (f"aggressive: training, no validation yet; trained 1h 06m ({steps} steps); "
                                    "stopped: rerun to resume it")


def test_the_committed_table_and_the_docs_table_are_the_committed_records():
    """benchmarks/ptb_table.md's rows are what the script makes of benchmarks/ptb_table_rows/, and every number
    of docs/collapse.md's measured table is its record's, rounded: neither table can be edited by hand."""
    script = load_script()
    records = script.load_records(ROOT / "benchmarks" / "ptb_table_rows", list(script.ROWS))
    assert records, "no committed records in benchmarks/ptb_table_rows"
    committed = [line for line in (ROOT / "benchmarks" / "ptb_table.md").read_text(encoding="utf-8").splitlines()
                 if line.startswith("| ") and not line.startswith(("| row ", "| --- "))]
    assert committed == script.table_rows(records)
    docs = (ROOT / "docs" / "collapse.md").read_text(encoding="utf-8")
    header = markdown_row(docs, "| row | NLL (IW")
    columns = {title: (key, digits) for title, key, digits in script.COLUMNS if key != "bleu"}  # the docs' columns
    checked = set()
    for name, record in records.items():
        cells = dict(zip(header, markdown_row(docs, next(line for line in docs.splitlines()
                                                         if line.startswith("| ") and f"(`{name}`" in line))))
        for title, (key, digits) in columns.items():
            column = next(column for column in cells if column.startswith(title))
            is_lm = "model.model_variant=lm" in script.ROWS[name][1]  # an LM's ELBO columns are dashes in the docs
            expected = record["results"].get(key) if not is_lm or key in ("nll", "ppl") else None
            assert cells[column] == script.cell(expected, digits), (name, title)
        checked.add(name)
    assert checked == set(records), "docs/collapse.md's table lacks a recorded row"


def test_the_lm_row_trains_with_configs_ptb_lm_yaml():
    """The table's LM row is configs/ptb.yaml plus its overrides; that must be the LM recipe users are given."""
    from textvae.config import load_config

    row = load_config(ROOT / "configs" / "ptb.yaml", load_script().ROWS["lm"][1]).to_dict()
    assert row == load_config(ROOT / "configs" / "ptb_lm.yaml").to_dict()
    assert row["train"]["optimizer"] == "sgd" and row["train"]["lr_decay_reload_best"] is True


def test_a_row_that_starts_from_the_autoencoder_waits_for_it_then_starts_from_its_weights(table_run, tmp_path):
    script, tmp, common = table_run
    options = with_option(with_option(with_option(common, "--runs-dir", tmp_path / "runs"), "--records",
                                      tmp_path / "records"), "--table", tmp_path / "table.md")
    assert script.starts_from("pretrain_free_bits") == ["ae"] and script.starts_from("free_bits") == []
    assert script.main(["--rows", "pretrain_free_bits", "--max-steps", "3", *options]) == 0
    assert not (tmp_path / "runs" / "pretrain_free_bits" / "checkpoint.pt").exists()  # skipped: no `ae` yet
    assert script.main(["--rows", "ae,pretrain_free_bits", "--max-steps", "3", *options]) == 0
    from textvae.config import load_config
    row = load_config(tmp_path / "runs" / "pretrain_free_bits" / "train_config.yaml")
    assert row.train.init_from == str(tmp_path / "runs" / "ae_encoder") and row.train.reset_decoder
    trained = json.loads((tmp_path / "runs" / "pretrain_free_bits" / script.TRAINED).read_text())
    assert trained["recipe"] == str(tmp / "tiny.yaml")
    assert f"train.init_from={tmp_path / 'runs'}/ae_encoder" in trained["overrides"]
    ae = json.loads((tmp_path / "runs" / "ae" / script.TRAINED).read_text())
    assert trained["started_from"] == {"row": "ae", **ae}  # the encoder of the finished `ae` run, copied


def test_the_warm_start_row_starts_its_encoder_from_the_autoencoder_and_its_decoder_from_the_language_model(
        table_run, tmp_path, caplog):
    """The warm-start row (textvae's earlier recipe) waits for both rows it starts from, then reads a copy of each, and its record says which
    runs trained them."""
    script, tmp, common = table_run
    runs = tmp_path / "runs"
    options = with_option(with_option(with_option(common, "--runs-dir", runs), "--records", tmp_path / "records"),
                          "--table", tmp_path / "table.md")
    assert script.starts_from("warm_start") == ["ae", "lm"]
    caplog.set_level(logging.INFO, logger="ptb_table")
    assert script.main(["--rows", "ae,warm_start", "--max-steps", "3", *options]) == 0
    assert not (runs / "warm_start" / "checkpoint.pt").exists()  # skipped: no `lm` yet
    assert "warm_start: starts from the trained `lm` row, not trained yet; skipped (train it first: --rows lm,warm_start)" \
        in caplog.text
    assert script.main(["--rows", "lm,warm_start", "--max-steps", "3", *options]) == 0
    from textvae.config import load_config
    row = load_config(runs / "warm_start" / "train_config.yaml")
    assert row.train.decoder_from == str(runs / "lm_decoder") and row.train.init_from == str(runs / "ae_encoder")
    trained = json.loads((runs / "warm_start" / script.TRAINED).read_text())
    lm = json.loads((runs / "lm" / script.TRAINED).read_text())
    assert trained["decoder_started_from"] == {"row": "lm", **lm} and trained["started_from"]["row"] == "ae"
    origin = next(line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("- `warm_start`"))
    assert f"its decoder started from a `lm` run ({lm['epochs']} epochs, {lm['precision']}, trained by " in origin
    copy, source = textvae.load(runs / "lm_decoder").model.state_dict(), textvae.load(runs / "lm").model.state_dict()
    assert copy.keys() == source.keys() and all(torch.equal(copy[name], source[name]) for name in copy)


def test_the_textvae_row_trains_the_pretrain_free_bits_row_further_from_its_last_checkpoint(table_run, tmp_path, caplog):
    """textvae's row is Li et al. 2019's recipe without the epoch cap: it waits for that row, starts from a copy of
    its last checkpoint (its curves included), trains on, and its record says which run it continued."""
    script, tmp, common = table_run
    runs = tmp_path / "runs"
    options = with_option(with_option(with_option(common, "--runs-dir", runs), "--records", tmp_path / "records"),
                          "--table", tmp_path / "table.md")
    from textvae.config import load_config
    row, source = (load_config(ROOT / "configs" / "ptb.yaml", script.row_overrides(name, "runs")).to_dict()
                   for name in ("textvae", "pretrain_free_bits"))
    assert row["train"].pop("max_epochs") > source["train"].pop("max_epochs") and row == source  # only the cap differs
    caplog.set_level(logging.INFO, logger="ptb_table")
    assert script.main(["--rows", "textvae", "--max-epochs", "2", *options]) == 0
    assert not (runs / "textvae" / "checkpoint.pt").exists()
    assert ("textvae: trains the `pretrain_free_bits` row further, which is not trained yet; skipped (train it first: "
            "--rows pretrain_free_bits,textvae)") in caplog.text
    assert script.main(["--rows", "ae,pretrain_free_bits", "--max-epochs", "1", *options]) == 0
    assert script.main(["--rows", "textvae", "--max-epochs", "2", *options]) == 0
    first, continued = read_metrics(runs / "pretrain_free_bits"), read_metrics(runs / "textvae")
    assert continued[:len(first)] == first and continued[-1]["epoch"] == 2 and len(continued) > len(first)
    assert load_config(runs / "textvae" / "train_config.yaml").train.max_epochs == 2
    trained = json.loads((runs / "textvae" / script.TRAINED).read_text())
    source_facts = json.loads((runs / "pretrain_free_bits" / script.TRAINED).read_text())
    assert trained["continued_from"] == {"row": "pretrain_free_bits", **source_facts} and trained["epochs"] == 2
    origin = next(line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("- `textvae`"))
    assert "its first 1 epochs are the `pretrain_free_bits` row's run" in origin


def test_the_autoencoders_encoder_is_kept_in_the_records_and_a_later_session_starts_from_it(table_run, tmp_path):
    """Run dirs do not outlive a session: the trained `ae` row's encoder is kept beside the records, and with the
    run dirs gone (a new session) the rows that start from it rebuild their init_from dir from it, with exactly
    the trained encoder and the same vocabulary."""
    script, tmp, common = table_run
    first, later = tmp_path / "session1", tmp_path / "session2"
    records = tmp_path / "records"
    options = with_option(with_option(with_option(common, "--runs-dir", first), "--records", records),
                          "--table", tmp_path / "table.md")
    assert script.main(["--rows", "ae", "--max-steps", "3", *options]) == 0
    kept = records / "ae.encoder.safetensors"
    assert kept.is_file() and not kept.with_name(kept.name + ".partial").exists()
    carry = load_benchmark("ptb_table_carry")
    assert carry.same_encoder(first / "ae", kept)
    options = with_option(options, "--runs-dir", later)  # the next session: none of the first one's run dirs
    assert script.main(["--rows", "pretrain_free_bits", "--max-steps", "3", *options]) == 0
    assert (later / "pretrain_free_bits" / script.TRAINED).is_file() and not (later / "ae").exists()
    started = json.loads((later / "pretrain_free_bits" / script.TRAINED).read_text())["started_from"]
    assert started["row"] == "ae" and "unfinished" not in started and started["kept_in"] == str(kept)
    assert carry.same_encoder(later / "ae_encoder", kept)
    assert carry.vocabulary_fingerprint(textvae.load(later / "ae_encoder").tokenizer) == \
        carry.vocabulary_fingerprint(textvae.load(first / "ae").tokenizer)


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or sys.platform == "win32", reason="needs POSIX signals")
def test_a_row_stopped_by_sigterm_says_how_to_resume_and_the_same_command_resumes_it(table_run, tmp_path):
    """SIGTERM (a session's end) while a row trains: the script exits 143 with one line naming the row and how to go
    on, no traceback; rerunning the same command resumes the row from its checkpoint instead of starting over."""
    _, tmp, common = table_run
    runs = tmp_path / "runs"
    options = with_option(with_option(common, "--runs-dir", runs), "--records", tmp_path / "records")
    command = [sys.executable, str(ROOT / "benchmarks" / "ptb_table.py"), "--rows", "free_bits", "--max-steps",
               "100000", *options]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics = runs / "free_bits" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.is_file() and metrics.read_text().count('"train"') >= 3) and process.poll() is None:
        assert time.time() < deadline, "the row logged no training steps in 2 minutes"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("ptb_table: free_bits: SIGTERM after "
                                                                              "step "), err
    assert "rerun the same command to resume it" in err
    kept = torch.load(runs / "free_bits" / "checkpoint.pt", weights_only=True)["state"]["step"]
    resumed = subprocess.run([*command[:5], str(kept + 2), *options], cwd=ROOT, capture_output=True, text=True,
                             timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert torch.load(runs / "free_bits" / "checkpoint.pt", weights_only=True)["state"]["step"] == kept + 2


def test_a_row_is_evaluated_in_the_precision_it_trained_in(table_run, tmp_path, monkeypatch):
    """A row the recipe pins to fp32 is scored in fp32 even where `auto` would pick bf16 (a CPU with AVX-512 BF16),
    so its table numbers do not depend on the CPU of the session that evaluated it."""
    script, tmp, common = table_run
    runs = tmp_path / "runs"
    shutil.copytree(tmp / "runs", runs)
    (runs / "lm" / script.RESULTS).unlink()
    trained = json.loads((runs / "lm" / script.TRAINED).read_text())
    (runs / "lm" / script.TRAINED).write_text(json.dumps({**trained, "precision": "fp32"}))
    monkeypatch.setenv("TEXTVAE_AUTO_PRECISION", "bf16")
    options = with_option(with_option(common, "--runs-dir", runs), "--records", tmp_path / "records")
    assert script.main([*options, "--rows", ""]) == 0
    assert json.loads((runs / "lm" / script.RESULTS).read_text())["precision"] == "fp32"


def test_an_unfinished_autoencoders_encoder_can_be_kept_when_the_session_ends_first(table_run, tmp_path, capsys):
    """--keep-unfinished-encoder ae keeps the best weights so far of an `ae` run that has not finished, says so in
    the file's facts, and the rows that start from it use it in a later session."""
    script, tmp, common = table_run
    first, later, records = tmp_path / "session1", tmp_path / "session2", tmp_path / "records"
    options = with_option(with_option(with_option(common, "--runs-dir", first), "--records", records),
                          "--table", tmp_path / "table.md")
    assert script.main(["--rows", "ae", "--max-steps", "3", *options]) == 0
    kept = records / "ae.encoder.safetensors"
    kept.unlink()
    (first / "ae" / script.TRAINED).unlink()  # as if the session had ended while `ae` trained
    capsys.readouterr()
    assert script.main(["--keep-unfinished-encoder", "ae", *options]) == 0
    assert "is kept in" in capsys.readouterr().out
    from safetensors import safe_open

    with safe_open(str(kept), framework="pt") as handle:
        facts = json.loads(handle.metadata()["facts"])
    assert facts["unfinished"] is True and facts["row"] == "ae" and facts["best_step"] <= facts["stopped_after_step"]
    carry = load_benchmark("ptb_table_carry")
    assert carry.same_encoder(first / "ae", kept)
    options = with_option(options, "--runs-dir", later)
    assert script.main(["--rows", "pretrain_free_bits", "--max-steps", "3", *options]) == 0
    started = json.loads((later / "pretrain_free_bits" / script.TRAINED).read_text())["started_from"]
    assert started["unfinished"] is True and started["best_epoch"] == facts["best_epoch"]
    assert carry.same_encoder(later / "ae_encoder", kept)
    row = next(line for line in (tmp_path / "table.md").read_text().splitlines()
               if line.startswith("- `pretrain_free_bits`"))
    assert f"started from the encoder of an unfinished `ae` run (its best weights, epoch {facts['best_epoch']}" in row


def test_the_target_line_asks_for_every_condition_of_the_issue():
    """A VAE row meets textvae's target only with a PPL below our LM's and the published LM's, KL >= 8, MI >= 6 and
    all 32 units active: missing any one leaves it out."""
    script = load_script()
    good = {"ppl": 95.5, "kl": 8.7, "mi": 6.1, "au": 32}
    rows = {"lm": {"ppl": 95.8}, "good": good, "low_mi": {**good, "mi": 5.9}, "low_kl": {**good, "kl": 7.9},
            "au_31": {**good, "au": 31}, "worse_than_lm": {**good, "ppl": 95.9}}
    line = script.target_verdict(rows)
    assert line.endswith("met by `good`.") and "MI ≥ 6" in line and "published LM's 100.47" in line
    # an LM worse than the published one: the published PPL (100.47) is the bar
    assert script.target_verdict({**rows, "lm": {"ppl": 101.0}}).endswith("met by `good`, `worse_than_lm`.")
    assert "not judged" in script.target_verdict({"good": good})


def test_the_ptb_homotopy_recipe_is_the_probe_it_quotes():
    """configs/ptb_homotopy.yaml quotes the measured numbers of probe p26 (benchmarks/ptb_homotopy_probes.sh, run to
    STEPS 60490): it must train what p26 trained, i.e. the probes' base with the script's common overrides and p26's,
    step limit included (the LR cool-down counts back from it), apart from the keys that only say how a probe runs
    (threads, precision, progress bar, sampling prior)."""
    from textvae.config import load_config

    printed = subprocess.run(["bash", str(ROOT / "benchmarks" / "ptb_homotopy_probes.sh"), "0", "60490",
                              "p26_p21_30_long_cooldown"],
                             env={**os.environ, "DRY_RUN": "1"}, capture_output=True, text=True, check=True).stdout
    assert printed.startswith("p26_p21_30_long_cooldown: ") and printed.count("\n") == 1, printed
    run_only = ("train.num_threads", "train.precision", "train.fit_sampling_prior", "train.progress_bar")
    overrides = [kv for kv in printed.split()[1:] if not kv.startswith(run_only)]
    probe = load_config(ROOT / "benchmarks" / "ptb_homotopy_probe_base.yaml", overrides).to_dict()
    recipe = load_config(ROOT / "configs" / "ptb_homotopy.yaml").to_dict()
    for section in ("data", "tokenizer", "model", "train"):
        differing = {key for key in set(probe[section]) | set(recipe[section])
                     if probe[section].get(key) != recipe[section].get(key)}
        assert differing <= {key.split(".")[1] for key in run_only if key.startswith(section)}, (section, differing)
    assert recipe["model"]["bag_of_words_weight"] == 1.0 and recipe["model"]["latent_size"] == 512
    assert recipe["train"]["optimizer"] == "adamw" and recipe["train"]["weight_decay"] == 0.1
    assert recipe["model"]["weight_init_range"] == 0.0 and recipe["model"]["embedding_init_range"] == 0.0
    assert recipe["train"]["max_steps"] == 60490 and recipe["train"]["lr_cooldown"] == 0.3478

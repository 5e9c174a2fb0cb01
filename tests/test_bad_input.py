"""Bad input gets one clear line (what, where, how to fix), never a traceback; odd-but-valid input just works.

Every error case goes through a public surface: `textvae.cli.main` (exit code 2, exactly one stderr line
starting with 'textvae: error:') or the Python API (`TextVAEError` with the key facts in its message).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shutil
import time
from pathlib import Path

import datasets
import pytest
import torch
from conftest import no_network, read_metrics

import textvae
from textvae.training import logging_sinks as metrics_files
from textvae.training import trainer as training
from textvae.atomic_files import replace_atomically
from textvae.cli import main
from textvae.config import DataConfig, config_from_dict, load_config
from textvae.data import load_corpus
from textvae.errors import TextVAEError
from textvae.data.loading import load_splits

WORDS = "the a cat dog bird sat ran flew on under mat tree big small red blue".split()
TINY = ["--quiet", "--set", "model.embedding_size=8", "--set", "model.encoder_hidden_size=8",
        "--set", "model.decoder_hidden_size=8", "--set", "model.latent_size=4", "--set", "train.max_steps=2",
        "--set", "train.batch_size=8", "--set", "tokenizer.vocab_size=100"]


def sentences(count: int, words: list[str] = WORDS, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 7))) for _ in range(count)]


def write_corpus(folder: Path, words: list[str] = WORDS, test: bool = True) -> Path:
    """A folder with train.txt (40 lines), valid.txt and test.txt (8 lines each)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text("\n".join(sentences(40, words)) + "\n", encoding="utf-8")
    (folder / "valid.txt").write_text("\n".join(sentences(8, words, seed=1)) + "\n", encoding="utf-8")
    if test:
        (folder / "test.txt").write_text("\n".join(sentences(8, words, seed=2)) + "\n", encoding="utf-8")
    return folder


def train_run(out: Path, corpus: Path, *extra: str) -> Path:
    assert main(["train", "--out", str(out), *TINY, "--set", f"data.source={corpus}", *extra]) == 0
    return out


def cli_error(capsys, *argv: str) -> str:
    """Run the CLI, expect exit code 2 and exactly one stderr line 'textvae: error: ...'; return that line."""
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("textvae: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_input")


@pytest.fixture(scope="module")
def corpus(workdir) -> Path:
    return write_corpus(workdir / "corpus")


@pytest.fixture(scope="module")
def run_dir(workdir, corpus) -> Path:
    """One finished tiny run (2 steps) on the text corpus; tests copy it before damaging it."""
    return train_run(workdir / "run", corpus)


@pytest.fixture(scope="module")
def other_run_dir(workdir) -> Path:
    """A tiny run on other words, so its tokenizer has a different vocabulary size."""
    other = write_corpus(workdir / "other_corpus", words="alpha beta gamma delta epsilon".split(), test=False)
    return train_run(workdir / "other_run", other)


# ---- 1-4: text files ------------------------------------------------------------------------------

def test_missing_train_file_names_the_path(capsys, tmp_path):
    missing = tmp_path / "nope" / "train.txt"
    line = cli_error(capsys, "train", "--out", tmp_path / "out", *TINY, "--set", f"data.train_file={missing}")
    assert str(missing) in line and "not found" in line
    with pytest.raises(TextVAEError, match="file not found: .*nope/train.txt"):
        load_corpus(DataConfig(train_file=str(missing)))


def test_folder_without_train_txt(capsys, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "valid.txt").write_text("a sentence\n", encoding="utf-8")
    line = cli_error(capsys, "train", "--out", tmp_path / "out", *TINY, "--set", f"data.source={folder}")
    assert str(folder) in line and "has no train.txt" in line and "data.train_file" in line


@pytest.mark.parametrize("content", [b"", b"  \n\t\n\n \r\n"], ids=["zero-bytes", "whitespace-only"])
def test_empty_train_file(capsys, tmp_path, content):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.txt").write_bytes(content)
    line = cli_error(capsys, "train", "--out", tmp_path / "out", *TINY, "--set", f"data.source={folder}")
    state = "is empty" if content == b"" else "has only blank lines"
    assert str(folder / "train.txt") in line and state in line and "one sentence per line" in line


def test_non_utf8_line_is_named(capsys, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.txt").write_bytes(b"good line\nbad \xff\xfe line\nanother good line\n")
    line = cli_error(capsys, "train", "--out", tmp_path / "out", *TINY, "--set", f"data.source={folder}")
    assert str(folder / "train.txt") in line and "line 2 " in line and "UTF-8" in line and "iconv" in line
    with pytest.raises(TextVAEError, match=r"train.txt line 2 is not valid UTF-8"):
        load_corpus(DataConfig(train_file=str(folder / "train.txt")))


# ---- 5-7, 9, 10, 15: config ---------------------------------------------------------------------------

@pytest.mark.parametrize(("yaml_text", "key", "suggestion"), [
    ("train: {learning_rate: 0.1}\n", "train.learning_rate", "lr"),
    ("data: {max_len: 20}\n", "data.max_len", "max_length"),
])
def test_unknown_key_suggests_the_nearest(tmp_path, yaml_text, key, suggestion):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(TextVAEError, match=rf"unknown config key '{key}' \(did you mean '{suggestion}'\?\)"):
        load_config(path)


def test_unknown_model_key_suggests_the_nearest(capsys, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model: {latnet_size: 8}\n", encoding="utf-8")
    line = cli_error(capsys, "train", "--config", path, "--out", tmp_path / "out", "--quiet")
    assert "unknown config key 'model.latnet_size'" in line and "did you mean 'latent_size'" in line
    assert not (tmp_path / "out").exists()  # rejected before anything is written


def test_unknown_section_suggests_the_nearest(capsys, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("trian:\n  lr: 0.1\n", encoding="utf-8")
    with pytest.raises(TextVAEError, match=r"unknown config section 'trian' \(did you mean 'train'\?\)"):
        load_config(path)
    line = cli_error(capsys, "train", "--out", tmp_path / "out", "--set", "trian.lr=0.1")
    assert "unknown section 'trian'" in line and "did you mean 'train'" in line


def test_wrong_type_names_key_and_expected_type(capsys, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text('train:\n  batch_size: "big"\n', encoding="utf-8")
    with pytest.raises(TextVAEError, match=r"config key train\.batch_size: expected a whole number, got 'big'"):
        load_config(path)
    line = cli_error(capsys, "train", "--out", tmp_path / "out", "--set", "train.lr=fast")
    assert "train.lr" in line and "expected a number" in line


def test_negative_latent_size(capsys, tmp_path, corpus):
    line = cli_error(capsys, "train", "--out", tmp_path / "out", *TINY, "--set", f"data.source={corpus}",
                     "--set", "model.latent_size=-4")
    assert "model.latent_size" in line and "positive" in line and "-4" in line
    assert not (tmp_path / "out").exists()  # rejected before any data is read or file written


@pytest.mark.parametrize(("override", "expected"), [
    ("lr0.1", "expected SECTION.KEY=VALUE"),
    ("lr=0.1", "the key must be SECTION.KEY"),
])
def test_bad_set_format(capsys, tmp_path, override, expected):
    line = cli_error(capsys, "train", "--out", tmp_path / "out", "--set", override)
    assert f"--set '{override}'" in line and expected in line and "model.latent_size" in line


def test_decoder_cannot_be_bidirectional(capsys, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  decoder_bidirectional: true\n", encoding="utf-8")
    line = cli_error(capsys, "train", "--config", path, "--out", tmp_path / "out", "--quiet")
    assert "model.decoder_bidirectional" in line and "decoder cannot be bidirectional" in line
    line = cli_error(capsys, "train", "--out", tmp_path / "out", "--set", "model.decoder_bidirectional=true")
    assert "decoder cannot be bidirectional" in line and "remove the key" in line


def test_config_file_missing_or_not_yaml(capsys, tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(TextVAEError, match=r"config file not found: .*missing\.yaml"):
        load_config(missing)
    line = cli_error(capsys, "train", "--config", missing, "--out", tmp_path / "out")
    assert str(missing) in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  lr: 0.1\n batch_size: [\n", encoding="utf-8")
    with pytest.raises(TextVAEError, match=r"config file .*broken\.yaml line 3: not valid YAML"):
        load_config(broken)
    line = cli_error(capsys, "train", "--config", broken, "--out", tmp_path / "out")
    assert f"{broken} line 3" in line


# ---- 8, 11-14: run dirs and the trained model ----------------------------------------------------

def test_sample_from_a_dir_without_model(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = cli_error(capsys, "sample", empty)
    assert f"run dir {empty} has no config.json" in line and f"textvae train --out {empty}" in line
    missing = tmp_path / "missing"
    line = cli_error(capsys, "sample", missing)
    assert f"run dir not found: {missing}" in line


def test_sample_from_a_run_with_a_checkpoint_but_no_model_says_to_resume(capsys, tmp_path):
    started = tmp_path / "started"  # killed before its first validation wrote the model files
    started.mkdir()
    (started / "checkpoint.pt").write_bytes(b"a checkpoint")
    line = cli_error(capsys, "sample", started)
    assert f"run dir {started} has no config.json" in line
    assert f"is training finished? (textvae train --out {started} --resume continues it)" in line


def test_empty_sentence_names_its_position(capsys, run_dir):
    vae = textvae.load(run_dir, device="cpu")
    with pytest.raises(TextVAEError, match=r"sentences\[0\] is empty"):
        vae.encode([""])
    with pytest.raises(TextVAEError, match=r"sentences\[1\] is empty"):
        vae.encode(["the cat sat", "   "])
    with pytest.raises(TextVAEError, match=r"interpolate\[0\] is empty"):
        vae.interpolate("", "x")
    with pytest.raises(TextVAEError, match=r"interpolate\[1\] is empty"):
        vae.interpolate("the cat sat", " ")
    line = cli_error(capsys, "reconstruct", run_dir, "the cat sat", "", "--device", "cpu")
    assert "sentences[1] is empty" in line


def test_resume_without_checkpoint(capsys, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = cli_error(capsys, "train", "--out", empty, "--resume")
    assert f"--resume: {empty} has no checkpoint.pt" in line and "without --resume" in line
    started = tmp_path / "started"  # died before its first checkpoint: config written, no checkpoint
    started.mkdir()
    (started / "train_config.yaml").write_text("train: {lr: 0.1}\n", encoding="utf-8")
    line = cli_error(capsys, "train", "--out", started, "--resume")
    assert f"{started} has no checkpoint.pt" in line
    line = cli_error(capsys, "train", "--out", tmp_path / "never", "--resume")
    assert "has no checkpoint.pt" in line


def test_training_into_a_finished_run(capsys, run_dir, corpus):
    line = cli_error(capsys, "train", "--out", run_dir, *TINY, "--set", f"data.source={corpus}")
    assert f"--out {run_dir} already holds a run" in line and "--resume" in line and "new --out" in line


def test_truncated_model_file(capsys, tmp_path, run_dir):
    damaged = shutil.copytree(run_dir, tmp_path / "damaged")
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(TextVAEError, match=rf"run dir {damaged}: the model cannot be loaded .*retrain"):
        textvae.load(damaged, device="cpu")
    line = cli_error(capsys, "sample", damaged, "--device", "cpu")
    assert f"run dir {damaged}" in line


def test_truncated_tokenizer_file(tmp_path, run_dir):
    damaged = shutil.copytree(run_dir, tmp_path / "damaged")
    tokenizer = damaged / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes()[: tokenizer.stat().st_size // 2])
    with pytest.raises(TextVAEError, match=rf"run dir {damaged}: the tokenizer cannot be loaded"):
        textvae.load(damaged, device="cpu")


def test_tokenizer_of_another_run(capsys, tmp_path, run_dir, other_run_dir):
    mixed = shutil.copytree(run_dir, tmp_path / "mixed")
    shutil.copyfile(other_run_dir / "tokenizer.json", mixed / "tokenizer.json")
    with pytest.raises(TextVAEError, match=rf"run dir {mixed}: .*the tokenizer files belong to another run"):
        textvae.load(mixed, device="cpu")
    line = cli_error(capsys, "sample", mixed, "--device", "cpu")
    assert "belong to another run" in line


# ---- 16: hub names offline ------------------------------------------------------------------------

def test_hub_name_offline_names_local_alternatives(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    attempts = no_network(monkeypatch)
    start = time.perf_counter()
    with pytest.raises(TextVAEError, match=r"data.source 'some-user/some-dataset'.*train\.txt.*save_to_disk"):
        load_corpus(DataConfig(source="some-user/some-dataset"))
    line = cli_error(capsys, "train", "--out", tmp_path / "out", *TINY, "--set", "data.source=some-user/some-dataset")
    assert "train.txt" in line and "save_to_disk" in line
    assert attempts == []
    assert time.perf_counter() - start < 10


# ---- input that must work -------------------------------------------------------------------------

def test_crlf_lines_load_clean(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.txt").write_bytes(b"the cat sat\r\na dog ran far\r\nthe bird flew\r\n")
    (folder / "valid.txt").write_bytes(b"the cat ran\r\n")
    corpus = load_corpus(DataConfig(source=str(folder)))
    assert list(corpus["train"]["text"]) == ["the cat sat", "a dog ran far", "the bird flew"]
    _, splits = load_splits(config_from_dict({"data": {"source": str(folder)}}), None)
    assert splits["train"].texts == ["the cat sat", "a dog ran far", "the bird flew"]
    assert not any("\r" in text for split in splits.values() for text in split.texts)


def test_blank_lines_are_dropped_and_counted(tmp_path, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.txt").write_text("the cat sat\n\n   \na dog ran\n\t\nthe bird flew\n", encoding="utf-8")
    (folder / "valid.txt").write_text("the cat ran\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="textvae"):
        _, splits = load_splits(config_from_dict({"data": {"source": str(folder)}}), None)
    assert "train: 3 sentences kept of 6 lines (3 blank, 0 too long dropped, 0 truncated)" in caplog.messages
    report = splits["train"].report
    assert (report.lines, report.kept, report.blank) == (6, 3, 3)
    assert splits["train"].texts == ["the cat sat", "a dog ran", "the bird flew"]
    assert "3 sentences kept of 6 lines (3 blank" in report.describe("train")


@pytest.mark.parametrize("policy", ["drop", "truncate"])
def test_too_long_lines_follow_the_length_policy(tmp_path, policy, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    long_line = "the big red cat sat on the mat today"
    far_too_long = " ".join(sentences(2000))  # about 10,000 words on one line
    (folder / "train.txt").write_text(f"the cat sat\n{long_line}\na dog ran\n{far_too_long}\n", encoding="utf-8")
    (folder / "valid.txt").write_text("the cat ran\n", encoding="utf-8")
    config = config_from_dict({"data": {"source": str(folder), "max_length": 4, "length_policy": policy}})
    with caplog.at_level(logging.INFO, logger="textvae"):
        _, splits = load_splits(config, None)
    train = splits["train"]
    if policy == "drop":
        assert (train.report.too_long_dropped, train.report.truncated, len(train)) == (2, 0, 2)
        assert long_line not in train.texts and far_too_long not in train.texts
        assert "train: 2 sentences kept of 4 lines (0 blank, 2 too long dropped, 0 truncated)" in caplog.messages
    else:
        assert (train.report.too_long_dropped, train.report.truncated, len(train)) == (0, 2, 4)
        assert max(len(ids) for ids in train.token_ids) == 4
        assert "train: 4 sentences kept of 4 lines (0 blank, 0 too long dropped, 2 truncated)" in caplog.messages


def test_corpus_folder_as_source(corpus):
    loaded = load_corpus(DataConfig(source=str(corpus)))
    assert {name: len(split) for name, split in loaded.items()} == {"train": 40, "valid": 8, "test": 8}
    assert loaded["train"].column_names == ["text"]


def test_saved_dataset_dict_with_sentence_column(tmp_path):
    saved = tmp_path / "saved"
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": ["the cat sat", "a dog ran", "the bird flew"]}),
        "validation": datasets.Dataset.from_dict({"sentence": ["the cat ran"]}),
    }).save_to_disk(str(saved))
    loaded = load_corpus(DataConfig(source=str(saved), text_column="sentence"))
    assert set(loaded) == {"train", "valid"}
    assert list(loaded["train"]["text"]) == ["the cat sat", "a dog ran", "the bird flew"]
    assert list(loaded["valid"]["text"]) == ["the cat ran"]
    with pytest.raises(TextVAEError, match=r"has no column 'text' \(columns: sentence\); set data.text_column"):
        load_corpus(DataConfig(source=str(saved)))


# ---- more text files and corpora ------------------------------------------------------------------

def test_empty_valid_file_is_named(capsys, tmp_path):
    folder = write_corpus(tmp_path / "data", test=False)
    (folder / "valid.txt").write_text("\n \n", encoding="utf-8")
    line = cli_error(capsys, "train", "--out", tmp_path / "out", *TINY, "--set", f"data.source={folder}")
    assert f"valid split: {folder / 'valid.txt'} has only blank lines" in line and "one sentence per line" in line


def test_a_corpus_with_a_tiny_vocabulary_trains_and_decodes_only_its_words(tmp_path):
    folder = write_corpus(tmp_path / "data", words=["yes", "no"], test=False)
    run = train_run(tmp_path / "run", folder)
    vae = textvae.load(run, device="cpu")
    assert set(vae.tokenizer.get_vocab()) == {"<pad>", "<bos>", "<eos>", "<unk>", "yes", "no"}
    words = {word for line in vae.sample(20, strategy="sample", seed=0, ban_unk=True) for word in line.split()}
    assert words <= {"yes", "no"}
    assert vae.encode(["yes no yes", "maybe"]).shape == (2, 4)  # an unknown word is <unk>, not an error


def test_a_vocabulary_emptied_by_min_frequency_says_which_key(capsys, tmp_path, corpus):
    line = cli_error(capsys, "train", "--out", tmp_path / "out", *TINY, "--set", f"data.source={corpus}",
                     "--set", "tokenizer.min_frequency=100000")
    assert "yielded no vocabulary" in line and "tokenizer.min_frequency=100000" in line and "lower" in line


# ---- more config ----------------------------------------------------------------------------------

def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 reads 3e-4 as text; a float key takes it as the number it means
    assert load_config(None, ["train.lr=3e-4"]).train.lr == pytest.approx(3e-4)
    path = tmp_path / "config.yaml"
    path.write_text("train:\n  lr: 1e-3\n  grad_clip: 2E0\n", encoding="utf-8")
    assert (load_config(path).train.lr, load_config(path).train.grad_clip) == (pytest.approx(1e-3), 2.0)
    for text in ("nan", "inf", "fast"):
        with pytest.raises(TextVAEError, match=rf"config key train\.lr: expected a number, got '?{text}'?"):
            load_config(None, [f"train.lr={text}"])
    with pytest.raises(TextVAEError, match=r"train\.batch_size: expected a whole number"):
        load_config(None, ["train.batch_size=3e1"])  # whole-number keys stay strict


@pytest.mark.parametrize(("override", "message"), [
    ("train.batch_size=0", "config key train.batch_size: must be > 0, got 0"),
    ("train.max_epochs=0", "config key train.max_epochs: must be > 0, got 0"),
    ("data.max_length=0", "config key data.max_length: must be > 0, got 0"),
    ("train.word_dropout=1.5", "config key train.word_dropout: must be between 0 and 1, got 1.5"),
    ("train.max_steps=-1", "config key train.max_steps: must not be negative, got -1"),
    ("model.latent_size=0", "model.latent_size: must be a positive whole number, got 0"),
    ("model.encoder_layers=0", "model.encoder_layers: must be a positive whole number, got 0"),
    ("model.embedding_size=2.5", "config key model.embedding_size: expected a whole number, got 2.5"),
    ("tokenizer.vocab_size=4", "config key tokenizer.vocab_size: 4 leaves no room for words"),
])
def test_impossible_sizes_name_the_key_before_anything_is_written(capsys, tmp_path, corpus, override, message):
    out = tmp_path / "out"
    line = cli_error(capsys, "train", "--out", out, *TINY, "--set", f"data.source={corpus}", "--set", override)
    assert message in line
    assert not out.exists()


def test_a_model_too_big_for_the_free_memory_is_refused_with_the_sizes_to_lower(capsys, tmp_path, corpus,
                                                                                  monkeypatch):
    monkeypatch.setattr("textvae.training.setup.free_memory", lambda device: 1 << 20)  # a machine with 1 MiB free
    line = cli_error(capsys, "train", "--out", tmp_path / "out", *TINY, "--set", f"data.source={corpus}",
                     "--set", "model.latent_size=4096")
    assert "parameters: training needs at least" in line and "GiB of cpu memory is free" in line
    assert "model.latent_size" in line and "tokenizer.vocab_size" in line
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


# ---- checkpoints and weights of another model ----------------------------------------------------

def test_weights_of_another_model_give_one_line_not_a_size_mismatch_report(capsys, tmp_path, run_dir, other_run_dir):
    mixed = shutil.copytree(run_dir, tmp_path / "mixed")
    shutil.copyfile(other_run_dir / "model.safetensors", mixed / "model.safetensors")  # other vocabulary size
    with pytest.raises(TextVAEError, match=rf"run dir {mixed}: model.safetensors does not fit config.json "
                                           r"\(.* has shape \(\d+, \d+\) in model.safetensors but \(\d+, \d+\)"):
        textvae.load(mixed, device="cpu")
    line = cli_error(capsys, "sample", mixed, "--device", "cpu")  # one line: no transformers report either
    assert "come from different runs" in line and "copy both from the same run" in line


def test_config_json_edited_to_other_sizes_is_caught(tmp_path, run_dir):
    edited = shutil.copytree(run_dir, tmp_path / "edited")
    config = json.loads((edited / "config.json").read_text(encoding="utf-8"))
    config["latent_size"] = 6
    (edited / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(TextVAEError, match=r"posterior\.\S+ has shape \(8, \d+\) in model.safetensors but \(12, \d+\)"):
        textvae.load(edited, device="cpu")


def test_truncated_checkpoint_on_resume(capsys, tmp_path, run_dir):
    damaged = shutil.copytree(run_dir, tmp_path / "damaged")
    checkpoint = damaged / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    line = cli_error(capsys, "train", "--out", damaged, "--resume", "--set", "train.max_steps=4")
    assert f"checkpoint {checkpoint} cannot be read" in line and "truncated or damaged" in line


def test_checkpoint_of_another_model_on_resume(capsys, tmp_path, run_dir, other_run_dir):
    mixed = shutil.copytree(run_dir, tmp_path / "mixed")
    shutil.copyfile(other_run_dir / "checkpoint.pt", mixed / "checkpoint.pt")
    line = cli_error(capsys, "train", "--out", mixed, "--resume", "--set", "train.max_steps=4")
    assert f"checkpoint {mixed / 'checkpoint.pt'} does not fit the model of this run's config" in line
    assert "has shape" in line and "another --out" in line
    resized = shutil.copytree(run_dir, tmp_path / "resized")  # the run's own checkpoint, other model sizes
    line = cli_error(capsys, "train", "--out", resized, "--resume", "--set", "model.latent_size=6")
    assert "does not fit" in line and "no --set model.*" in line


# ---- sentences given to a trained model -----------------------------------------------------------

def test_very_long_sentences_are_encoded_decoded_and_scored_whole(capsys, tmp_path, run_dir):
    vae = textvae.load(run_dir, device="cpu")
    long_sentence = " ".join(sentences(3000))  # about 15,000 words, far over data.max_length
    one_huge_word = "x" * 1_000_000  # no spaces: one unknown word
    assert vae.encode([long_sentence, one_huge_word]).shape == (2, 4)
    assert len(vae.reconstruct([long_sentence], max_length=10)[0].split()) <= 10
    assert len(vae.interpolate(long_sentence, "the cat sat", steps=3)) == 3
    assert vae.nearest(long_sentence, sentences=["the cat sat", long_sentence], k=1)[0][0] == long_sentence
    scored = vae.score([long_sentence, one_huge_word], iw_samples=4)
    assert scored[0]["tokens"] == len(long_sentence.split()) + 1  # scored whole, not truncated
    assert scored[1]["tokens"] == 2
    assert all(row["neg_elbo"] > 0 and row["iw_nll"] < float("inf") for row in scored)
    source = tmp_path / "long.txt"
    source.write_text(f"{long_sentence}\nthe cat sat\n", encoding="utf-8")
    assert main(["encode", str(run_dir), str(source), "--out", str(tmp_path / "v.npy"), "--device", "cpu"]) == 0
    assert main(["score", str(run_dir), str(source), "--out", str(tmp_path / "s.jsonl"), "--iw-samples", "2",
                 "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["tokens"] for row in rows] == [len(long_sentence.split()) + 1, 4]
    assert main(["reconstruct", str(run_dir), long_sentence, "--max-length", "5", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.count("\t->\t") == 1


def test_empty_sentences_for_score_and_the_cli(capsys, tmp_path, run_dir):
    vae = textvae.load(run_dir, device="cpu")
    with pytest.raises(TextVAEError, match=r"sentences\[1\] is empty; give at least one word"):
        vae.score(["the cat sat", ""])
    with pytest.raises(TextVAEError, match=r"expected a sentence or a non-empty list of sentences"):
        vae.score([])
    with pytest.raises(TextVAEError, match=r"query\[0\] is empty"):
        vae.nearest("  ", sentences=["the cat sat"])
    assert "interpolate[0] is empty" in cli_error(capsys, "interpolate", run_dir, "", "the cat sat", "--device", "cpu")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n", encoding="utf-8")
    line = cli_error(capsys, "score", run_dir, blank, "--out", tmp_path / "s.jsonl", "--device", "cpu")
    assert f"{blank} has only blank lines" in line and "one sentence per line" in line


# ---- divergence -----------------------------------------------------------------------------------

def test_nan_loss_before_any_checkpoint_names_step_and_lr(capsys, tmp_path, corpus):
    out = tmp_path / "out"
    line = cli_error(capsys, "train", "--out", out, *TINY, "--set", f"data.source={corpus}",
                     "--set", "train.lr=1e30", "--set", "train.max_steps=20")
    assert re.search(r"the loss became (nan|inf) at step \d+ \(train\.lr is 1e\+30\); no checkpoint was written "
                     r"yet: train again .* lower train\.lr", line), line
    assert not (out / "checkpoint.pt").exists()


def test_nan_loss_after_a_checkpoint_keeps_it_and_a_lower_lr_resumes(capsys, tmp_path, run_dir):
    run = shutil.copytree(run_dir, tmp_path / "run")
    before = (run / "checkpoint.pt").read_bytes()
    line = cli_error(capsys, "train", "--out", run, "--resume", "--set", "train.lr=1e30", "--set", "train.max_steps=20")
    assert re.search(r"the loss became (nan|inf) at step \d+ \(train\.lr is 1e\+30\); .* continue from the last "
                     rf"checkpoint, which is from before the problem: textvae train --out {run} --resume "
                     r"--set train\.lr=1e\+29", line), line
    assert (run / "checkpoint.pt").read_bytes() == before
    assert main(["train", "--out", str(run), "--resume", "--quiet", "--set", "train.lr=5e-4",
                 "--set", "train.max_steps=4", "--set", "train.log_every=1"]) == 0
    logged = read_metrics(run)
    assert [(r["step"], r["lr"]) for r in logged if r["split"] == "train" and r["step"] > 2] == [(3, 5e-4), (4, 5e-4)]


def test_nan_validation_loss_is_not_checkpointed(capsys, tmp_path, run_dir, monkeypatch):
    run = shutil.copytree(run_dir, tmp_path / "run")
    before = (run / "checkpoint.pt").read_bytes()
    real = training.evaluate_split

    def nan_evaluation(*args, **kwargs):
        results = real(*args, **kwargs)
        return {**results, "neg_elbo": float("nan")}

    monkeypatch.setattr(training, "evaluate_split", nan_evaluation)
    line = cli_error(capsys, "train", "--out", run, "--resume", "--set", "train.max_steps=4")
    lr = load_config(run / "train_config.yaml").train.lr
    assert f"the validation loss became nan at step 4 (train.lr is {lr:g})" in line and "--resume" in line
    assert (run / "checkpoint.pt").read_bytes() == before


# ---- disk full ------------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), OSError(errno.ENOSPC),
                                     RuntimeError("[enforce fail at inline_container.cc] . unexpected pos 64")],
                         ids=["oserror", "bare-errno", "torch-save"])
def test_disk_full_while_saving_keeps_the_previous_file(tmp_path, failure):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"the previous good checkpoint")

    def write_half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"half a new")
        raise failure

    with pytest.raises(TextVAEError) as caught:
        replace_atomically(write_half_then_fail, target)
    message = str(caught.value)
    assert message.startswith(f"could not write {target} (") and "free disk space" in message
    assert "the previous file is kept" in message and "\n" not in message
    if isinstance(failure, OSError):
        assert "(No space left on device)" in message
    assert target.read_bytes() == b"the previous good checkpoint"
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_disk_full_during_training_is_one_line_and_resumable(capsys, tmp_path, run_dir, monkeypatch):
    run = shutil.copytree(run_dir, tmp_path / "run")
    before = (run / "checkpoint.pt").read_bytes()

    def full_disk(payload, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    line = cli_error(capsys, "train", "--out", run, "--resume", "--set", "train.max_steps=4")
    assert f"could not write {run / 'checkpoint.pt'} (No space left on device)" in line
    assert (run / "checkpoint.pt").read_bytes() == before
    monkeypatch.undo()
    assert main(["train", "--out", str(run), "--resume", "--quiet", "--set", "train.max_steps=4"]) == 0


def test_disk_full_while_logging_metrics(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    log = metrics_files.MetricsLog(tmp_path / "metrics.jsonl")
    monkeypatch.setattr(metrics_files, "open", full_disk, raising=False)
    with pytest.raises(TextVAEError, match=r"could not append to .*metrics\.jsonl \(No space left on device\); "
                                           r"free disk space, then --resume"):
        log.write({"step": 1, "split": "train", "loss": 1.0})


def test_a_sentence_longer_than_a_transformers_positions_is_one_clear_line(capsys, tmp_path, corpus):
    transformer = ["--set", "model.encoder_type=transformer", "--set", "model.decoder_type=transformer",
                   "--set", "model.attention_heads=2", "--set", "model.feedforward_size=16",
                   "--set", "model.z_conditioning=both", "--set", "model.max_positions=40"]
    run = train_run(tmp_path / "run", corpus, *transformer)
    vae = textvae.load(run, device="cpu")
    long_sentence = " ".join(sentences(20))  # about 100 words
    for call in (lambda: vae.encode([long_sentence]), lambda: vae.score([long_sentence]),
                 lambda: vae.interpolate(long_sentence, "the cat sat", steps=3)):
        with pytest.raises(TextVAEError, match=r"sentence 1 has \d+ tokens with <eos>, more than this model's "
                                               r"model\.max_positions \(40\); shorten it"):
            call()
    assert vae.encode(["the cat sat on the mat"]).shape == (1, 4)  # sentences that fit still work
    source = tmp_path / "long.txt"
    source.write_text(long_sentence + "\n", encoding="utf-8")
    line = cli_error(capsys, "encode", run, source, "--out", tmp_path / "v.npy", "--device", "cpu")
    assert "sentence 1 has" in line and "model.max_positions (40)" in line

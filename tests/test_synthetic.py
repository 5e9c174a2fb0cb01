"""Tests for textvae.data.synthetic: the embedded synthetic corpus and its latent factors."""

from __future__ import annotations

import ast
import json
import math
import os
import random
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from textvae.data import synthetic
from textvae.data.synthetic import (
    DEFAULT_SEED,
    DEFAULT_SPLIT_SIZES,
    FACTORS,
    generate_corpus,
    generate_sentence,
    generate_split,
    write_corpus,
)


@pytest.fixture(scope="module")
def sample() -> list[dict[str, str]]:
    return generate_split(6000, 123)


def test_factor_names_and_values() -> None:
    assert FACTORS == {
        "topic": ("animals", "weather", "food", "travel", "work"),
        "tense": ("past", "present", "future"),
        "number": ("singular", "plural"),
        "sentiment": ("positive", "negative"),
    }
    assert DEFAULT_SPLIT_SIZES == {"train": 6000, "valid": 2000, "test": 2000}
    assert DEFAULT_SEED == 0


def test_generate_sentence_keys_and_labels() -> None:
    row = generate_sentence(random.Random(7))
    assert list(row) == ["text", *FACTORS]
    for name, values in FACTORS.items():
        assert row[name] in values


def test_same_seed_same_output_different_seed_different() -> None:
    assert generate_split(300, 5) == generate_split(300, 5)
    assert generate_split(300, 5) != generate_split(300, 6)
    assert generate_corpus(3, {"train": 50, "valid": 20, "test": 20}) == generate_corpus(
        3, {"train": 50, "valid": 20, "test": 20}
    )
    assert generate_corpus(3, {"train": 50}) != generate_corpus(4, {"train": 50})


def test_output_does_not_depend_on_the_process_or_its_hash_seed() -> None:
    script = "from textvae.data.synthetic import generate_split; print(repr(generate_split(200, 0)))"
    outputs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout
        for hash_seed in ("1", "2")
    }
    assert outputs == {repr(generate_split(200, 0)) + "\n"}


def test_splits_use_distinct_seeds_and_do_not_depend_on_each_other() -> None:
    corpus = generate_corpus(0, {"train": 100, "valid": 100, "test": 100})
    texts = {name: [row["text"] for row in rows] for name, rows in corpus.items()}
    assert texts["train"] != texts["valid"] != texts["test"] != texts["train"]
    assert generate_corpus(0, {"valid": 100})["valid"] == corpus["valid"]
    assert corpus["train"] == generate_split(100, 0)
    assert generate_corpus(2, {"test": 10})["test"] == generate_split(10, 2 * 1000 + 2)


def test_split_sizes() -> None:
    corpus = generate_corpus(1, {"train": 30, "valid": 7, "test": 0})
    assert list(corpus) == ["train", "valid", "test"]
    assert [len(rows) for rows in corpus.values()] == [30, 7, 0]
    assert list(generate_corpus(1, {"test": 4, "train": 3})) == ["train", "test"]
    assert len(generate_split(0, 1)) == 0


def test_default_sizes() -> None:
    corpus = generate_corpus()
    assert {name: len(rows) for name, rows in corpus.items()} == DEFAULT_SPLIT_SIZES


def test_labels_valid_and_every_value_appears() -> None:
    rows = generate_split(2000, 11)
    for name, values in FACTORS.items():
        seen = Counter(row[name] for row in rows)
        assert set(seen) == set(values), name
        # Roughly uniform: no value below half its expected share.
        assert min(seen.values()) > 0.5 * len(rows) / len(values), (name, seen)


def test_sentence_format(sample: list[dict[str, str]]) -> None:
    for row in sample:
        text = row["text"]
        assert text == text.strip() and "  " not in text and text == text.lower()
        assert text.endswith(" .") or text.endswith(" ?"), text
        for token in text.split(" "):
            assert re.fullmatch(r"[a-z]+|[.,?]", token), (token, text)
        assert text.count(".") + text.count("?") == 1, text


def test_length_bounds(sample: list[dict[str, str]]) -> None:
    lengths = [len(row["text"].split()) for row in sample]
    assert min(lengths) >= 5 and max(lengths) <= 25
    assert 7 <= sum(lengths) / len(lengths) <= 15
    assert sum(7 <= n <= 15 for n in lengths) / len(lengths) >= 0.8


def test_vocabulary_size(sample: list[dict[str, str]]) -> None:
    vocab = {token for row in sample for token in row["text"].split()}
    assert 150 <= len(vocab) <= 500, len(vocab)


def test_sentences_are_varied(sample: list[dict[str, str]]) -> None:
    distinct = len({row["text"] for row in sample}) / len(sample)
    assert distinct >= 0.8, distinct
    shapes = Counter(row["text"].split()[-1] for row in sample)
    assert shapes["?"] > 0.02 * len(sample)
    for connector in ("and", "because", "but", ","):
        assert sum(connector in row["text"].split() for row in sample) > 0.02 * len(sample), connector


def test_tense_changes_the_text(sample: list[dict[str, str]]) -> None:
    by_tense = defaultdict(list)
    for row in sample:
        by_tense[row["tense"]].append(row["text"].split())
    assert all("will" in tokens for tokens in by_tense["future"])
    assert sum("will" in tokens for tokens in by_tense["past"]) < 0.05 * len(by_tense["past"])
    past_forms = {synthetic._past(v) for t in synthetic.TOPICS.values() for v in t["verbs"]}
    assert "caught" in past_forms and "planned" in past_forms and "chased" in past_forms
    # Every past sentence shows a past verb form or "did"; present sentences never do.
    assert all((past_forms | {"did"}) & set(tokens) for tokens in by_tense["past"])
    assert not any(past_forms & set(tokens) for tokens in by_tense["present"])


def test_number_changes_the_verb_in_the_present(sample: list[dict[str, str]]) -> None:
    third = {synthetic._third(v) for t in synthetic.TOPICS.values() for v in t["verbs"]}
    counts = {"singular": [0, 0], "plural": [0, 0]}
    for row in sample:
        tokens = set(row["text"].split())
        if row["tense"] != "present" or row["text"].endswith("?"):
            continue
        counts[row["number"]][0] += bool(third & tokens)
        counts[row["number"]][1] += 1
    assert counts["singular"][0] == counts["singular"][1] > 100  # "the dog chases"
    assert counts["plural"][0] == 0 and counts["plural"][1] > 100  # "the dogs chase"
    # "was"/"is" after a plural subject only in "it was ..." / "everyone is ..."; never "were"/"are" for one.
    for row in sample:
        tokens = row["text"].split()
        for i, token in enumerate(tokens):
            if row["number"] == "plural" and token in ("was", "is"):
                assert tokens[i - 1] in ("it", "everyone"), row["text"]
            if row["number"] == "singular":
                assert token not in ("were", "are"), row["text"]


def test_morphology_tables() -> None:
    assert [synthetic._third(v) for v in ("chase", "watch", "carry", "miss", "see")] == [
        "chases", "watches", "carries", "misses", "sees"]
    assert [synthetic._past(v) for v in ("chase", "carry", "visit", "eat", "plan")] == [
        "chased", "carried", "visited", "ate", "planned"]
    assert [synthetic._plural(n) for n in ("dog", "fox", "puppy", "mouse", "child")] == [
        "dogs", "foxes", "puppies", "mice", "children"]


def _naive_bayes_accuracy(train: list[dict[str, str]], test: list[dict[str, str]], factor: str) -> float:
    """Accuracy of a bag-of-words naive Bayes classifier for one factor."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in train:
        counts[row[factor]].update(row["text"].split())
    vocab = {w for c in counts.values() for w in c}
    totals = {value: sum(c.values()) + len(vocab) for value, c in counts.items()}
    correct = 0
    for row in test:
        scores = {value: sum(math.log((c[w] + 1) / totals[value]) for w in row["text"].split())
                  for value, c in counts.items()}
        correct += max(scores, key=scores.get) == row[factor]
    return correct / len(test)


def test_every_factor_is_visible_in_the_words() -> None:
    train, test = generate_split(3000, 21), generate_split(1000, 22)
    for factor in FACTORS:
        accuracy = _naive_bayes_accuracy(train, test, factor)
        assert accuracy >= 0.9, (factor, accuracy)


def test_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(synthetic.__file__).read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots <= {"__future__", "json", "os", "pathlib", "random", "textvae"}, roots
    assert "random.seed(" not in Path(synthetic.__file__).read_text(encoding="utf-8")


def test_write_corpus(tmp_path: Path) -> None:
    sizes = {"train": 40, "valid": 15, "test": 5}
    out = write_corpus(tmp_path / "nested" / "corpus", seed=9, sizes=sizes)
    assert out == tmp_path / "nested" / "corpus" and out.is_dir()
    corpus = generate_corpus(9, sizes)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}{ext}" for s in sizes for ext in (".txt", ".labels.jsonl"))
    for split, rows in corpus.items():
        raw = (out / f"{split}.txt").read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n")
        assert raw.decode("utf-8").split("\n")[:-1] == [row["text"] for row in rows]
        labels = (out / f"{split}.labels.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in labels] == [{k: row[k] for k in FACTORS} for row in rows]


def test_write_corpus_is_byte_identical(tmp_path: Path) -> None:
    sizes = {"train": 30, "valid": 10, "test": 10}
    a, b = write_corpus(tmp_path / "a", 4, sizes), write_corpus(str(tmp_path / "b"), 4, sizes)
    for name in ("train.txt", "valid.labels.jsonl", "test.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_write_corpus_empty_split(tmp_path: Path) -> None:
    out = write_corpus(tmp_path, sizes={"train": 0})
    assert (out / "train.txt").read_bytes() == b"" and (out / "train.labels.jsonl").read_bytes() == b""


@pytest.mark.parametrize("size", [-1, 1.5, "10", True])
def test_bad_size_in_generate_split(size: object) -> None:
    with pytest.raises(ValueError, match="size must be a non-negative integer, got"):
        generate_split(size, 0)  # type: ignore[arg-type]


def test_bad_size_in_corpus_names_the_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"size for split 'valid' must be a non-negative integer, got -3"):
        generate_corpus(0, {"train": 5, "valid": -3})
    with pytest.raises(ValueError, match="non-negative integer"):
        write_corpus(tmp_path / "x", sizes={"test": -1})
    assert not (tmp_path / "x").exists()


def test_unknown_split_name(tmp_path: Path) -> None:
    message = r"unknown split name 'dev' in synthetic corpus sizes; allowed names are train, valid, test"
    with pytest.raises(ValueError, match=message):
        generate_corpus(0, {"train": 5, "dev": 5})
    with pytest.raises(ValueError, match=message):
        write_corpus(tmp_path, sizes={"dev": 1})
    with pytest.raises(ValueError) as info:
        generate_corpus(0, {"validation": 1})
    assert "\n" not in str(info.value)


def test_the_corpus_command_writes_the_train_split_a_recipe_trains_on(tmp_path: Path, capsys) -> None:
    """`textvae corpus --train-size N` writes the same train sentences as data.synthetic_train_size N (the demo
    recipe's fresh sentences, as files), and the usual valid and test splits; a size below 1 is one line."""
    from textvae.cli import main
    from textvae.data.sources import synthetic_corpus

    assert main(["corpus", str(tmp_path / "big"), "--train-size", "700"]) == 0
    in_memory = synthetic_corpus(0, 700)
    assert (tmp_path / "big" / "train.txt").read_text(encoding="utf-8").splitlines() == in_memory["train"]["text"]
    assert main(["corpus", str(tmp_path / "default")]) == 0
    for split in ("valid", "test"):
        assert (tmp_path / "big" / f"{split}.txt").read_bytes() == (tmp_path / "default" / f"{split}.txt").read_bytes()
    capsys.readouterr()
    assert main(["corpus", str(tmp_path / "none"), "--train-size", "0"]) != 0
    assert capsys.readouterr().err.strip() == "textvae: error: --train-size 0: give a positive number of sentences"

"""Streaming mode: the train file is read as a stream, bucketed per window, resumable, trainable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from textvae.config import load_config
from textvae.data import padding_share
from textvae.errors import TextVAEError
from textvae.modeling import TextVAE
from textvae.data.synthetic import write_corpus
from textvae.data.tokenization import special_ids
from textvae.data.loading import load_splits
from textvae.training import train

SIZES = {"train": 900, "valid": 100, "test": 100}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("stream") / "corpus", sizes=SIZES)


def streaming_config(corpus: Path, *extra: str):
    return load_config(None, [f"data.source={corpus}", "data.streaming=true", "data.shuffle_buffer=200",
                              "data.bucket_batches=10", "data.tokenizer_sample=500", "model.embedding_size=16",
                              "model.encoder_hidden_size=16", "model.decoder_hidden_size=16", "model.latent_size=4",
                              "train.batch_size=16", "train.progress_bar=false", *extra])


def epoch_batches(split, special, epoch: int, skip: int = 0) -> list:
    return list(split.batches(16, special, seed=3, epoch=epoch, skip=skip))


def test_a_streamed_epoch_holds_every_sentence_once_in_bucketed_batches(corpus: Path) -> None:
    tokenizer, splits = load_splits(streaming_config(corpus), None)
    special = special_ids(tokenizer)
    train_split = splits["train"]
    assert len(train_split) == SIZES["train"] and len(splits["valid"]) == SIZES["valid"]
    batches = epoch_batches(train_split, special, epoch=0)
    streamed = Counter(tuple(row[1: length - 1].tolist()) for b in batches for row, length in zip(b.token_ids, b.lengths))
    in_file = Counter(tuple(ids) for ids in tokenizer((corpus / "train.txt").read_text().splitlines(),
                                                      add_special_tokens=False)["input_ids"])
    assert streamed == in_file  # every line exactly once (duplicate sentences as often as in the file)
    assert padding_share(batches) < 0.05  # bucketing inside each window keeps padding small

    again = epoch_batches(train_split, special, epoch=0)
    assert all(torch.equal(a.token_ids, b.token_ids) for a, b in zip(batches, again))  # deterministic
    next_epoch = epoch_batches(train_split, special, epoch=1)
    assert not all(torch.equal(a.token_ids, b.token_ids) for a, b in zip(batches, next_epoch))  # reshuffled
    resumed = epoch_batches(train_split, special, epoch=0, skip=5)
    assert len(resumed) == len(batches) - 5
    assert all(torch.equal(a.token_ids, b.token_ids) for a, b in zip(batches[5:], resumed))


def test_tokenizer_is_trained_on_the_sample_only(corpus: Path, tmp_path: Path) -> None:
    train_file = tmp_path / "train.txt"
    lines = (corpus / "train.txt").read_text().splitlines()
    train_file.write_text("\n".join(lines[:50] + ["zebraword appears only late"] + lines[50:]) + "\n")
    config = streaming_config(corpus, f"data.train_file={train_file}", f"data.valid_file={corpus / 'valid.txt'}",
                              "data.tokenizer_sample=50")
    tokenizer, _ = load_splits(config, None)
    assert "zebraword" not in tokenizer.get_vocab()
    config = streaming_config(corpus, f"data.train_file={train_file}", f"data.valid_file={corpus / 'valid.txt'}",
                              "data.tokenizer_sample=60")
    assert "zebraword" in load_splits(config, None)[0].get_vocab()


def test_streamed_training_runs_and_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    extra = ("train.eval_every=10", "train.word_dropout=0.2")
    train(streaming_config(corpus, "train.max_steps=30", *extra), tmp_path / "straight")
    train(streaming_config(corpus, "train.max_steps=20", *extra), tmp_path / "resumed")
    train(streaming_config(corpus, "train.max_steps=30", *extra), tmp_path / "resumed", resume=True)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert straight["state"]["step"] == resumed["state"]["step"] == 30  # stopped and resumed mid-epoch (57 batches)
    for name, weight in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], weight, rtol=0, atol=0)
    assert TextVAE.from_pretrained(str(tmp_path / "resumed")).config.latent_size == 4


def test_streaming_needs_text_files_and_a_valid_file(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(TextVAEError, match="data.streaming needs text files"):
        load_splits(load_config(None, ["data.streaming=true"]), None)
    only_train = tmp_path / "only"
    only_train.mkdir()
    (only_train / "train.txt").write_text((corpus / "train.txt").read_text())
    with pytest.raises(TextVAEError, match="needs a validation file"):
        load_splits(load_config(None, ["data.streaming=true", f"data.source={only_train}"]), None)

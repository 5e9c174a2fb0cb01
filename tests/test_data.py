"""The data pipeline: bucketed batching, collation, length policy, the embedded corpus and real corpora."""

from __future__ import annotations

import random

import pytest
from conftest import SHARED_DATA, batch_of

from textvae.config import DataConfig, TokenizerConfig
from textvae.data import BucketBatchSampler, iterate_batches, load_corpus, padding_share, prepare_split, prepare_texts
from textvae.data.tokenization import build_tokenizer, decode_ids, encode_texts, special_ids


def test_bucketing_keeps_similar_lengths_together_and_covers_every_sentence():
    rng = random.Random(0)
    lengths = [rng.randint(1, 60) for _ in range(1000)]
    sampler = BucketBatchSampler(lengths, batch_size=20, shuffle=True, seed=3)
    batches = sampler.batches(epoch=0)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert len(batches) == len(sampler) == 50
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert max(spreads) <= 3  # sorted buckets: at most a few lengths share a batch
    order = [min(lengths[i] for i in b) for b in batches]
    assert order != sorted(order)  # the buckets themselves come in a shuffled order


def test_bucketing_is_deterministic_per_epoch_and_differs_across_epochs():
    lengths = [random.Random(1).randint(1, 30) for _ in range(300)]
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=5)
    assert sampler.batches(2) == BucketBatchSampler(lengths, batch_size=16, seed=5).batches(2)
    assert sampler.batches(2) != sampler.batches(3)


def test_collate_wraps_in_bos_eos_and_pads():
    batch = batch_of([[5, 6], [7]])
    assert batch.token_ids.tolist() == [[1, 5, 6, 2], [1, 7, 2, 0]]
    assert batch.lengths.tolist() == [4, 3]
    assert batch.predicted_tokens == 3 + 2


def test_length_policy_drop_and_truncate_are_counted():
    corpus = ["a b c", "a b c d e f g", "", "   ", "a"]
    tokenizer = build_tokenizer(TokenizerConfig(), corpus)
    dropped = prepare_texts(corpus, tokenizer, max_length=4, length_policy="drop")
    assert dropped.texts == ["a b c", "a"]
    assert (dropped.report.blank, dropped.report.too_long_dropped, dropped.report.kept) == (2, 1, 2)
    truncated = prepare_texts(corpus, tokenizer, max_length=4, length_policy="truncate")
    assert [len(ids) for ids in truncated.token_ids] == [3, 4, 1] and truncated.report.truncated == 1
    assert truncated.predicted_tokens == 3 + 4 + 1 + 3


def test_word_tokenizer_round_trip_and_unknown_words():
    tokenizer = build_tokenizer(TokenizerConfig(kind="word"), ["the cat sat .", "the dog ran ."])
    ids = encode_texts(tokenizer, ["the zebra sat ."])[0]
    assert decode_ids(tokenizer, ids) == "the <unk> sat ."
    assert special_ids(tokenizer) == {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "unk_token_id": 3}
    assert decode_ids(tokenizer, [1, *ids, 2, 5, 5]) == "the <unk> sat ."  # stops at <eos>, drops <bos>


def test_a_special_token_written_in_the_text_keeps_its_id_and_leaves_no_gap():
    texts = ["the <unk> sat on the <unk> .", "<unk> <unk> ran .", "a cat ran ."]  # as in PTB
    tokenizer = build_tokenizer(TokenizerConfig(kind="word"), texts)
    ids = sorted(tokenizer.get_vocab().values())
    assert ids == list(range(len(ids)))
    assert special_ids(tokenizer)["unk_token_id"] == 3
    assert encode_texts(tokenizer, ["<unk> cat"])[0] == [3, tokenizer.get_vocab()["cat"]]
    # the other spellings are reserved too (README): read as their tokens, dropped or ended at by decoding
    vocab = tokenizer.get_vocab()
    written = encode_texts(tokenizer, ["a <bos> cat <pad> ran <eos> ."])[0]
    assert written == [vocab["a"], 1, vocab["cat"], 0, vocab["ran"], 2, vocab["."]]
    assert decode_ids(tokenizer, written) == "a cat ran"


def test_bpe_tokenizer_round_trip():
    texts = ["the cat sat on the mat .", "a dog ran to the park ."] * 20
    tokenizer = build_tokenizer(TokenizerConfig(kind="bpe", vocab_size=60), texts)
    for text in ["the cat ran to the mat .", "a park ."]:
        assert decode_ids(tokenizer, encode_texts(tokenizer, [text])[0]) == text


def test_embedded_corpus_loads_with_labels_and_batches_with_little_padding():
    corpus = load_corpus(DataConfig())
    assert set(corpus) == {"train", "valid", "test"}
    assert {"text", "topic", "tense", "number", "sentiment"} <= set(corpus["train"].column_names)
    tokenizer = build_tokenizer(TokenizerConfig(), corpus["train"]["text"])
    split = prepare_split(corpus["valid"], tokenizer, DataConfig())
    assert len(split) == len(split.labels["topic"]) == len(corpus["valid"])
    batches = list(iterate_batches(split, 32, special_ids(tokenizer), shuffle=True))
    assert sum(len(b.indices) for b in batches) == len(split)
    assert padding_share(batches) < 0.05


@pytest.mark.skipif(not (SHARED_DATA / "ptb").is_dir(), reason="../shared/data/ptb is absent (real corpora are "
                    "not part of the project)")
def test_penn_treebank_loads_whole_with_its_standard_vocabulary():
    settings = DataConfig(source=str(SHARED_DATA / "ptb"), max_length=100)
    corpus = load_corpus(settings)
    assert {name: len(split) for name, split in corpus.items()} == {"train": 42068, "valid": 3370, "test": 3761}
    tokenizer = build_tokenizer(TokenizerConfig(vocab_size=10100), corpus["train"]["text"])
    assert len(tokenizer) == 10002  # 9,998 words + <unk> <pad> <bos> <eos>
    assert sorted(tokenizer.get_vocab().values()) == list(range(10002))  # PTB's own "<unk>" is our <unk>
    test = prepare_split(corpus["test"], tokenizer, settings)
    assert test.predicted_tokens == 82430  # SOURCES.md: tokens + one <eos> per line

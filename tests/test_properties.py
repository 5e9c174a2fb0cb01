"""Property tests (hypothesis) over arbitrary unicode: tokenization round trips, a data pipeline that never crashes."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textvae.config import TokenizerConfig
from textvae.data import prepare_texts
from textvae.data.tokenization import decode_ids, encode_texts, train_tokenizer

# any unicode text on one line: everything but line and paragraph separators (a corpus line cannot hold them)
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
unicode_line = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=LINE_BREAKS), max_size=60)
# what the tokenizers split on: Unicode White_Space (Python's isspace also counts \x1c-\x1f)
TOKENIZER_SPACE = re.compile("[" + re.escape("".join(
    c for c in map(chr, range(0x3001)) if c.isspace() and c not in "\x1c\x1d\x1e\x1f")) + "]+")
# the special tokens' spellings are reserved: a corpus word spelled so reads as that token (README, Configuration)
RESERVED = re.compile("<pad>|<bos>|<eos>|<unk>")
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.lists(unicode_line.filter(lambda line: not RESERVED.search(line)), min_size=1, max_size=8)
       .filter(lambda lines: any(TOKENIZER_SPACE.sub("", l) for l in lines)))
def test_word_tokenizer_round_trips_every_line_it_was_trained_on(lines: list[str]) -> None:
    tokenizer = train_tokenizer(lines, TokenizerConfig(kind="word", vocab_size=10_000))
    for line, ids in zip(lines, encode_texts(tokenizer, lines)):
        words = [word for word in TOKENIZER_SPACE.split(line) if word]
        # every word kept, whitespace normalised (decoding strips what Python counts as space at the ends)
        assert decode_ids(tokenizer, ids) == " ".join(words).strip()


@PROPERTY
@given(st.lists(unicode_line.filter(lambda line: line.strip(" ") and not RESERVED.search(line)), min_size=1, max_size=6))
def test_bpe_tokenizer_round_trips_every_line_it_was_trained_on(lines: list[str]) -> None:
    tokenizer = train_tokenizer(lines, TokenizerConfig(kind="bpe", vocab_size=2_000))
    for line, ids in zip(lines, encode_texts(tokenizer, lines)):
        # reversible up to runs of spaces (Metaspace) and the ends decoding strips: tabs, no-break spaces
        # and every other character inside the line survive
        assert decode_ids(tokenizer, ids) == re.sub(" +", " ", line).strip()


@PROPERTY
@given(training=st.lists(unicode_line, min_size=1, max_size=5).filter(lambda lines: any(l.split() for l in lines)), texts=st.lists(unicode_line, max_size=12),
       max_length=st.integers(1, 8), policy=st.sampled_from(["drop", "truncate"]))
def test_the_data_pipeline_accounts_for_every_line_of_any_text(training, texts, max_length, policy) -> None:
    tokenizer = train_tokenizer(training, TokenizerConfig(kind="word", vocab_size=1_000))
    split = prepare_texts(texts, tokenizer, max_length, policy)
    report = split.report
    assert report.lines == len(texts)
    assert report.kept + report.blank + report.too_long_dropped == len(texts)
    assert report.kept == len(split) == len(split.texts)
    assert all(1 <= len(ids) <= max_length for ids in split.token_ids)
    assert report.blank == sum(1 for text in texts if not text.split())
    if policy == "truncate":
        assert report.too_long_dropped == 0

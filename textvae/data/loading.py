"""The one entry point from a run config to data: `load_splits` turns the data and tokenizer sections into a
tokenizer and tokenized splits (the train split a stream with data.streaming), and `train_batches` gives an
epoch of training batches from either kind of train split. The trainer calls these two and nothing else here."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from ..config import RunConfig
from ..errors import TextVAEError
from .batching import Batch, iterate_batches
from .sources import load_corpus
from .splits import TokenizedSplit, prepare_split, resolve_max_length
from .streaming import StreamingTrainSplit, load_streaming_splits
from .tokenization import build_tokenizer

logger = logging.getLogger("textvae")


def load_splits(config: RunConfig, tokenizer: PreTrainedTokenizerFast | None) -> tuple[PreTrainedTokenizerFast, dict[str, TokenizedSplit]]:
    """Load the corpus, build (or reuse) the tokenizer, and tokenize every split under the length policy
    (with data.streaming the train split stays a stream: data.streaming)."""
    if config.data.streaming:
        return load_streaming_splits(config.data, config.tokenizer, tokenizer)
    corpus = load_corpus(config.data)
    train_texts = corpus["train"].select_columns(["text"]).to_dict()["text"]
    if tokenizer is None:  # tokenizer.vocab_size auto is chosen here (tokenization.choose_vocabulary)
        tokenizer = build_tokenizer(config.tokenizer, train_texts)
    resolve_max_length(train_texts, tokenizer, config.data)  # data.max_length auto
    splits = {name: prepare_split(split, tokenizer, config.data) for name, split in corpus.items()}
    for name, split in splits.items():
        split.report.log(name, config.data, config.tokenizer.vocab_size)
    if len(splits["train"]) == 0:
        raise TextVAEError("the train split has no usable sentences (all blank or longer than "
                           f"data.max_length={config.data.max_length}); check the file or raise max_length")
    if "valid" not in splits or len(splits["valid"]) == 0:
        splits["valid"] = hold_out(splits["train"])
        logger.info(f"no valid split given: held out the last {len(splits['valid'])} train sentences")
    return tokenizer, splits


def run_tokenizer(run_dir: str | Path | None, key: str = "train.init_from") -> PreTrainedTokenizerFast | None:
    """The tokenizer saved in a run dir (a run started from another's weights indexes that vocabulary), or
    None without a run dir; `key` names the setting that gave the folder, for the error message."""
    if not run_dir:
        return None
    if not (Path(run_dir) / "tokenizer.json").is_file():
        raise TextVAEError(f"{key}: {run_dir} is not a textvae run dir (no tokenizer.json); give the "
                           "folder of a finished run")
    return PreTrainedTokenizerFast.from_pretrained(str(run_dir))


def train_batches(train: TokenizedSplit | StreamingTrainSplit, batch_size: int, special: dict[str, int], seed: int,
                  epoch: int, skip: int) -> Iterator[Batch]:
    """One epoch of shuffled, length-bucketed training batches, from memory or from a stream."""
    if isinstance(train, StreamingTrainSplit):
        return train.batches(batch_size, special, seed, epoch, skip)
    return iterate_batches(train, batch_size, special, shuffle=True, seed=seed, epoch=epoch, skip=skip)


def hold_out(train: TokenizedSplit, share: float = 0.05) -> TokenizedSplit:
    """Move the last `share` of train (at least one sentence) into a validation split."""
    count = max(1, int(len(train) * share))
    if count >= len(train):
        raise TextVAEError("the corpus is too small to hold out validation sentences; give a valid split")
    held = TokenizedSplit(train.texts[-count:], train.token_ids[-count:],
                          {k: v[-count:] for k, v in train.labels.items()})
    del train.texts[-count:], train.token_ids[-count:]
    for values in train.labels.values():
        del values[-count:]
    return held

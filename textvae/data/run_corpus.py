"""The corpus of a trained run, read back for evaluation: a split's lines (blank ones included) with their label
columns, and the train split a chunk at a time under the training length policy (never held whole); and the
check that tokenized sentences fit a model with a position limit, naming the first that does not."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from ..config import DataConfig
from ..errors import TextVAEError
from .sources import is_text_folder, load_corpus, split_name, text_files
from .splits import TokenizedSplit, prepare_texts
from .synthetic import FACTORS


def corpus_lines(data: DataConfig, split: str) -> tuple[list[str], dict[str, list]]:
    """The lines (blank ones included) of a split of the corpus `data` names, and its label columns (the synthetic
    corpus's factors; none for text files), one value per line. dev, validation and val name valid."""
    name = split_name(split)
    if data.train_file or is_text_folder(data.source):  # text files: read the one asked for, nothing else
        files = text_files(data)
        if name not in files:
            raise TextVAEError(f"split '{split}' not in the run's corpus (splits: {', '.join(files)}); pick one "
                               "of those, or score a text file with file=")
        return files[name].read_text(encoding="utf-8").splitlines(), {}
    corpus = load_corpus(data)
    if name not in corpus:
        raise TextVAEError(f"split '{split}' not in the run's corpus (splits: {', '.join(corpus)}); pick one of "
                           "those, or score a text file with file=")
    columns = corpus[name].select_columns(
        ["text", *[factor for factor in FACTORS if factor in corpus[name].column_names]]).to_dict()
    return columns.pop("text"), columns


def train_chunks(data: DataConfig, tokenizer, chunk: int = 10_000) -> Iterator[TokenizedSplit]:
    """The train split a chunk of sentences at a time, under the training length policy (it is the set the model
    was trained on): read straight from the file for text corpora (streamed or not), a chunk of rows at a time
    otherwise, so it is never held whole."""
    files = text_files(data) if data.train_file or is_text_folder(data.source) else None
    if files is not None:
        with open(files["train"], encoding="utf-8") as handle:
            lines = (line.rstrip("\n") for line in handle)
            while block := list(itertools.islice(lines, chunk)):
                yield prepare_texts(block, tokenizer, data.max_length, data.length_policy)
        return
    train = load_corpus(data)["train"]
    for rows in train.iter(batch_size=chunk):
        yield prepare_texts(rows["text"], tokenizer, data.max_length, data.length_policy)


def check_position_limit(encoded: TokenizedSplit | list[list[int]], limit: int | None, where: str | None = None) -> None:
    """Refuse, naming it, a sentence longer than `limit` positions (with its <eos>; None: no limit): by its line
    when `encoded` is a split read from `where` (a file or a corpus split), else by its place in the list."""
    if limit is None:
        return
    token_ids = encoded.token_ids if isinstance(encoded, TokenizedSplit) else encoded
    for index, ids in enumerate(token_ids):
        if len(ids) + 1 > limit:
            place = (f"{where} line {encoded.line_of(index)}" if where and isinstance(encoded, TokenizedSplit)
                     else f"sentence {index + 1}")
            raise TextVAEError(f"{place} has {len(ids) + 1} tokens with <eos>, more than this model's "
                               f"model.max_positions ({limit}); shorten it or split it in two")

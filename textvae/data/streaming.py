"""Training on a corpus bigger than memory: the train file is read as a stream, never held whole.

With `data.streaming: true`, the train split is a text file read through `datasets` streaming: lines
pass a shuffle buffer (`data.shuffle_buffer` lines), are tokenized a window at a time
(`data.bucket_batches` batches' worth), bucketed by length inside the window and yielded as
batches in a shuffled order. Memory holds one buffer and one window whatever the file's size. The
tokenizer is trained on the first `data.tokenizer_sample` lines. Valid and test files are small and
load as usual. An epoch is one pass over the file; batches are deterministic from (seed, epoch),
so resuming mid-epoch replays the stream and skips the batches already trained on.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from ..config import DataConfig, TokenizerConfig
from ..errors import TextVAEError
from .batching import Batch, BucketBatchSampler, collate
from .sources import text_files
from .splits import TokenizedSplit, prepare_split, prepare_texts, resolve_max_length
from .tokenization import build_tokenizer


class StreamingTrainSplit:
    """The train split of a streamed corpus: batches on demand, a line count, nothing else in memory."""

    def __init__(self, path: Path, tokenizer, settings: DataConfig):
        self.path = path
        self.tokenizer = tokenizer
        self.settings = settings
        self.lines = count_nonblank_lines(path)

    def __len__(self) -> int:
        """Non-blank lines (sentences dropped by the length policy are only found while streaming)."""
        return self.lines

    def texts(self, seed: int, epoch: int) -> Iterator[str]:
        """The file's lines in the epoch's shuffled order (a buffer shuffle, as `datasets` streams do)."""
        import datasets

        stream = datasets.load_dataset("text", data_files=str(self.path), split="train", streaming=True)
        return (row["text"] for row in stream.shuffle(seed=seed * 100_003 + epoch,
                                                      buffer_size=self.settings.shuffle_buffer))

    def batches(self, batch_size: int, special: dict[str, int], seed: int = 0, epoch: int = 0,
                skip: int = 0) -> Iterator[Batch]:
        """Length-bucketed batches of one epoch, window by window; the first `skip` are passed over."""
        lines = self.texts(seed, epoch)
        window_size = batch_size * self.settings.bucket_batches
        produced = 0
        for window_number in itertools.count():
            window = list(itertools.islice(lines, window_size))
            if not window:
                return
            split = prepare_texts(window, self.tokenizer, self.settings.max_length, self.settings.length_policy)
            sampler = BucketBatchSampler([len(ids) for ids in split.token_ids], batch_size, True,
                                         seed * 100_003 + epoch * 1_009 + window_number)
            for indices in sampler.batches():
                produced += 1
                if produced > skip:
                    yield collate([split.token_ids[i] for i in indices], indices, special["bos_token_id"],
                                  special["eos_token_id"], special["pad_token_id"])


def count_nonblank_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def first_lines(path: Path, count: int) -> list[str]:
    """Up to `count` non-blank lines from the top of a text file (the tokenizer's training sample)."""
    with open(path, encoding="utf-8") as handle:
        return list(itertools.islice((line.strip() for line in handle if line.strip()), count))


def load_streaming_splits(settings: DataConfig, tokenizer_settings: TokenizerConfig, tokenizer) -> tuple[object, dict]:
    """The tokenizer (trained on a sample of the train file unless given) and the splits of a streamed corpus."""
    if settings.source is None and not settings.train_file:
        raise TextVAEError("data.streaming needs text files: set data.train_file (and valid_file) or data.source "
                           "to a folder with train.txt and valid.txt")
    files = text_files(settings)
    if "valid" not in files:
        raise TextVAEError("data.streaming needs a validation file (a streamed train split cannot be held out "
                           "from); set data.valid_file or add valid.txt to the data.source folder")
    sample = first_lines(files["train"], settings.tokenizer_sample)
    if tokenizer is None:
        tokenizer = build_tokenizer(tokenizer_settings, sample)
    resolve_max_length(sample, tokenizer, settings)  # data.max_length auto: chosen from the same sample
    import datasets

    small = datasets.load_dataset("text", data_files={name: str(path) for name, path in files.items() if name != "train"})
    splits: dict[str, TokenizedSplit | StreamingTrainSplit] = {
        name: prepare_split(split, tokenizer, settings) for name, split in small.items()}
    for name, split in splits.items():
        split.report.log(name, settings, tokenizer_settings.vocab_size)
    splits["train"] = StreamingTrainSplit(files["train"], tokenizer, settings)
    return tokenizer, splits

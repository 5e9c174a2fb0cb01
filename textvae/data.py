"""Corpora in, padded batches out: loading through `datasets`, length policy, length-bucketed batching.

`datasets` (and huggingface_hub) load inside the functions that read corpora, so commands that only
use a trained model never import them.

Sources: text files (one sentence a line; explicit paths or a folder with train.txt/valid.txt/test.txt),
a dataset saved with `save_to_disk`, a hub dataset name (needs a network), or, when nothing is given,
the embedded synthetic corpus (`textvae.synthetic`), whose factor labels come along as columns.
"""

from __future__ import annotations

import codecs
import math
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import DataConfig
from .errors import TextVAEError
from .synthetic import FACTORS, generate_corpus
from .tokenization import encode_texts

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"validation": "valid", "dev": "valid", "val": "valid"}
NO_LIMIT = 10**9  # a max_length no sentence reaches: evaluation's (no length policy)


# ---- reading and checking text files -------------------------------------------------------------

def check_text_file(path: Path, what: str) -> None:
    """Fail with one line if `path` is missing, empty or not UTF-8 (naming the first bad line).
    Reads the file in blocks, so checking a corpus bigger than memory is fine."""
    if not path.exists():
        raise TextVAEError(f"{what}: file not found: {path}; check the path (one sentence per line, UTF-8)")
    if not path.is_file():
        raise TextVAEError(f"{what}: {path} is a folder, not a text file")
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before, has_text = 0, False
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            try:
                has_text |= bool(decoder.decode(block).strip())
            except UnicodeDecodeError as error:
                line = lines_before + error.object[: error.start].count(b"\n") + 1  # object: carried bytes + block
                raise TextVAEError(f"{what}: {path} line {line} is not valid UTF-8 (byte 0x{error.object[error.start]:02x}); "
                                   "re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
            lines_before += block.count(b"\n")
    if not has_text:
        raise TextVAEError(f"{what}: {path} is empty; it needs one sentence per line")


def text_files(settings: DataConfig) -> dict[str, Path]:
    """The text file of each split: explicit *_file settings, or train/valid/test.txt inside `source`."""
    explicit = {"train": settings.train_file, "valid": settings.valid_file, "test": settings.test_file}
    if any(explicit.values()):
        if not settings.train_file:
            raise TextVAEError("data.train_file is required when data.valid_file or data.test_file is given")
        files = {split: Path(path) for split, path in explicit.items() if path}
    else:
        folder = Path(settings.source)
        files = {split: folder / f"{split}.txt" for split in SPLITS if (folder / f"{split}.txt").exists()}
        if "train" not in files:
            raise TextVAEError(f"data.source: folder {folder} has no train.txt; put train.txt (and valid.txt, "
                               "test.txt) there, or set data.train_file")
    for split, path in files.items():
        check_text_file(path, f"{split} split")
    return files


def is_text_folder(source: str | None) -> bool:
    """True for a data.source folder of text files (train.txt, ...), not a dataset written by save_to_disk."""
    return source is not None and Path(source).is_dir() and not is_saved_dataset(Path(source))


def is_saved_dataset(folder: Path) -> bool:
    """True for a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return (folder / "dataset_dict.json").exists() or (folder / "dataset_info.json").exists()


# ---- loading corpora ------------------------------------------------------------------------------

def synthetic_corpus(seed: int) -> datasets.DatasetDict:
    """The embedded corpus as a DatasetDict with a `text` column and one column per latent factor."""
    import datasets

    corpus = generate_corpus(seed=seed)
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows) for split, rows in corpus.items()})


def load_saved(folder: Path) -> datasets.DatasetDict:
    """A dataset written with save_to_disk; a single Dataset becomes the train split."""
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


@contextmanager
def offline_mode_from_env():
    """Honour HF_HUB_OFFLINE / HF_DATASETS_OFFLINE even when set after `datasets` was imported (no network, no retries)."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    import datasets
    import huggingface_hub

    if not any(os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE") for name in names):
        yield
        return
    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def load_hub(name: str, config_name: str | None) -> datasets.DatasetDict:
    """A dataset from the Hugging Face hub; offline this fails with the local alternatives named."""
    import datasets

    try:
        with offline_mode_from_env():
            loaded = datasets.load_dataset(name, config_name)
    except Exception as error:  # network, missing dataset, bad config: all end the same way for the user
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise TextVAEError(
            f"data.source '{name}' is not a local folder and could not be loaded from the hub ({reason}); "
            "offline, use a folder with train.txt/valid.txt/test.txt, data.train_file/valid_file/test_file, "
            "or a folder written by save_to_disk") from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def load_corpus(settings: DataConfig) -> datasets.DatasetDict:
    """The corpus the settings name, as a DatasetDict with splits train/valid(/test) and a `text` column."""
    import datasets

    if settings.source is None and not settings.train_file:
        return synthetic_corpus(settings.synthetic_seed)
    source = Path(settings.source) if settings.source else None
    if source is not None and source.is_dir() and is_saved_dataset(source):
        corpus = load_saved(source)
    elif settings.train_file or (source is not None and source.is_dir()):
        files = text_files(settings)
        corpus = datasets.load_dataset("text", data_files={split: str(path) for split, path in files.items()})
    elif source is not None and (source.exists() or settings.source.startswith((".", "/", "~"))):
        raise TextVAEError(f"data.source: {source} is not a folder; give a folder with train.txt/valid.txt/"
                           "test.txt, or set data.train_file to a text file")
    else:
        corpus = load_hub(settings.source, settings.hub_config)
    return standardise(corpus, settings.text_column)


def standardise(corpus: datasets.DatasetDict, text_column: str) -> datasets.DatasetDict:
    """Rename splits to train/valid/test and the text column to `text`, checking both exist."""
    import datasets

    renamed = datasets.DatasetDict({SPLIT_ALIASES.get(name, name): split for name, split in corpus.items()})
    if "train" not in renamed:
        raise TextVAEError(f"the corpus has no train split (splits: {', '.join(renamed)}); name one 'train'")
    for name, split in renamed.items():
        if text_column not in split.column_names:
            raise TextVAEError(f"{name} split has no column '{text_column}' (columns: {', '.join(split.column_names)}); "
                               "set data.text_column")
        if text_column != "text":
            renamed[name] = split.rename_column(text_column, "text")
    return renamed


# ---- tokenized splits -----------------------------------------------------------------------------

@dataclass
class SplitReport:
    """What the length policy and cleaning did to a split; logged so nothing vanishes silently."""

    lines: int = 0
    kept: int = 0
    blank: int = 0
    too_long_dropped: int = 0
    truncated: int = 0

    def describe(self, name: str) -> str:
        return (f"{name}: {self.kept} sentences kept of {self.lines} lines "
                f"({self.blank} blank, {self.too_long_dropped} too long dropped, {self.truncated} truncated)")


@dataclass
class TokenizedSplit:
    """A split ready for batching: the kept texts, their ids (no specials) and any label columns."""

    texts: list[str]
    token_ids: list[list[int]]
    labels: dict[str, list] = field(default_factory=dict)
    report: SplitReport = field(default_factory=SplitReport)
    rows: list[int] = field(default_factory=list)  # each sentence's row in its source (0-based), when known

    def line_of(self, index: int) -> int:
        """The 1-based line (row of the source) sentence `index` came from; its 1-based place if unknown."""
        return self.rows[index] + 1 if index < len(self.rows) else index + 1

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def predicted_tokens(self) -> int:
        """Tokens a model predicts over this split: every word plus one <eos> per sentence."""
        return sum(len(ids) + 1 for ids in self.token_ids)


def prepare_texts(texts: list[str], tokenizer, max_length: int, length_policy: str,
                  labels: dict[str, list] | None = None) -> TokenizedSplit:
    """Drop blank lines, tokenize, and apply the length policy (drop or truncate), counting each."""
    report = SplitReport(lines=len(texts))
    keep = [i for i, text in enumerate(texts) if text is not None and text.strip()]
    report.blank = len(texts) - len(keep)
    stripped = [texts[i].strip() for i in keep]
    encoded = encode_texts(tokenizer, stripped)
    kept_rows, kept_ids = [], []
    for row, ids in zip(keep, encoded):
        if not ids:
            report.blank += 1
            continue
        if len(ids) > max_length:
            if length_policy == "drop":
                report.too_long_dropped += 1
                continue
            ids = ids[:max_length]
            report.truncated += 1
        kept_rows.append(row)
        kept_ids.append(ids)
    report.kept = len(kept_ids)
    kept_labels = {name: [values[row] for row in kept_rows] for name, values in (labels or {}).items()}
    return TokenizedSplit([texts[row].strip() for row in kept_rows], kept_ids, kept_labels, report, kept_rows)


def prepare_split(split: datasets.Dataset, tokenizer, settings: DataConfig | None) -> TokenizedSplit:
    """A tokenized split from a dataset split, keeping the synthetic factor columns as labels. With
    `settings` the training length policy applies; with None every sentence is kept whole (evaluation
    scores every line it is given)."""
    columns = split.select_columns(["text", *[name for name in FACTORS if name in split.column_names]]).to_dict()
    texts = columns.pop("text")
    if settings is None:
        return prepare_texts(texts, tokenizer, NO_LIMIT, "truncate", columns)
    return prepare_texts(texts, tokenizer, settings.max_length, settings.length_policy, columns)


# ---- batching -------------------------------------------------------------------------------------

@dataclass
class Batch:
    """Padded sentences: token_ids = <bos> w1 .. wn <eos> <pad>..., lengths count <bos> and <eos>."""

    token_ids: torch.Tensor  # (batch, max_len) long
    lengths: torch.Tensor  # (batch,) long, on CPU (packing wants it there)
    indices: list[int]  # positions of these sentences in their split

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.token_ids.to(device, non_blocking=True), self.lengths, self.indices)

    @property
    def predicted_tokens(self) -> int:
        return int(self.lengths.sum()) - len(self.indices)


def collate(token_ids: list[list[int]], indices: list[int], bos_id: int, eos_id: int, pad_id: int) -> Batch:
    """Wrap each sentence in <bos>/<eos> and right-pad to the longest."""
    lengths = [len(ids) + 2 for ids in token_ids]
    padded = torch.full((len(token_ids), max(lengths)), pad_id, dtype=torch.long)
    for row, ids in enumerate(token_ids):
        padded[row, : lengths[row]] = torch.tensor([bos_id, *ids, eos_id], dtype=torch.long)
    return Batch(padded, torch.tensor(lengths, dtype=torch.long), indices)


class BucketBatchSampler:
    """Batches of similar-length sentences, in a shuffled order; deterministic from (seed, epoch).

    Sentences are shuffled, stably sorted by length (so equal lengths mix randomly), cut into batches,
    and the batches shuffled: padding stays small and every epoch sees different batches.
    """

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool = True, seed: int = 0):
        self.lengths = lengths
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def batches(self, epoch: int = 0) -> list[list[int]]:
        """All batches of one epoch, as lists of sentence positions."""
        order = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 100_003 + epoch)
        if self.shuffle:
            rng.shuffle(order)
        order.sort(key=lambda i: self.lengths[i])
        batches = [order[i: i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        return batches


def iterate_batches(split: TokenizedSplit, batch_size: int, special: dict[str, int], shuffle: bool = False,
                    seed: int = 0, epoch: int = 0, skip: int = 0) -> Iterator[Batch]:
    """Padded batches of a split (bucketed by length); `skip` resumes part-way through an epoch."""
    sampler = BucketBatchSampler([len(ids) for ids in split.token_ids], batch_size, shuffle, seed)
    for indices in sampler.batches(epoch)[skip:]:
        yield collate([split.token_ids[i] for i in indices], indices, special["bos_token_id"],
                      special["eos_token_id"], special["pad_token_id"])


def padding_share(batches: list[Batch]) -> float:
    """Share of positions in the batches that are padding (reported by the speed benchmark)."""
    total = sum(b.token_ids.numel() for b in batches)
    real = sum(int(b.lengths.sum()) for b in batches)
    return 1.0 - real / total if total else 0.0

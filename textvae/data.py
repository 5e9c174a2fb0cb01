"""Corpora in, padded batches out: loading through `datasets`, length policy, length-bucketed batching.

`datasets` (and huggingface_hub) load inside the functions that read corpora, so commands that only
use a trained model never import them.

Sources: text files (one sentence a line; explicit paths or a folder with train.txt/valid.txt/test.txt),
a dataset saved with `save_to_disk`, a hub dataset name (needs a network), or, when nothing is given,
the embedded synthetic corpus (`textvae.synthetic`), whose factor labels come along as columns.
"""

from __future__ import annotations

import codecs
import logging
import math
import os
import random
import socket
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import AUTO, DataConfig
from .errors import TextVAEError
from .synthetic import DEFAULT_SPLIT_SIZES, FACTORS, generate_corpus
from .tokenization import encode_texts

logger = logging.getLogger("textvae")

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"validation": "valid", "dev": "valid", "val": "valid"}
UNKNOWN_WARNING = 0.05  # warn when more than this share of a split's tokens are words outside the vocabulary
LOST_WARNING = 0.01  # warn when more than this share of a split's lines are dropped or truncated for their length


def split_name(name: str) -> str:
    """The canonical name of a split: validation, dev and val are valid."""
    return SPLIT_ALIASES.get(name, name)
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
        state = "has only blank lines" if path.stat().st_size else "is empty"
        raise TextVAEError(f"{what}: {path} {state}; it needs one sentence per line")


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

def synthetic_corpus(seed: int, train_size: int = DEFAULT_SPLIT_SIZES["train"]) -> datasets.DatasetDict:
    """The embedded corpus as a DatasetDict with a `text` column and one column per latent factor; `train_size`
    sentences in its train split (each split has a seed of its own: valid and test do not depend on it)."""
    import datasets

    corpus = generate_corpus(seed=seed, sizes={**DEFAULT_SPLIT_SIZES, "train": train_size})
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows) for split, rows in corpus.items()})


def load_saved(folder: Path) -> datasets.DatasetDict:
    """A dataset written with save_to_disk; a single Dataset becomes the train split."""
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


HUB_CHECK_SECONDS = 3.0  # how long the quick look for the hub waits before textvae works offline


def hub_reachable(timeout: float = HUB_CHECK_SECONDS) -> bool:
    """True if a TCP connection to the hub's host (HF_ENDPOINT, default huggingface.co) opens within
    `timeout` seconds. Without this look, `datasets` spends half a minute retrying (printing each retry)
    before it gives up on a machine with no network."""
    import huggingface_hub

    url = urllib.parse.urlparse(huggingface_hub.constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:  # no DNS, refused, unreachable, timed out
        return False


def offline_requested() -> bool:
    """HF_HUB_OFFLINE or HF_DATASETS_OFFLINE set to 1/on/yes/true in the environment."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    return any(os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE") for name in names)


@contextmanager
def offline_mode(offline: bool):
    """`datasets` and `huggingface_hub` offline (cache only: no network, no retries) while the block runs,
    even though their settings were read from the environment when they were imported."""
    import datasets
    import huggingface_hub

    if not offline:
        yield
        return
    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def load_hub(name: str, config_name: str | None) -> datasets.DatasetDict:
    """A dataset from the Hugging Face hub. When HF_HUB_OFFLINE is set, or a quick look finds the hub out of
    reach, only the local `datasets` cache is read, so no network means one line at once, not retries."""
    import datasets
    import huggingface_hub

    offline = offline_requested() or not hub_reachable()
    try:
        with offline_mode(offline):
            loaded = datasets.load_dataset(name, config_name)
    except Exception as error:  # network, missing dataset, bad config: all end the same way for the user
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        if offline:  # the cache had no copy: the reason would only repeat that the hub is offline
            why = ("HF_HUB_OFFLINE is set" if offline_requested() else
                   f"the hub ({huggingface_hub.constants.ENDPOINT}) cannot be reached")
            hub = f"as a hub dataset name it is not in the local cache and {why}"
        else:
            hub = f"as a hub dataset name it could not be loaded ({reason})"
        raise TextVAEError(
            f"data.source '{name}': no such local folder (from {Path.cwd()}), and {hub}; give the path of a folder "
            "with train.txt/valid.txt/test.txt, set data.train_file/valid_file/test_file, or give a folder written "
            "by save_to_disk") from None
    if not isinstance(loaded, datasets.DatasetDict):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded


def looks_like_a_path(source: str) -> bool:
    """True for a data.source that can only be meant as a local path, never a hub name ('owner/name' or
    'name'): it starts with . / ~ or a drive letter, ends with /, has a backslash, more than one '/', a file
    extension, or a first part that is a local folder."""
    if source.startswith((".", "/", "~")) or source.endswith("/") or "\\" in source or source.count("/") > 1:
        return True
    if "/" in source and Path(source).parent.is_dir():  # data/kjv where data/ is a local folder
        return True
    if len(source) > 1 and source[1] == ":":  # C:...
        return True
    return Path(source).suffix.lower() in (".txt", ".text", ".csv", ".tsv", ".json", ".jsonl", ".parquet", ".arrow")


def load_corpus(settings: DataConfig) -> datasets.DatasetDict:
    """The corpus the settings name, as a DatasetDict with splits train/valid(/test) and a `text` column."""
    import datasets

    if settings.source is None and not settings.train_file:
        return synthetic_corpus(settings.synthetic_seed, settings.synthetic_train_size)
    source = Path(settings.source) if settings.source else None
    if source is not None and source.is_dir() and is_saved_dataset(source):
        corpus = load_saved(source)
    elif settings.train_file or (source is not None and source.is_dir()):
        files = text_files(settings)
        corpus = datasets.load_dataset("text", data_files={split: str(path) for split, path in files.items()})
    elif source is not None and source.exists():
        raise TextVAEError(f"data.source: {source} is a file, not a folder; give the folder that holds train.txt "
                           f"(and valid.txt, test.txt), or set data.train_file={source}")
    elif source is not None and looks_like_a_path(settings.source):
        raise TextVAEError(f"data.source: no such folder or file: {settings.source} (from {Path.cwd()}); check the "
                           "path, or give a folder with train.txt/valid.txt/test.txt")
    else:
        corpus = load_hub(settings.source, settings.hub_config)
    return standardise(corpus, settings.text_column)


def standardise(corpus: datasets.DatasetDict, text_column: str) -> datasets.DatasetDict:
    """Rename splits to train/valid/test and the text column to `text`, checking both exist."""
    import datasets

    renamed = datasets.DatasetDict({split_name(name): split for name, split in corpus.items()})
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
    tokens: int = 0  # tokens of the kept sentences (no <bos>/<eos>)
    unknown: int = 0  # ... of them <unk>
    written_unknown: int = 0  # ... of those written as <unk> in the text (PTB marks rare words so)

    def describe(self, name: str) -> str:
        return (f"{name}: {self.kept} sentences kept of {self.lines} lines "
                f"({self.blank} blank, {self.too_long_dropped} too long dropped, {self.truncated} truncated)")

    @property
    def out_of_vocabulary(self) -> int:
        """<unk> tokens the vocabulary made (words it lacks), not counting <unk> written in the text."""
        return self.unknown - self.written_unknown

    def describe_unknown(self, name: str) -> str:
        """One line with the share of <unk> tokens, e.g. 'train: <unk> is 1.00% of the 792,185 tokens'."""
        share = self.unknown / self.tokens if self.tokens else 0.0
        line = f"{name}: <unk> is {share:.2%} of the {self.tokens:,} tokens"
        if self.written_unknown:
            made = self.out_of_vocabulary / self.tokens
            line += f" ({self.written_unknown:,} written <unk> in the text, {made:.2%} words outside the vocabulary)"
        return line

    def warnings(self, name: str, settings: DataConfig, vocab_size: int | str | None = None) -> list[str]:
        """What looks wrong with the split for training: many words outside the vocabulary, many lines
        dropped or cut for their length. Each message says which setting to change."""
        found = []
        if self.tokens and self.out_of_vocabulary / self.tokens > UNKNOWN_WARNING:
            size = f" (now {vocab_size})" if vocab_size is not None else ""
            found.append(f"{name}: {self.out_of_vocabulary / self.tokens:.1%} of the tokens became <unk>: raise "
                         f"tokenizer.vocab_size{size} or set it to auto (auto: raise tokenizer.vocab_coverage), use tokenizer.split: "
                         "punctuation if punctuation sticks to words (\"light.\"; configs/corpus.yaml does both), "
                         "or train on more text")
        lost = self.too_long_dropped + self.truncated
        if self.lines and lost / self.lines > LOST_WARNING:
            what = "dropped" if self.too_long_dropped else "truncated"
            found.append(f"{name}: {lost:,} of {self.lines:,} lines ({lost / self.lines:.1%}) were {what} for being "
                         f"longer than data.max_length={settings.max_length} tokens: raise data.max_length or "
                         "set it to auto")
        return found

    def log(self, name: str, settings: DataConfig, vocab_size: int | str | None = None) -> None:
        """Log what became of the split's lines and how many tokens are <unk>; warn when either is high."""
        logger.info(self.describe(name))
        logger.info(self.describe_unknown(name))
        for message in self.warnings(name, settings, vocab_size):
            logger.warning("warning: " + message)


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
    """Drop blank lines, tokenize, and apply the length policy (drop or truncate), counting each, and
    count the <unk> tokens of the kept sentences."""
    if max_length == AUTO:
        raise TextVAEError("data.max_length is auto, which training resolves from the train split; give a number")
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
    unk = getattr(tokenizer, "unk_token_id", None)
    report.tokens = sum(len(ids) for ids in kept_ids)
    report.unknown = sum(ids.count(unk) for ids in kept_ids) if unk is not None else 0
    report.written_unknown = min(report.unknown, sum(texts[row].count("<unk>") for row in kept_rows))
    kept_labels = {name: [values[row] for row in kept_rows] for name, values in (labels or {}).items()}
    return TokenizedSplit([texts[row].strip() for row in kept_rows], kept_ids, kept_labels, report, kept_rows)


def choose_max_length(lengths: list[int], coverage: float) -> int:
    """data.max_length auto: the shortest limit under which `coverage` of the (non-blank) lines fit whole.
    99.9% by default: the rare very long line (a list, a run-on verse) would otherwise set the padding of
    its batches and the memory of training, and dropping one line in a thousand costs nothing."""
    ordered = sorted(length for length in lengths if length > 0)
    if not ordered:
        return 1
    return ordered[max(0, math.ceil(coverage * len(ordered)) - 1)]


def resolve_max_length(texts: list[str], tokenizer, settings: DataConfig) -> None:
    """Replace data.max_length auto with the length chosen from the train texts (choose_max_length), and log it."""
    if settings.max_length != AUTO:
        return
    lengths = [len(ids) for ids in encode_texts(tokenizer, [text.strip() for text in texts if text and text.strip()])]
    settings.max_length = choose_max_length(lengths, settings.length_coverage)
    fit = sum(length <= settings.max_length for length in lengths)
    action = "dropped" if settings.length_policy == "drop" else "truncated"
    logger.info(f"data.max_length auto: {settings.max_length} tokens, the shortest limit under which "
                f"{settings.length_coverage:.1%} of the train split's {len(lengths):,} lines fit whole ({fit:,} do; the "
                f"longest has {max(lengths, default=0)} tokens; longer lines are {action}: data.length_policy; a number "
                "in data.max_length sets the limit instead)")


def prepare_split(split: datasets.Dataset, tokenizer, settings: DataConfig) -> TokenizedSplit:
    """A tokenized split from a dataset split under the training length policy, keeping the synthetic factor
    columns as labels (evaluation tokenizes with no length policy: api.TextVAEPipeline.corpus_split)."""
    columns = split.select_columns(["text", *[name for name in FACTORS if name in split.column_names]]).to_dict()
    texts = columns.pop("text")
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

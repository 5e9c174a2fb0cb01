"""Corpora in: text files, folders of them, datasets saved with `save_to_disk`, hub datasets, and the embedded
synthetic corpus, each read through `datasets` as a DatasetDict with train/valid(/test) splits and a `text`
column.

`datasets` (and huggingface_hub) load inside the functions that read corpora, so commands that only
use a trained model never import them.

Sources: text files (one sentence a line; explicit paths or a folder with train.txt/valid.txt/test.txt),
a dataset saved with `save_to_disk`, a hub dataset name (needs a network), or, when nothing is given,
the embedded synthetic corpus (`textvae.data.synthetic`), whose factor labels come along as columns.
"""

from __future__ import annotations

import codecs
import os
import socket
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

from ..config import DataConfig
from ..errors import TextVAEError
from .synthetic import DEFAULT_SPLIT_SIZES, generate_corpus

SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"validation": "valid", "dev": "valid", "val": "valid"}


def split_name(name: str) -> str:
    """The canonical name of a split: validation, dev and val are valid."""
    return SPLIT_ALIASES.get(name, name)


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

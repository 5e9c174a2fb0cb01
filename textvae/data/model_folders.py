"""Local Hugging Face model folders (model.pretrained_encoder, model.pretrained_decoder, tokenizer.kind
pretrained): their config.json and their tokenizer, read from disk alone (nothing is downloaded), with one
line naming the config key when a folder is missing or holds no model."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from ..errors import TextVAEError


def read_folder_config(folder: str, key: str):
    """The Hugging Face config in `folder`, or one line naming `key` when the folder is missing or not a model."""
    path = Path(folder)
    if not path.is_dir():
        raise TextVAEError(f"{key}: folder not found: {path}; put a local copy of a Hugging Face model there "
                           "(config.json + weights)")
    if not (path / "config.json").is_file():
        raise TextVAEError(f"{key}: {path} has no config.json, so it is not a Hugging Face model folder; "
                           "save a model there with save_pretrained")
    from transformers import AutoConfig  # the Auto classes load only for pretrained runs

    try:
        return AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise TextVAEError(f"{key}: {path}/config.json cannot be read ({str(error).splitlines()[0][:160]})") from None


def read_tokenizer_json(path: Path) -> Tokenizer:
    """The `tokenizers.Tokenizer` saved in a tokenizer.json, or one clear line if it cannot be read."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for unreadable files
        raise TextVAEError(f"tokenizer file {path}: not a valid tokenizer.json ({str(error).splitlines()[0]})") from None


def folder_tokenizer(folder: str | Path, key: str = "tokenizer.path") -> Tokenizer:
    """The tokenizer of a local Hugging Face model folder: its tokenizer.json, or else the fast tokenizer
    transformers builds from the folder's vocabulary files (vocab.txt, vocab.json + merges.txt, ...).
    `key` names the config key that gave the folder, for the error message. Nothing is downloaded."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TextVAEError(f"{key}: folder not found: {folder}; put a local copy of the Hugging Face model there")
    if (folder / "tokenizer.json").is_file():
        return read_tokenizer_json(folder / "tokenizer.json")
    from transformers import AutoTokenizer  # only for folders that ship vocabulary files alone

    try:
        converted = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        return Tokenizer.from_str(converted.backend_tokenizer.to_str())
    except (OSError, ValueError, AttributeError, TypeError) as error:
        raise TextVAEError(f"{key}: {folder} holds no tokenizer transformers can read (tokenizer.json or "
                           f"vocabulary files): {str(error).splitlines()[0][:160]}") from None

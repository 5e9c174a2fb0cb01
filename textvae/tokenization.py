"""Tokenizers built with `tokenizers`: word-level or BPE trained on the train split, a given tokenizer.json, or
the tokenizer of a local Hugging Face model folder (a pretrained decoder reads its own vocabulary).

Every tokenizer carries the four special tokens the model relies on; trained ones put them first,
so <pad>=0, <bos>=1, <eos>=2, <unk>=3. Tokenizers are wrapped in a transformers fast tokenizer so
that they save beside the model and load back with `from_pretrained`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from .config import TokenizerConfig
from .errors import TextVAEError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


def wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """A transformers fast tokenizer around a `tokenizers.Tokenizer`, special tokens named."""
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK)


def new_tokenizer(kind: str, lowercase: bool) -> Tokenizer:
    """An untrained word-level (whitespace-separated words) or BPE (Metaspace, reversible) tokenizer."""
    if kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    else:
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    return tokenizer


def check_tokenizer_section(settings: TokenizerConfig) -> None:
    """Refuse a vocabulary too small for the special tokens before any data is read."""
    if settings.kind in ("word", "bpe") and settings.vocab_size <= len(SPECIAL_TOKENS):
        raise TextVAEError(f"config key tokenizer.vocab_size: {settings.vocab_size} leaves no room for words, as it "
                           f"counts the {len(SPECIAL_TOKENS)} special tokens {' '.join(SPECIAL_TOKENS)}; use at least "
                           f"{len(SPECIAL_TOKENS) + 1} (10000 is the default)")


def train_tokenizer(texts: Iterable[str], settings: TokenizerConfig) -> PreTrainedTokenizerFast:
    """Learn a vocabulary from `texts` (the train split) with the settings' size and frequency limits."""
    tokenizer = new_tokenizer(settings.kind, settings.lowercase)
    if settings.kind == "word":
        trainer = trainers.WordLevelTrainer(vocab_size=settings.vocab_size, min_frequency=settings.min_frequency,
                                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    else:
        trainer = trainers.BpeTrainer(vocab_size=settings.vocab_size, min_frequency=settings.min_frequency,
                                      special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    if settings.kind == "word":
        tokenizer.model = compact_word_vocabulary(tokenizer.get_vocab())
    if tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise TextVAEError("the train split yielded no vocabulary (every word rarer than "
                           f"tokenizer.min_frequency={settings.min_frequency}?); lower min_frequency or add text")
    return wrap(tokenizer)


def compact_word_vocabulary(vocab: dict[str, int]) -> models.WordLevel:
    """Special tokens at 0..3, then the words in their trained order, with no gaps in the ids.

    The word-level trainer counts a special token that occurs as a word in the text (PTB writes
    `<unk>` for rare words) as a word of its own, leaving the special token's reserved id unused.
    """
    words = [token for token in sorted(vocab, key=vocab.get) if token not in SPECIAL_TOKENS]
    return models.WordLevel(vocab={token: i for i, token in enumerate(SPECIAL_TOKENS + words)}, unk_token=UNK)


def vocabulary_size(tokenizer: PreTrainedTokenizerFast) -> int:
    """Rows the model's embedding needs: the largest id + 1 (a given tokenizer.json may have gaps)."""
    return max(tokenizer.get_vocab().values()) + 1


def with_special_tokens(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """`tokenizer` with any of <pad> <bos> <eos> <unk> it lacks added at the end of its vocabulary, wrapped."""
    tokenizer.add_special_tokens([token for token in SPECIAL_TOKENS if tokenizer.token_to_id(token) is None])
    return wrap(tokenizer)


def load_tokenizer_file(path: str | Path) -> PreTrainedTokenizerFast:
    """A tokenizer from a tokenizer.json, with any missing special token added at the end of its vocabulary."""
    path = Path(path)
    if not path.is_file():
        raise TextVAEError(f"tokenizer file not found: {path}; set tokenizer.path to a tokenizer.json "
                           "or use tokenizer.kind: word|bpe to train one")
    return with_special_tokens(read_tokenizer_json(path))


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


def load_pretrained_tokenizer(folder: str | Path, key: str = "tokenizer.path") -> PreTrainedTokenizerFast:
    """The tokenizer of a Hugging Face model folder (tokenizer.kind: pretrained), with <pad> <bos> <eos> <unk>
    added at the end of its vocabulary where missing: ids the pretrained model has never seen, which a
    pretrained decoder gives rows of their own (modeling.pretrained)."""
    return with_special_tokens(folder_tokenizer(folder, key))


def build_tokenizer(settings: TokenizerConfig, train_texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """The tokenizer a run asks for: trained on `train_texts`, or read from settings.path (a tokenizer.json,
    or a model folder for kind 'pretrained')."""
    if settings.kind == "pretrained":
        if not settings.path:
            raise TextVAEError("tokenizer.kind is 'pretrained' but tokenizer.path is empty; set it to a Hugging Face "
                               "model folder, or set model.pretrained_decoder (its tokenizer is the default)")
        return load_pretrained_tokenizer(settings.path, "tokenizer.path (by default model.pretrained_decoder)")
    if settings.kind == "file":
        if not settings.path:
            raise TextVAEError("tokenizer.kind is 'file' but tokenizer.path is empty; set it to a tokenizer.json")
        return load_tokenizer_file(settings.path)
    return train_tokenizer(train_texts, settings)


def special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The ids of <pad> <bos> <eos> <unk>, keyed as TextVAEConfig names them."""
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "unk_token_id": tokenizer.unk_token_id}


def encode_texts(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without <bos>/<eos> (the data pipeline adds those)."""
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
    return [encoding.ids for encoding in encodings]


def decode_ids(tokenizer: PreTrainedTokenizerFast, ids: list[int]) -> str:
    """Text of generated ids, stopping at <eos> and dropping <pad>/<bos>; <unk> is kept visible."""
    kept = []
    for token_id in ids:
        if token_id == tokenizer.eos_token_id:
            break
        if token_id not in (tokenizer.pad_token_id, tokenizer.bos_token_id):
            kept.append(token_id)
    return tokenizer.decode(kept, skip_special_tokens=False).strip()

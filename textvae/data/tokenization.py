"""Tokenizers built with `tokenizers`: word-level or BPE trained on the train split, a given tokenizer.json, or
the tokenizer of a local Hugging Face model folder (a pretrained decoder reads its own vocabulary).

Every tokenizer carries the four special tokens the model relies on; trained ones put them first,
so <pad>=0, <bos>=1, <eos>=2, <unk>=3. Tokenizers are wrapped in a transformers fast tokenizer so
that they save beside the model and load back with `from_pretrained`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
    Regex,
)
from transformers import PreTrainedTokenizerFast

from ..config import AUTO, TokenizerConfig
from ..errors import TextVAEError
from .model_folders import folder_tokenizer, read_tokenizer_json

logger = logging.getLogger("textvae")

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]

# tokenizer.split: punctuation. A word is a run of letters/digits, joined across inner apostrophes and hyphens
# ("LORD's", "don't", "well-known" stay whole); every other mark is a token of its own ("light." -> "light" ".").
# The special tokens written in the text (PTB writes <unk>) stay whole, as with whitespace splitting.
PUNCTUATION_SPLIT = r"<(?:pad|bos|eos|unk)>|\w+(?:['’\-]\w+)*|[^\w\s]"


def wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """A transformers fast tokenizer around a `tokenizers.Tokenizer`, special tokens named."""
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK)


def new_tokenizer(kind: str, lowercase: bool, split: str = "whitespace") -> Tokenizer:
    """An untrained word-level or BPE (Metaspace, reversible) tokenizer. Word-level splits at whitespace only
    (text already tokenized, like PTB, stays as it is), or with split='punctuation' also splits punctuation
    marks off words, so that "light." and "light" are one word and the vocabulary is not wasted on variants."""
    if kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        if split == "punctuation":
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.WhitespaceSplit(),
                pre_tokenizers.Split(Regex(PUNCTUATION_SPLIT), behavior="isolated")])
        else:
            tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    else:
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    return tokenizer


def check_tokenizer_section(settings: TokenizerConfig) -> None:
    """Refuse a vocabulary too small for the special tokens, and settings that only a word-level tokenizer
    has, before any data is read. A tokenizer read from a file (kind file or pretrained) has its own vocabulary
    and splitting, so vocab_size and split do not apply to it (the corpus recipe's auto and punctuation stay
    unused there)."""
    if settings.kind in ("file", "pretrained"):
        return
    if settings.vocab_size == AUTO and settings.kind != "word":
        raise TextVAEError(f"config key tokenizer.vocab_size: auto chooses a word vocabulary from the data, but "
                           f"tokenizer.kind is '{settings.kind}'; give a number (e.g. 10000) or use kind: word")
    if settings.split != "whitespace" and settings.kind != "word":
        raise TextVAEError(f"config key tokenizer.split: '{settings.split}' applies to kind: word only (kind is "
                           f"'{settings.kind}'); remove the key or set tokenizer.kind: word")
    if settings.vocab_size == AUTO:
        return
    if settings.kind in ("word", "bpe") and settings.vocab_size <= len(SPECIAL_TOKENS):
        raise TextVAEError(f"config key tokenizer.vocab_size: {settings.vocab_size} leaves no room for words, as it "
                           f"counts the {len(SPECIAL_TOKENS)} special tokens {' '.join(SPECIAL_TOKENS)}; use at least "
                           f"{len(SPECIAL_TOKENS) + 1} (10000 is the default)")


def train_tokenizer(texts: Iterable[str], settings: TokenizerConfig) -> PreTrainedTokenizerFast:
    """Learn a vocabulary from `texts` (the train split) with the settings' size and frequency limits.
    With vocab_size auto (word-level), the size is chosen from the texts (`choose_vocabulary`) and written
    back into `settings`, so the run's train_config.yaml records the number used."""
    if settings.vocab_size == AUTO:
        texts = list(texts)
        settings.vocab_size = choose_vocabulary(texts, settings)
    tokenizer = new_tokenizer(settings.kind, settings.lowercase, settings.split)
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


def choose_vocabulary(texts: list[str], settings: TokenizerConfig) -> int:
    """tokenizer.vocab_size auto: the fewest most-frequent words of `texts` that cover settings.vocab_coverage
    of their tokens (special tokens written in the text, like PTB's <unk>, not counted), plus the four
    special tokens. Logs the choice. Covering 99% keeps <unk> near 1% of the train tokens while leaving out
    the long tail of words seen once or twice, which a model cannot learn anyway and which cost output rows."""
    every_word = new_tokenizer("word", settings.lowercase, settings.split)
    every_word.train_from_iterator(texts, trainers.WordLevelTrainer(
        vocab_size=2**31 - 1, min_frequency=1, special_tokens=SPECIAL_TOKENS, show_progress=False))
    ids = [id_ for encoding in every_word.encode_batch([text for text in texts if text], add_special_tokens=False)
           for id_ in encoding.ids]  # counted in Rust: a Python loop over the words is ten times slower
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=every_word.get_vocab_size())
    specials = [every_word.token_to_id(token) for token in SPECIAL_TOKENS]
    written = sum(id_ >= len(SPECIAL_TOKENS) for id_ in specials)  # <unk> in the text: the trainer counts it a word
    counts = [int(count) for id_, count in enumerate(counts) if count and id_ not in specials]
    frequent = sorted((count for count in counts if count >= settings.min_frequency), reverse=True)
    total = sum(counts)
    if not frequent:
        return len(SPECIAL_TOKENS) + 1  # train_tokenizer then says that the train split yielded no vocabulary
    covered, kept = 0, len(frequent)
    for rank, count in enumerate(frequent, start=1):
        covered += count
        if covered >= settings.vocab_coverage * total:
            kept = rank
            break
    covered = sum(frequent[:kept])
    logger.info(f"tokenizer.vocab_size auto: {kept + len(SPECIAL_TOKENS):,} entries, the {kept:,} most frequent "
                f"of the train split's {len(counts):,} word types + {len(SPECIAL_TOKENS)} special tokens: they cover "
                f"{covered / total:.2%} of its {total:,} tokens (tokenizer.vocab_coverage {settings.vocab_coverage:g}; "
                f"a number in tokenizer.vocab_size sets the size instead)")
    return kept + len(SPECIAL_TOKENS) + written


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

"""Tokenized splits: the sentences of a corpus split as token ids under the length policy (drop or truncate at
data.max_length, chosen from the train split when auto), with a report of what happened to every line, so
nothing vanishes silently."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from ..config import AUTO, DataConfig
from ..errors import TextVAEError
from .synthetic import FACTORS
from .tokenization import encode_texts

logger = logging.getLogger("textvae")

UNKNOWN_WARNING = 0.05  # warn when more than this share of a split's tokens are words outside the vocabulary
LOST_WARNING = 0.01  # warn when more than this share of a split's lines are dropped or truncated for their length
NO_LIMIT = 10**9  # a max_length no sentence reaches: evaluation's (no length policy)


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
    columns as labels (evaluation tokenizes with no length policy: TextVAEPipeline.corpus_split)."""
    columns = split.select_columns(["text", *[name for name in FACTORS if name in split.column_names]]).to_dict()
    texts = columns.pop("text")
    return prepare_texts(texts, tokenizer, settings.max_length, settings.length_policy, columns)

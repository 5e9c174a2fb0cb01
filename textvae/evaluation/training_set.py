"""Figures against the training set, which is streamed past a chunk of sentences at a time (never held whole):
the share of samples copied from it verbatim (novelty) and an add-one-smoothed unigram model's NLL, the floor any
model must beat."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable

from ..data import TokenizedSplit


class CopiedSamples:
    """Which samples appear verbatim (whitespace-normalised) in a training set that is streamed past a chunk
    at a time (`add`), so the set is never held whole."""

    def __init__(self, samples: list[str]):
        self.samples = [" ".join(sample.split()) for sample in samples]
        self.unseen = set(self.samples)

    def add(self, training_texts: list[str]) -> None:
        if self.unseen:
            self.unseen -= {" ".join(text.split()) for text in training_texts}

    @property
    def share(self) -> float:
        return sum(sample not in self.unseen for sample in self.samples) / len(self.samples) if self.samples else 0.0


def copied_share(samples: list[str], training_texts: list[str]) -> float:
    """Share of samples that appear verbatim (whitespace-normalised) in the training set."""
    copied = CopiedSamples(samples)
    copied.add(training_texts)
    return copied.share


class UnigramCounts:
    """Token counts of a training set, added a chunk of sentences at a time (so the set is streamed, never
    held whole), for an add-one-smoothed unigram model: the floor any model must beat."""

    def __init__(self, eos_id: int):
        self.eos_id = eos_id
        self.counts: Counter = Counter()

    def add(self, token_ids: list[list[int]]) -> None:
        for ids in token_ids:
            self.counts.update(ids)
        self.counts[self.eos_id] += len(token_ids)

    def nll(self, split: TokenizedSplit, vocab_size: int) -> float:
        """Per-sentence NLL of `split` (each sentence's tokens and <eos>) under the smoothed unigram model."""
        total = sum(self.counts.values()) + vocab_size
        log_prob = {token: math.log((count + 1) / total) for token, count in self.counts.items()}
        unseen = math.log(1 / total)
        nll = sum(-log_prob.get(token, unseen) for ids in split.token_ids for token in [*ids, self.eos_id])
        return nll / max(len(split.token_ids), 1)


def unigram_nll(train: TokenizedSplit, split: TokenizedSplit, vocab_size: int, eos_id: int) -> float:
    """Per-sentence NLL of an add-one-smoothed unigram model fitted on `train`: the floor any model must beat."""
    counts = UnigramCounts(eos_id)
    counts.add(train.token_ids)
    return counts.nll(split, vocab_size)


def training_set_figures(chunks: Iterable[TokenizedSplit], samples: list[str], target: TokenizedSplit, eos_id: int,
                         vocab_size: int, unigram: bool, decode: Callable[[list[int]], str]) -> dict[str, float]:
    """copied_share of `samples` (when there are samples) and, with `unigram`, the unigram NLL of `target`, from
    one pass over the training set's `chunks`; `decode` writes a chunk's ids back as text."""
    copied, counts = CopiedSamples(samples), UnigramCounts(eos_id)
    for chunk in chunks:
        copied.add([decode(ids) for ids in chunk.token_ids] if samples else [])
        counts.add(chunk.token_ids)
    figures = {}
    if samples:
        figures["copied_share"] = copied.share
    if unigram:
        figures["unigram_nll"] = counts.nll(target, vocab_size)
    return figures

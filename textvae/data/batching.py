"""Padded batches out: sentences wrapped in <bos>/<eos>, bucketed by length so padding stays small, in an order
that is deterministic from (seed, epoch), so a resumed epoch skips exactly the batches already trained on."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .splits import TokenizedSplit


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

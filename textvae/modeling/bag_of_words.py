"""The bag-of-words loss of Zhao, Zhao & Eskenazi 2017 ("Learning Discourse-level Diversity for Neural Dialog
Models using Conditional Variational Autoencoders"): a linear map from z to the vocabulary must predict every
word of the sentence, without order. The decoder's teacher-forced inputs let it predict most words from the
words before them, so the ELBO alone leaves z with the gist of a sentence; this auxiliary loss makes z name
the words themselves, which is what a reconstruction or a homotopy between two given sentences needs. A
training objective only: the likelihood, the ELBO and every evaluation ignore it."""

from __future__ import annotations

import torch
from torch import nn


class BagOfWordsHead(nn.Module):
    """log p_bow(w | z) = log softmax(W z + b)[w], the same distribution for every position of the sentence."""

    def __init__(self, latent_size: int, vocab_size: int):
        super().__init__()
        self.output = nn.Linear(latent_size, vocab_size)

    def forward(self, z: torch.Tensor, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch,) −Σ log p_bow(w | z) over the words of each sentence (<bos> words <eos> <pad>...: the words
        only), in fp32."""
        log_probabilities = torch.log_softmax(self.output(z).float(), dim=-1)
        words = token_ids[:, 1:-1]
        positions = torch.arange(words.size(1), device=words.device)
        real = positions.unsqueeze(0) < (lengths.to(words.device) - 2).unsqueeze(1)
        scores = log_probabilities.gather(1, words)
        return -(scores * real).sum(dim=1)

"""Sentence encoders: read the tokens of a sentence and return one summary vector for the posterior."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .configuration import TextVAEConfig


class LSTMEncoder(nn.Module):
    """An (optionally bidirectional, multi-layer) LSTM; the summary is the top layer's final state.

    For a bidirectional LSTM the summary joins the forward state after the last word and the backward
    state after the first word. Packing makes padding invisible to both directions.
    """

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        self.directions = 2 if config.encoder_bidirectional else 1
        self.layers = config.encoder_layers
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.embedding_dropout)
        self.lstm = nn.LSTM(config.embedding_size, config.encoder_hidden_size, num_layers=config.encoder_layers,
                            batch_first=True, bidirectional=config.encoder_bidirectional)
        self.summary_size = config.encoder_hidden_size * self.directions

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Summaries (batch, summary_size) of right-padded `token_ids` with true `lengths`."""
        embedded = self.dropout(self.embedding(token_ids))
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (final_hidden, _) = self.lstm(packed)
        batch = token_ids.size(0)
        top_layer = final_hidden.view(self.layers, self.directions, batch, -1)[-1]  # (directions, batch, hidden)
        return top_layer.transpose(0, 1).reshape(batch, self.summary_size)

"""Sentence encoders: read the tokens of a sentence and return one summary vector for the posterior."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .configuration import TextVAEConfig
from .initialization import initialize_uniformly
from .transformer import Block, TokenEmbedding, padding_mask


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
        self.dropout = nn.Dropout(config.encoder_embedding_dropout)
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


class TransformerEncoder(nn.Module):
    """A bidirectional pre-LayerNorm Transformer with padding masks; the summary is the mean of the top
    layer's states over the real tokens, or the state of a learned summary token placed in front (the
    [CLS] reading of Devlin et al. 2019). Padded positions are never attended to nor pooled."""

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        width = config.encoder_hidden_size
        self.embedding = TokenEmbedding(config.vocab_size, config.embedding_size, width, config.max_positions,
                                        config.position_encoding, config.pad_token_id,
                                        config.encoder_embedding_dropout)
        self.summary_token = nn.Parameter(torch.randn(width) * 0.02) if config.encoder_pooling == "summary_token" else None
        self.blocks = nn.ModuleList(Block(width, config.attention_heads, config.feedforward_size,
                                          config.transformer_dropout) for _ in range(config.encoder_layers))
        self.final_norm = nn.LayerNorm(width)
        self.summary_size = width

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Summaries (batch, summary_size) of right-padded `token_ids` with true `lengths`."""
        states = self.embedding(token_ids)
        lengths = lengths.to(token_ids.device)
        if self.summary_token is not None:
            front = self.summary_token.to(states.dtype).expand(states.size(0), 1, -1)
            states, lengths = torch.cat([front, states], dim=1), lengths + 1
        mask = padding_mask(lengths, states.size(1), states.device)
        for block in self.blocks:
            states, _ = block(states, mask)
        states = self.final_norm(states)
        if self.summary_token is not None:
            return states[:, 0]
        real = mask[:, 0, 0, :].unsqueeze(-1).to(states.dtype)
        return (states * real).sum(1) / lengths.unsqueeze(1).to(states.dtype)


def build_encoder(config: TextVAEConfig) -> nn.Module:
    """The encoder that `config.encoder_type` names; every encoder maps (token_ids, lengths) to a summary
    (batch, summary_size)."""
    if config.encoder_type == "transformer":
        return initialize_uniformly(TransformerEncoder(config), config)
    if config.encoder_type == "pretrained":
        from .pretrained import PretrainedEncoder  # transformers' Auto classes load only when asked for

        return PretrainedEncoder(config)
    return initialize_uniformly(LSTMEncoder(config), config)

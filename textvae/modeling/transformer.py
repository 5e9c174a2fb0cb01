"""The Transformer sides of a sentence VAE: a bidirectional encoder (mean or summary-token pooling) and a causal
decoder with a key/value cache that z reaches as a memory slot and/or an input offset, built from shared
pieces: token + position embeddings and pre-LayerNorm blocks whose self-attention takes a padding or causal
mask, an optional latent key/value slot and a cache.

Pre-LayerNorm (Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture") trains without
a learning-rate warm-up being critical; the blocks follow Vaswani et al. 2017 otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TextVAEError
from .configuration import TextVAEConfig
from .dropout import Dropout
from .output_loss import VocabularyOutput
from .state import KeyValueCacheState

KeyValue = tuple[torch.Tensor, torch.Tensor]  # (batch, heads, keys, head_size) each


def sinusoidal_positions(positions: torch.Tensor, width: int) -> torch.Tensor:
    """The fixed sine/cosine position codes of Vaswani et al. 2017 for integer `positions`: (*, width)."""
    half = torch.arange(0, width, 2, device=positions.device, dtype=torch.float32)
    frequencies = torch.exp(-math.log(10000.0) * half / width)
    angles = positions.float().unsqueeze(-1) * frequencies
    codes = torch.zeros(*positions.shape, width, device=positions.device)
    codes[..., 0::2] = torch.sin(angles)
    codes[..., 1::2] = torch.cos(angles[..., : width // 2])
    return codes


class TokenEmbedding(nn.Module):
    """Token embeddings (projected to the model width when the sizes differ) plus learned or sinusoidal
    position codes; positions past `max_positions` are refused with the key to raise."""

    def __init__(self, vocab_size: int, embedding_size: int, width: int, max_positions: int, positions: str,
                 pad_token_id: int, dropout: float):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_token_id)
        self.to_width = nn.Linear(embedding_size, width) if embedding_size != width else nn.Identity()
        self.learned_positions = nn.Embedding(max_positions, width) if positions == "learned" else None
        self.max_positions = max_positions
        self.width = width
        self.dropout = Dropout(dropout)

    def forward(self, token_ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(batch, steps, width) for `token_ids` whose first token sits at position `start`."""
        end = start + token_ids.size(1)
        if end > self.max_positions:
            raise TextVAEError(f"a sentence of {end} tokens is longer than model.max_positions "
                               f"({self.max_positions}); shorten it (data.max_length) or train with a larger "
                               f"model.max_positions")
        positions = torch.arange(start, end, device=token_ids.device)
        codes = (self.learned_positions(positions) if self.learned_positions is not None
                 else sinusoidal_positions(positions, self.width))
        return self.dropout(self.to_width(self.tokens(token_ids)) + codes)


class SelfAttention(nn.Module):
    """Multi-head self-attention. `memory` (a key and a value per sentence, (batch, width) each) is put in
    front of the keys, so every position can attend to it; `past` holds earlier keys and values (the cache),
    and the keys and values including the new ones are returned for the next call."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.head_size = width // heads
        self.query_key_value = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, steps, width) → (batch, heads, steps, head_size)."""
        return x.view(x.size(0), x.size(1), self.heads, self.head_size).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, past: KeyValue | None = None,
                memory: KeyValue | None = None) -> tuple[torch.Tensor, KeyValue]:
        query, key, value = (self.split_heads(part) for part in self.query_key_value(x).chunk(3, dim=-1))
        if memory is not None:
            key = torch.cat([self.split_heads(memory[0].unsqueeze(1).to(key.dtype)), key], dim=2)
            value = torch.cat([self.split_heads(memory[1].unsqueeze(1).to(value.dtype)), value], dim=2)
        if past is not None:
            key, value = torch.cat([past[0], key], dim=2), torch.cat([past[1], value], dim=2)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                                  dropout_p=self.dropout if self.training else 0.0)
        batch, _, steps, _ = attended.shape
        return self.out(attended.transpose(1, 2).reshape(batch, steps, -1)), (key, value)


class Block(nn.Module):
    """One pre-LayerNorm Transformer layer: x + attention(norm(x)), then x + feedforward(norm(x))."""

    def __init__(self, width: int, heads: int, feedforward_size: int, dropout: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads, dropout)
        self.feedforward_norm = nn.LayerNorm(width)
        self.feedforward = nn.Sequential(nn.Linear(width, feedforward_size), nn.GELU(),
                                         nn.Linear(feedforward_size, width))
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, past: KeyValue | None = None,
                memory: KeyValue | None = None) -> tuple[torch.Tensor, KeyValue]:
        attended, key_value = self.attention(self.attention_norm(x), mask, past, memory)
        x = x + self.dropout(attended)
        return x + self.dropout(self.feedforward(self.feedforward_norm(x))), key_value


def padding_mask(lengths: torch.Tensor, steps: int, device: torch.device) -> torch.Tensor:
    """(batch, 1, 1, steps), True where a key is a real token: padded keys are never attended to."""
    return (torch.arange(steps, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1))[:, None, None, :]


def causal_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """(queries, keys), True where query i may attend to key j: the last `queries` keys are the queries'
    own tokens, and each sees every key before it (cache and latent slot included) and itself, nothing after."""
    offset = keys - queries
    return torch.arange(keys, device=device).unsqueeze(0) <= torch.arange(queries, device=device).unsqueeze(1) + offset


# ---- the encoder and the decoder ---------------------------------------------------------------------

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


class TransformerDecoder(KeyValueCacheState, VocabularyOutput):
    """A causal pre-LayerNorm Transformer language model conditioned on z, with a key/value cache so that
    generating a sentence costs one new position per step instead of re-reading the prefix.

    'memory' maps z to one extra key and value per layer that every position attends to (the latent
    "memory" of Li et al. 2020, Optimus); 'input' adds a projection of z to every input embedding; 'both'
    does the two. Without a latent (the LM baseline) it is a plain Transformer language model. The state
    is {"keys", "values": per-layer (batch, heads, keys, head_size), "length": tokens read so far}.
    """

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.width = width
        self.embedding = TokenEmbedding(config.vocab_size, config.embedding_size, width, config.max_positions,
                                        config.position_encoding, config.pad_token_id, config.embedding_dropout)
        conditioning = config.z_conditioning if config.has_latent else None
        self.z_to_input = nn.Linear(config.latent_size, width) if conditioning in ("input", "both") else None
        self.z_to_memory = (nn.Linear(config.latent_size, 2 * config.decoder_layers * width)
                            if conditioning in ("memory", "both") else None)
        self.blocks = nn.ModuleList(Block(width, config.attention_heads, config.feedforward_size,
                                          config.transformer_dropout) for _ in range(config.decoder_layers))
        self.final_norm = nn.LayerNorm(width)
        self.output_dropout = Dropout(config.decoder_dropout)
        self.output = nn.Linear(width, config.vocab_size)

    def memory_slots(self, z: torch.Tensor | None) -> list:
        """Per layer, the (key, value) that z contributes (batch, width) each, or None without 'memory'."""
        if self.z_to_memory is None or z is None:
            return [None] * len(self.blocks)
        slots = self.z_to_memory(z).view(z.size(0), len(self.blocks), 2, self.width)
        return [(slots[:, layer, 0], slots[:, layer, 1]) for layer in range(len(self.blocks))]

    def forward(self, input_ids: torch.Tensor, z: torch.Tensor | None,
                state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Hidden states (batch, steps, width) for teacher-forced `input_ids`; pass `state` to continue."""
        start = 0 if state is None else state["length"]
        states = self.embedding(input_ids, start)
        if self.z_to_input is not None:
            states = states + self.z_to_input(z).to(states.dtype).unsqueeze(1)
        if state is None:  # the latent slot enters the cache once, at the front
            pasts, memories = [None] * len(self.blocks), self.memory_slots(z)
            keys_before = 0 if self.z_to_memory is None or z is None else 1
        else:
            pasts, memories = list(zip(state["keys"], state["values"])), [None] * len(self.blocks)
            keys_before = state["keys"][0].size(2)
        steps = input_ids.size(1)
        mask = None if steps == 1 else causal_mask(steps, keys_before + steps, states.device)
        keys, values = [], []
        for block, past, memory in zip(self.blocks, pasts, memories):
            states, (key, value) = block(states, mask, past, memory)
            keys.append(key)
            values.append(value)
        return self.final_norm(states), {"keys": keys, "values": values, "length": start + steps}

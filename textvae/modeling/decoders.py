"""Autoregressive decoders conditioned on z; always left-to-right, so a decoder never sees the future."""

from __future__ import annotations

import torch
from torch import nn

from .configuration import TextVAEConfig
from .initialization import initialize_uniformly
from .output_loss import projected_token_nll
from .transformer import Block, TokenEmbedding, causal_mask

LSTMState = tuple[torch.Tensor, torch.Tensor]


def select_rows(state, indices: torch.Tensor, dim: int):
    """`state` (a tensor, or tuples/lists/dicts of them, or None) keeping entries `indices` along `dim`.

    Decoding strategies reorder or drop sequences (beam search, finished rows) through this, so any
    decoder whose state is a nest of tensors with one batch dimension plugs in by naming that dimension.
    """
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.index_select(dim, indices)
    if isinstance(state, dict):
        return {key: select_rows(value, indices, dim) for key, value in state.items()}
    return type(state)(select_rows(value, indices, dim) for value in state)


class VocabularyOutput(nn.Module):
    """What every decoder shares: its hidden states go through dropout and `self.output` to the vocabulary."""

    output: nn.Linear
    output_dropout: nn.Dropout

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary scores for hidden states of any leading shape."""
        return self.output(self.output_dropout(hidden))

    def token_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """−log p(target) (fp32) for each row of `hidden` (rows, hidden), without keeping the logits."""
        return projected_token_nll(self.output_dropout(hidden), self.output.weight, self.output.bias, targets)


class LSTMDecoder(VocabularyOutput):
    """A unidirectional LSTM language model whose state and/or inputs carry z (Bowman et al. 2016).

    'init' maps z through a linear layer to the initial hidden and cell state of every layer;
    'input' concatenates z to every input embedding (as in He et al. 2019); 'both' does the two.
    Without a latent (the LM baseline) it is a plain LSTM language model.
    """

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        self.layers = config.decoder_layers
        self.hidden_size = config.decoder_hidden_size
        self.z_at_input = config.has_latent and config.z_conditioning in ("input", "both")
        self.z_at_init = config.has_latent and config.z_conditioning in ("init", "both")
        input_size = config.embedding_size + (config.latent_size if self.z_at_input else 0)
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.lstm = nn.LSTM(input_size, config.decoder_hidden_size, num_layers=config.decoder_layers,
                            batch_first=True)
        self.z_to_state = (nn.Linear(config.latent_size, 2 * config.decoder_layers * config.decoder_hidden_size)
                           if self.z_at_init else None)
        self.output_dropout = nn.Dropout(config.decoder_dropout)
        self.output = nn.Linear(config.decoder_hidden_size, config.vocab_size)

    def initial_state(self, z: torch.Tensor | None) -> LSTMState | None:
        """The (h0, c0) that z sets, or None (zeros) when z does not enter through the state."""
        if self.z_to_state is None or z is None:
            return None
        batch = z.size(0)
        state = self.z_to_state(z).view(batch, 2, self.layers, self.hidden_size).permute(1, 2, 0, 3)
        return state[0].contiguous(), state[1].contiguous()

    def forward(self, input_ids: torch.Tensor, z: torch.Tensor | None,
                state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """Hidden states (batch, steps, hidden) for teacher-forced `input_ids`; pass `state` to continue."""
        embedded = self.embedding_dropout(self.embedding(input_ids))
        if self.z_at_input:
            z_steps = z.to(embedded.dtype).unsqueeze(1).expand(-1, input_ids.size(1), -1)
            embedded = torch.cat([embedded, z_steps], dim=-1)
        if state is None:
            state = self.initial_state(z)
        hidden, state = self.lstm(embedded, state)
        return hidden, state

    def reorder_state(self, state: LSTMState | None, indices: torch.Tensor) -> LSTMState | None:
        """The state of sequences `indices` (batch positions, repeats allowed); h and c are (layers, batch, hidden)."""
        return select_rows(state, indices, dim=1)


class TransformerDecoder(VocabularyOutput):
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
        self.output_dropout = nn.Dropout(config.decoder_dropout)
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

    def reorder_state(self, state: dict | None, indices: torch.Tensor) -> dict | None:
        """The cache of sequences `indices` (batch positions, repeats allowed)."""
        if state is None:
            return None
        return {"keys": select_rows(state["keys"], indices, dim=0),
                "values": select_rows(state["values"], indices, dim=0), "length": state["length"]}


def build_decoder(config: TextVAEConfig) -> nn.Module:
    """The decoder that `config.decoder_type` names; every decoder offers forward(input_ids, z, state),
    reorder_state, logits and token_nll."""
    if config.decoder_type == "transformer":
        return initialize_uniformly(TransformerDecoder(config), config)
    if config.decoder_type == "pretrained":
        from .pretrained import PretrainedDecoder  # transformers' Auto classes load only when asked for

        return PretrainedDecoder(config)
    return initialize_uniformly(LSTMDecoder(config), config)

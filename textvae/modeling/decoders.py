"""Autoregressive decoders conditioned on z; always left-to-right, so a decoder never sees the future."""

from __future__ import annotations

import torch
from torch import nn

from .configuration import TextVAEConfig
from .output_loss import projected_token_nll

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


class LSTMDecoder(nn.Module):
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

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary scores for hidden states of any leading shape."""
        return self.output(self.output_dropout(hidden))

    def token_nll(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """−log p(target) (fp32) for each row of `hidden` (rows, hidden), without keeping the logits."""
        return projected_token_nll(self.output_dropout(hidden), self.output.weight, self.output.bias, targets)

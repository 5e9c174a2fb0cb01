"""The LSTM sides of a sentence VAE (Bowman et al. 2016): an encoder that summarises a sentence in its final
state, and a left-to-right decoder whose initial state and/or inputs carry z."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .configuration import TextVAEConfig
from .dropout import Dropout
from .output_loss import VocabularyOutput
from .state import select_rows

LSTMState = tuple[torch.Tensor, torch.Tensor]


class LSTMEncoder(nn.Module):
    """An (optionally bidirectional, multi-layer) LSTM; the summary is its top layer's states pooled by
    config.lstm_encoder_pooling.

    'final' (the default) joins, for a bidirectional LSTM, the forward state after the last word and the
    backward state after the first word; 'mean' and 'max' pool the top layer's states (both directions
    joined) over the real positions. Packing makes padding invisible to both directions and to the pooling.
    """

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        self.directions = 2 if config.encoder_bidirectional else 1
        self.layers = config.encoder_layers
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.dropout = Dropout(config.encoder_embedding_dropout)
        self.lstm = nn.LSTM(config.embedding_size, config.encoder_hidden_size, num_layers=config.encoder_layers,
                            batch_first=True, bidirectional=config.encoder_bidirectional)
        self.summary_size = config.encoder_hidden_size * self.directions
        self.pooling = config.lstm_encoder_pooling

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Summaries (batch, summary_size) of right-padded `token_ids` with true `lengths`."""
        embedded = self.dropout(self.embedding(token_ids))
        lengths = lengths.cpu()
        if bool((lengths == token_ids.size(1)).all()):  # no padding (length-bucketed batches mostly): packing
            states, (final_hidden, _) = self.lstm(embedded)  # would only cost time
        else:
            packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
            packed_states, (final_hidden, _) = self.lstm(packed)
            states = None
        batch = token_ids.size(0)
        if self.pooling == "final":
            top_layer = final_hidden.view(self.layers, self.directions, batch, -1)[-1]  # (directions, batch, hidden)
            return top_layer.transpose(0, 1).reshape(batch, self.summary_size)
        if states is None:
            states, _ = pad_packed_sequence(packed_states, batch_first=True)  # (batch, longest, summary_size)
        lengths = lengths.to(states.device).unsqueeze(1)  # (batch, 1)
        real = (torch.arange(states.size(1), device=states.device).unsqueeze(0) < lengths).unsqueeze(2)
        if self.pooling == "max":
            return states.masked_fill(~real, float("-inf")).amax(dim=1)
        return (states * real).sum(dim=1) / lengths.to(states.dtype)


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
        self.embedding_dropout = Dropout(config.embedding_dropout)
        self.lstm = nn.LSTM(input_size, config.decoder_hidden_size, num_layers=config.decoder_layers,
                            batch_first=True)
        self.z_to_state = (nn.Linear(config.latent_size, 2 * config.decoder_layers * config.decoder_hidden_size)
                           if self.z_at_init else None)
        self.output_dropout = Dropout(config.decoder_dropout)
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

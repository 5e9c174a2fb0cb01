"""Decoder states under decoding: every strategy (greedy, sampling, beam search) keeps, drops or repeats rows
of a decoder's state through `reorder_state`, which the decoders build from the one helper here."""

from __future__ import annotations

import torch


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


class KeyValueCacheState:
    """`reorder_state` for decoders whose state is a key/value cache {"keys", "values": per-layer tensors
    (batch, heads, keys, head_size), "length": tokens read} (textvae's Transformer and pretrained decoders)."""

    def reorder_state(self, state: dict | None, indices: torch.Tensor) -> dict | None:
        """The cache of sequences `indices` (batch positions, repeats allowed)."""
        if state is None:
            return None
        return {"keys": select_rows(state["keys"], indices, dim=0),
                "values": select_rows(state["values"], indices, dim=0), "length": state["length"]}

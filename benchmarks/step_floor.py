"""The arithmetic floor of a training step: the matrix products and LSTMs every implementation of the config's
VAE must run, timed alone, for `train_speed.py --floor`.

Per batch of B sentences of n words (the reference's equal-length batches): the encoder LSTM over the n + 2
tokens, the decoder LSTM over n + 1 inputs of embedding + latent width, each forward and backward (the weights'
and inputs' gradients), and the vocabulary layer's three products over the B (n + 1) decoder states h: the
scores W hᵀ, the states' gradient Wᵀ G and the weight's gradient G h, with the scores standing in for G.
Nothing else: no softmax, loss, embeddings, dropout, KL, clipping or optimizer, and the output weight is kept in
the products' dtype (no conversion). In bf16 the LSTMs run under autocast (oneDNN's bf16 LSTM, as textvae's
do) and the products in bf16. Tokens/s of this floor over the reference's bounds the ratio any implementation
doing the same arithmetic in that precision with torch's CPU kernels (MKL, oneDNN) can reach on the machine.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from textvae.data import Batch
from textvae.runtime import autocast


class FloorModel(nn.Module):
    """The two LSTMs and the vocabulary weight of the config's VAE (1-layer, unidirectional, as the reference)."""

    def __init__(self, vocab: int, c, dtype: torch.dtype):
        super().__init__()
        self.embedding_size, self.latent_size = c.embedding_size, c.latent_size
        self.encoder = nn.LSTM(c.embedding_size, c.encoder_hidden_size, batch_first=True)
        self.decoder = nn.LSTM(c.embedding_size + c.latent_size, c.decoder_hidden_size, batch_first=True)
        self.output_weight = nn.Parameter(torch.empty(vocab, c.decoder_hidden_size, dtype=dtype).uniform_(-0.01, 0.01))


def floor_step(model: FloorModel, device: torch.device, dtype: torch.dtype) -> Callable[[Batch], None]:
    """One batch's floor arithmetic. Inputs are views of one random pool (no per-step random numbers)."""
    widest = model.embedding_size + model.latent_size
    pool: dict[str, torch.Tensor] = {}

    def inputs(name: str, batch: int, length: int, width: int) -> torch.Tensor:
        size = batch * length * width
        if name not in pool or pool[name].numel() < size:
            pool[name] = torch.randn(max(size, 2 * pool.get(name, torch.empty(0)).numel()), device=device)
        return pool[name][:size].view(batch, length, width).requires_grad_()

    def step(batch: Batch) -> None:
        rows, length = batch.token_ids.shape  # <bos> w1 .. wn <eos>
        with autocast(device, dtype):
            _, (last, _) = model.encoder(inputs("encoder", rows, length, model.embedding_size))
            states, _ = model.decoder(inputs("decoder", rows, length - 1, widest))
        with torch.no_grad():
            hidden, weight = states.reshape(-1, states.size(-1)).to(dtype), model.output_weight
            scores = weight @ hidden.t()  # (vocab, rows)
            grad_hidden = (weight.t() @ scores).t()
            weight.grad = scores @ hidden
        torch.autograd.backward([states, last], [grad_hidden.view_as(states).to(states.dtype), torch.ones_like(last)])

    return step

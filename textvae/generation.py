"""Turning latent codes into sentences: batched greedy or temperature sampling, reconstruction, homotopy."""

from __future__ import annotations

import torch

from .modeling import TextVAE

STRATEGIES = ("greedy", "sample")


@torch.no_grad()
def decode(model: TextVAE, z: torch.Tensor | None, count: int | None = None, strategy: str = "greedy",
           temperature: float = 1.0, max_length: int = 50, generator: torch.Generator | None = None,
           ban_unk: bool = False) -> list[list[int]]:
    """Token ids (without <bos>/<eos>) decoded from each row of `z` (or `count` sequences for an LM).

    All rows advance together, one step at a time; a row stops at <eos>. <pad> and <bos> are never
    emitted; `ban_unk` also forbids <unk>. Sampling with temperature 0 is greedy.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    config = model.config
    batch = z.size(0) if z is not None else count
    device = model.device
    if z is not None:
        z = z.to(device)
    tokens = torch.full((batch,), config.bos_token_id, dtype=torch.long, device=device)
    banned = [config.pad_token_id, config.bos_token_id] + ([config.unk_token_id] if ban_unk else [])
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    steps, state = [], None
    for _ in range(max_length):
        logits, state = model.decode_step(tokens, z, state)
        logits[:, banned] = float("-inf")
        if strategy == "greedy" or temperature <= 0.0:
            tokens = logits.argmax(-1)
        else:
            probabilities = torch.softmax(logits / temperature, dim=-1)
            tokens = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
        tokens = tokens.masked_fill(finished, config.eos_token_id)
        steps.append(tokens)
        finished |= tokens == config.eos_token_id
        if bool(finished.all()):
            break
    sequences = torch.stack(steps, dim=1).tolist()
    return [seq[: seq.index(config.eos_token_id)] if config.eos_token_id in seq else seq for seq in sequences]


def prior_sample(model: TextVAE, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` latent codes from the prior N(0, I)."""
    return torch.randn((count, model.config.latent_size), generator=generator, device=model.device)


def linear_path(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """`steps` evenly spaced points from `start` to `end` inclusive (the homotopy of Bowman et al. 2016)."""
    weights = torch.linspace(0.0, 1.0, steps, device=start.device).unsqueeze(1)
    return (1 - weights) * start.unsqueeze(0) + weights * end.unsqueeze(0)

"""What one decoding step may emit: banned special tokens, temperature, top-k and top-p (nucleus) filters.

Every function works on a (rows, vocab) tensor of logits and knows nothing about the decoder, so the
same step serves any model whose `decode_step` returns next-token logits.
"""

from __future__ import annotations

import torch


def banned_ids(config, ban_unk: bool = False) -> list[int]:
    """Tokens a decoder must never emit: <pad> and <bos> (they are never targets), and <unk> on request."""
    return [config.pad_token_id, config.bos_token_id] + ([config.unk_token_id] if ban_unk else [])


def ban(logits: torch.Tensor, banned: list[int]) -> torch.Tensor:
    """`logits` with the banned tokens at −inf, in place, so softmax renormalises over the others."""
    logits[:, banned] = float("-inf")
    return logits


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep each row's k highest logits, the rest at −inf (top-k sampling, Fan et al. 2018).

    Exactly k survive even when logits tie (the tie is broken by `topk`), so a token outside the k
    most likely can never be drawn.
    """
    k = min(k, logits.size(-1))
    kept = logits.topk(k, dim=-1).indices
    return torch.full_like(logits, float("-inf")).scatter(-1, kept, logits.gather(-1, kept))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep each row's nucleus, the rest at −inf (nucleus sampling, Holtzman et al. 2020).

    The nucleus is the smallest set of most likely tokens whose probability mass is at least `p`: a
    token stays when the mass of the tokens more likely than it is still below `p`, so the most likely
    token always stays.
    """
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probabilities = sorted_logits.softmax(dim=-1)
    mass_before = probabilities.cumsum(dim=-1) - probabilities
    outside_sorted = mass_before >= p
    outside = torch.zeros_like(outside_sorted).scatter(-1, order, outside_sorted)
    return logits.masked_fill(outside, float("-inf"))


def next_tokens(logits: torch.Tensor, strategy: str, temperature: float = 1.0, top_k: int = 10, top_p: float = 0.9,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of (already banned) `logits`: the argmax for 'greedy' (and at temperature 0),
    otherwise a draw from softmax(logits / temperature), filtered by top-k or top-p when asked."""
    if strategy == "greedy" or temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if strategy == "top-k":
        logits = top_k_filter(logits, top_k)
    elif strategy == "top-p":
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)

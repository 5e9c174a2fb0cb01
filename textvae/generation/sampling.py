"""What one decoding step may emit: banned special tokens, temperature, top-k and top-p (nucleus) filters.

Every function works on a (rows, vocab) tensor of logits and knows nothing about the decoder, so the
same step serves any model whose `decode_step` returns next-token logits. The filters exist twice, in
one rule: as masks over the whole vocabulary (`top_k_filter`, `top_p_filter`, to inspect and test) and
as the few candidates a draw needs (`next_tokens`), since sorting and sampling 10,000-word rows at every
step would cost more than the decoder itself.
"""

from __future__ import annotations

import torch

NUCLEUS_FIRST_LOOK = 64  # most nuclei fit in this many tokens; rows whose nucleus is wider get a full sort


def banned_ids(config, ban_unk: bool = False) -> list[int]:
    """Tokens a decoder must never emit: <pad> and <bos> (they are never targets), and <unk> on request."""
    return [config.pad_token_id, config.bos_token_id] + ([config.unk_token_id] if ban_unk else [])


def ban(logits: torch.Tensor, banned: list[int]) -> torch.Tensor:
    """`logits` with the banned tokens at −inf, in place, so softmax renormalises over the others."""
    logits[:, banned] = float("-inf")
    return logits


def in_nucleus(sorted_probabilities: torch.Tensor, p: float) -> torch.Tensor:
    """Which of the (descending) probabilities form the nucleus of Holtzman et al. 2020: the smallest set of
    most likely tokens whose mass is at least p. A token is in when the mass before it is still below p,
    so the most likely token always is."""
    return sorted_probabilities.cumsum(dim=-1) - sorted_probabilities < p


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's k highest logits kept, the rest at −inf (top-k sampling, Fan et al. 2018).

    Exactly k survive even when logits tie (`topk` breaks the tie), so a token outside the k most
    likely can never be drawn.
    """
    kept = logits.topk(min(k, logits.size(-1)), dim=-1).indices
    return torch.full_like(logits, float("-inf")).scatter(-1, kept, logits.gather(-1, kept))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Each row's nucleus (`in_nucleus`) kept, the rest at −inf (nucleus sampling, Holtzman et al. 2020)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    outside = ~in_nucleus(sorted_logits.softmax(dim=-1), p)
    return logits.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), float("-inf"))


def draw(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One column index per row, with probability proportional to the row's non-negative `weights`.

    Inverse-CDF sampling: a uniform draw scaled to the row's total, located in the running sum.
    A zero-weight column is never chosen, since the running sum does not rise there. It is what
    `torch.multinomial(weights, 1)` does, at a fraction of its cost on wide rows.
    """
    cumulative = weights.cumsum(dim=-1)
    target = torch.rand((weights.size(0), 1), generator=generator, device=weights.device,
                        dtype=cumulative.dtype) * cumulative[:, -1:]
    return torch.searchsorted(cumulative, target, right=True).clamp(max=weights.size(-1) - 1).squeeze(1)


def draw_nucleus(probabilities: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A token per row from its nucleus, renormalised, looking first at the top NUCLEUS_FIRST_LOOK tokens."""
    look = min(NUCLEUS_FIRST_LOOK, probabilities.size(-1))
    top, ids = probabilities.topk(look, dim=-1)
    covered = top.cumsum(dim=-1)[:, -1] >= p
    if not bool(covered.all()):  # some nuclei are wider: those rows are sorted whole
        wide = (~covered).nonzero().squeeze(1)
        tokens = torch.empty(probabilities.size(0), dtype=torch.long, device=probabilities.device)
        wide_top, wide_ids = probabilities.index_select(0, wide).sort(dim=-1, descending=True)
        tokens[wide] = wide_ids.gather(1, draw(wide_top * in_nucleus(wide_top, p), generator).unsqueeze(1)).squeeze(1)
        narrow = covered.nonzero().squeeze(1)
        if narrow.numel():
            top, ids = top.index_select(0, narrow), ids.index_select(0, narrow)
            tokens[narrow] = ids.gather(1, draw(top * in_nucleus(top, p), generator).unsqueeze(1)).squeeze(1)
        return tokens
    return ids.gather(1, draw(top * in_nucleus(top, p), generator).unsqueeze(1)).squeeze(1)


def next_tokens(logits: torch.Tensor, strategy: str, temperature: float = 1.0, top_k: int = 10, top_p: float = 0.9,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of (already banned) `logits`: the argmax for 'greedy' (and at temperature 0),
    otherwise a draw from softmax(logits / temperature), restricted to the top k or the nucleus when asked."""
    if strategy == "greedy" or temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if strategy == "top-k":
        values, ids = logits.topk(min(top_k, logits.size(-1)), dim=-1)
        return ids.gather(1, draw(values.softmax(dim=-1), generator).unsqueeze(1)).squeeze(1)
    if strategy == "top-p":
        return draw_nucleus(logits.softmax(dim=-1), top_p, generator)
    return draw(logits.softmax(dim=-1), generator)

"""Beam search over any decoder that offers `decode_step` and `decoder.reorder_state`, many latent codes at once.

Each sentence keeps `beam_size` hypotheses ranked by their length-normalised log-probability
score = log p(y|z) / |y|**length_penalty (|y| counts <eos>; length_penalty 0 is the plain sum, 1 the
per-token mean, as in Wu et al. 2016's normalisation without its +5 offset). A hypothesis that has
emitted <eos> stays in its beam unchanged and keeps competing with the growing ones; a sentence is done
when all its hypotheses have ended (or at `max_length`), and then leaves the batch.
"""

from __future__ import annotations

import torch

from .sampling import ban


@torch.no_grad()
def beam_search(model, z: torch.Tensor | None, batch: int, beam_size: int, max_length: int,
                length_penalty: float, banned: list[int]) -> tuple[list[list[int]], list[float]]:
    """The best hypothesis of each row of `z` (token ids without <bos>/<eos>) and its normalised score.

    Rows are (sentence, hypothesis) pairs, sentence-major. A finished hypothesis is extended only by
    <pad> (which live hypotheses never emit, since it is banned) at log-probability 0 and no extra
    length, which keeps it in the beam with its score unchanged.
    """
    config = model.config
    device = model.device
    eos, pad = config.eos_token_id, config.pad_token_id
    width = beam_size
    z_rows = z.to(device).repeat_interleave(width, dim=0) if z is not None else None
    sentence_ids = torch.arange(batch, device=device)  # original position of each sentence still searching
    sums = torch.full((batch, width), float("-inf"), device=device)
    sums[:, 0] = 0.0  # at the start only one hypothesis is real: the empty one
    lengths = torch.zeros((batch, width), dtype=torch.long, device=device)
    ended = torch.zeros((batch, width), dtype=torch.bool, device=device)
    history = torch.empty((batch, width, 0), dtype=torch.long, device=device)
    tokens = torch.full((batch * width,), config.bos_token_id, dtype=torch.long, device=device)
    best: list[list[int]] = [[] for _ in range(batch)]
    best_scores = [0.0] * batch
    stay_log_probs = torch.full((width,), float("-inf"), device=device)
    stay_log_probs[0] = 0.0
    state = None
    for step in range(max_length):
        logits, state = model.decode_step(tokens, z_rows, state)
        ban(logits, banned)
        # Within one hypothesis every extension shares the normaliser, so only its `width` likeliest
        # tokens can make the next beam: the full vocabulary is read twice and never copied.
        best_logits, best_tokens = logits.topk(min(width, logits.size(-1)), dim=-1)
        log_probs = (best_logits - logits.logsumexp(dim=-1, keepdim=True)).view(-1, width, best_logits.size(-1))
        best_tokens = best_tokens.view_as(log_probs)
        stays = ended.unsqueeze(-1)
        log_probs = torch.where(stays, stay_log_probs[: log_probs.size(-1)], log_probs)
        best_tokens = best_tokens.masked_fill(stays, pad)
        candidate_sums = sums.unsqueeze(-1) + log_probs
        candidate_lengths = lengths + (~ended).long()
        normaliser = candidate_lengths.clamp(min=1).float().pow(length_penalty).unsqueeze(-1)
        scores, flat = (candidate_sums / normaliser).flatten(1).topk(width, dim=-1)
        parent, token = flat // log_probs.size(-1), best_tokens.flatten(1).gather(1, flat)
        sums = candidate_sums.flatten(1).gather(1, flat)
        lengths = candidate_lengths.gather(1, parent)
        ended = ended.gather(1, parent) | (token == eos)
        history = torch.cat([history.gather(1, parent.unsqueeze(-1).expand_as(history)), token.unsqueeze(-1)], dim=2)
        live_sentences = torch.arange(parent.size(0), device=device).unsqueeze(1)
        state = model.decoder.reorder_state(state, (live_sentences * width + parent).view(-1))
        tokens = token.view(-1)
        complete = ended.all(dim=1) if step < max_length - 1 else torch.ones_like(ended[:, 0])
        if bool(complete.any()):
            for row in complete.nonzero().squeeze(1).tolist():
                position = int(sentence_ids[row])
                best[position] = strip(history[row, 0].tolist(), eos, pad)
                best_scores[position] = float(scores[row, 0])
            keep = (~complete).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            rows = (keep.unsqueeze(1) * width + torch.arange(width, device=device)).view(-1)
            sentence_ids, sums, lengths, ended, history = (sentence_ids[keep], sums[keep], lengths[keep],
                                                           ended[keep], history[keep])
            state = model.decoder.reorder_state(state, rows)
            tokens = tokens[rows]
            z_rows = z_rows[rows] if z_rows is not None else None
    return best, best_scores


def strip(ids: list[int], eos: int, pad: int) -> list[int]:
    """The words of a hypothesis: everything before its <eos> (or its stay marker <pad>)."""
    for position, token in enumerate(ids):
        if token in (eos, pad):
            return ids[:position]
    return ids

"""Turning latent codes into sentences with any decoding strategy, many codes at once, and scoring the result.

Only `model.decode_step(token_ids, z, state)` and `model.decoder.reorder_state(state, indices)` are used,
so every decoder that offers those two (the LSTM now, a Transformer later) gets every strategy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from ..checks import is_number, is_whole
from ..errors import TextVAEError
from .beam_search import beam_search
from .sampling import ban, banned_ids, next_tokens

STRATEGIES = ("greedy", "sample", "top-k", "top-p", "beam")


@dataclass(frozen=True)
class DecodingOptions:
    """How to turn next-token logits into sentences; checked when made, so bad values fail before decoding.

    temperature divides the logits of the sampling strategies (0 = greedy); top_k and top_p size the
    filters of 'top-k' and 'top-p'; beam_size and length_penalty shape 'beam'; max_length counts the
    decoding steps (<eos> included); ban_unk forbids <unk> (<pad> and <bos> are always forbidden).
    """

    strategy: str = "greedy"
    temperature: float = 1.0
    top_k: int = 10
    top_p: float = 0.9
    beam_size: int = 5
    length_penalty: float = 1.0
    max_length: int = 50
    ban_unk: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise TextVAEError(f"strategy: '{self.strategy}' is not one of {', '.join(STRATEGIES)}")
        if not is_number(self.temperature) or self.temperature < 0:
            raise TextVAEError(f"temperature: must be a number >= 0 (0 = greedy), got {self.temperature!r}")
        if not is_whole(self.top_k) or self.top_k < 1:
            raise TextVAEError(f"top_k: must be a whole number >= 1, got {self.top_k!r}")
        if not is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise TextVAEError(f"top_p: must be in (0, 1] (the probability mass kept), got {self.top_p!r}")
        if not is_whole(self.beam_size) or self.beam_size < 1:
            raise TextVAEError(f"beam_size: must be a whole number >= 1, got {self.beam_size!r}")
        if not is_number(self.length_penalty):
            raise TextVAEError(f"length_penalty: must be a number (0 = plain log-probability), got "
                               f"{self.length_penalty!r}")
        if not is_whole(self.max_length) or self.max_length < 1:
            raise TextVAEError(f"max_length: must be a positive whole number, got {self.max_length!r}")

    @classmethod
    def build(cls, **settings) -> DecodingOptions:
        """Options from keyword settings, with an unknown name reported as a TextVAEError, not a TypeError."""
        names = [field.name for field in fields(cls)]
        for name in settings:
            if name not in names:
                raise TextVAEError(f"unknown decoding option '{name}'; choose from {', '.join(names)}")
        options = cls(**settings)
        options.check_applies()
        return options

    def check_applies(self) -> None:
        """Refuse an option the strategy would ignore (`--strategy beam --top-p 0.5`), rather than drop it
        silently; options left at their defaults pass. The API and the CLI build their options through `build`."""
        for name, strategies in APPLIES_TO.items():
            value = getattr(self, name)
            if self.strategy not in strategies and value != DEFAULTS[name]:
                flag = "--" + name.replace("_", "-")
                raise TextVAEError(f"{name} ({flag}) {value!r} does nothing with strategy '{self.strategy}': it applies "
                                   f"to {', '.join(strategies)}; remove it or choose one of those strategies")


# The options each strategy reads; the others must keep their defaults (DecodingOptions.build refuses a change).
APPLIES_TO = {"temperature": ("sample", "top-k", "top-p"), "top_k": ("top-k",), "top_p": ("top-p",),
              "beam_size": ("beam",), "length_penalty": ("beam",)}
DEFAULTS = {field.name: field.default for field in fields(DecodingOptions)}


@torch.no_grad()
def decode(model, z: torch.Tensor | None, options: DecodingOptions = DecodingOptions(), count: int | None = None,
           generator: torch.Generator | None = None) -> list[list[int]]:
    """Token ids (without <bos>/<eos>) decoded from each row of `z` (or `count` sequences for an LM).

    Beam search also decodes greedily and keeps, per row, whichever of the two has the higher
    length-normalised log-probability: plain beam search can prune the greedy prefix early and end
    below it, and this way a wider beam never returns a worse sentence than greedy decoding.
    """
    batch = z.size(0) if z is not None else count
    if z is not None:
        z = z.to(model.device)
    limit = getattr(model.config, "position_limit", None)  # a Transformer reads at most this many positions
    if limit is not None and options.max_length > limit:
        options = replace(options, max_length=limit)
    banned = banned_ids(model.config, options.ban_unk)
    if options.strategy != "beam":
        return step_decode(model, z, batch, options, banned, generator)
    found, found_scores = beam_search(model, z, batch, options.beam_size, options.max_length,
                                      options.length_penalty, banned)
    if options.beam_size == 1:
        return found
    greedy, log_probs = step_decode(model, z, batch, DecodingOptions(max_length=options.max_length), banned,
                                    with_log_probs=True)
    greedy_scores = normalise(log_probs, greedy, options.max_length, options.length_penalty)
    return [b if b_score >= g_score else g for b, g, b_score, g_score
            in zip(found, greedy, found_scores, greedy_scores.tolist())]


@torch.no_grad()
def step_decode(model, z: torch.Tensor | None, batch: int, options: DecodingOptions, banned: list[int],
                generator: torch.Generator | None = None, with_log_probs: bool = False):
    """Greedy or sampled decoding: all rows advance together one token a step; a row that emits <eos>
    leaves the batch (its state rows are dropped), so the tail of long sentences costs only their own rows.

    With `with_log_probs`, also each sequence's log-probability (<eos> included) under the banned
    softmax at temperature 1, as `score_sequences` computes it.
    """
    config = model.config
    device = model.device
    eos = config.eos_token_id
    out = torch.full((batch, options.max_length), eos, dtype=torch.long, device=device)
    lengths = torch.full((batch,), options.max_length, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)  # original position of each row still decoding
    tokens = torch.full((batch,), config.bos_token_id, dtype=torch.long, device=device)
    log_probs = torch.zeros(batch, device=device)
    state = None
    for step in range(options.max_length):
        logits, state = model.decode_step(tokens, z, state)
        tokens = next_tokens(ban(logits, banned), options.strategy, options.temperature, options.top_k,
                             options.top_p, generator)
        if with_log_probs:
            chosen = logits.gather(1, tokens.unsqueeze(1)).squeeze(1)
            log_probs[rows] += chosen - logits.logsumexp(dim=1)
        out[rows, step] = tokens
        stopped = tokens == eos
        if bool(stopped.any()):
            lengths[rows[stopped]] = step
            going = (~stopped).nonzero().squeeze(1)
            if going.numel() == 0:
                break
            rows, tokens = rows[going], tokens[going]
            z = z.index_select(0, going) if z is not None else None
            state = model.decoder.reorder_state(state, going)
    sequences = [ids[:length] for ids, length in zip(out.tolist(), lengths.tolist())]
    return (sequences, log_probs) if with_log_probs else sequences


def normalise(log_probs: torch.Tensor, sequences: list[list[int]], max_length: int,
              length_penalty: float) -> torch.Tensor:
    """log p(y|z) / |y|**length_penalty, where |y| counts the <eos> of sequences that have one."""
    lengths = torch.tensor([len(ids) + (len(ids) < max_length) for ids in sequences], device=log_probs.device)
    return log_probs / lengths.float().pow(length_penalty)


@torch.no_grad()
def score_sequences(model, z: torch.Tensor | None, sequences: list[list[int]], max_length: int = 50,
                    ban_unk: bool = False, length_penalty: float = 0.0) -> torch.Tensor:
    """Length-normalised log-probabilities log p(y|z) / |y|**length_penalty of decoded sequences, one per row.

    The probabilities are those decoding draws from: the model's softmax with the banned tokens removed.
    A sequence shorter than `max_length` ended with <eos>, which is scored and counted in |y|; one of
    `max_length` tokens was cut off there, and has no <eos>.
    """
    config = model.config
    device = model.device
    targets = [list(ids) + ([config.eos_token_id] if len(ids) < max_length else []) for ids in sequences]
    lengths = torch.tensor([len(ids) for ids in targets], device=device)
    width = int(lengths.max())
    padded = torch.full((len(targets), width), config.pad_token_id, dtype=torch.long, device=device)
    for row, ids in enumerate(targets):
        padded[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    inputs = torch.cat([torch.full_like(padded[:, :1], config.bos_token_id), padded[:, :-1]], dim=1)
    banned = banned_ids(config, ban_unk)
    z = z.to(device) if z is not None else None
    total = torch.zeros(len(targets), device=device)
    state = None
    for step in range(width):
        logits, state = model.decode_step(inputs[:, step], z, state)
        log_probs = ban(logits, banned).log_softmax(dim=-1).gather(1, padded[:, step: step + 1]).squeeze(1)
        total += torch.where(step < lengths, log_probs, torch.zeros_like(log_probs))
    return normalise(total, sequences, max_length, length_penalty)


def prior_sample(model, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`count` latent codes from the prior N(0, I)."""
    return torch.randn((count, model.config.latent_size), generator=generator, device=model.device)

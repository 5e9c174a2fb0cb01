"""Decoding strategies, latent paths and the generation API: each acceptance point of issue 4 as a test.

Most tests use small randomly initialised models (fast, and their flat next-token distributions make
every filter matter); the API tests use the session's tiny trained run.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import tiny_model

import textvae
import textvae.generation.sampling
from textvae.generation.beam_search import beam_search
from textvae.cli import main
from textvae.errors import TextVAEError
from textvae.generation import DecodingOptions, decode, score_sequences
from textvae.generation.latent_space import (
    analogy_point,
    collapse_repeats,
    latent_path,
    closest_codes,
    slerp_path,
    traversal_points,
)
from textvae.modeling.state import select_rows
from textvae.generation.sampling import ban, banned_ids, draw, draw_nucleus, top_k_filter, top_p_filter

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def latent_codes(count: int, size: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn((count, size), generator=torch.Generator().manual_seed(seed))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def lively_model(seed: int, **overrides):
    """A random model with larger decoder weights and a likelier <eos>: its greedy sentences end at many
    different lengths (a plain random LSTM tends to repeat itself up to the length limit)."""
    model = tiny_model(seed=seed, decoder_hidden_size=16, **overrides)
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.mul_(4.0)
        model.decoder.output.bias[EOS] += 1.0
    return model


def step_logits(model, z_row: torch.Tensor, ids: list[int], max_length: int, ban_unk: bool = False):
    """The targets of one decoded sequence (with its <eos> when it has one) and the banned logits before each."""
    targets = ids + ([EOS] if len(ids) < max_length else [])
    tokens, state, logits_per_step = torch.tensor([BOS]), None, []
    for target in targets:
        logits, state = model.decode_step(tokens, z_row.unsqueeze(0), state)
        logits_per_step.append(ban(logits, banned_ids(model.config, ban_unk))[0])
        tokens = torch.tensor([target])
    return targets, logits_per_step


# ---- filters and sampling strategies --------------------------------------------------------------

def test_top_k_filter_keeps_exactly_the_k_largest_logits():
    logits = torch.randn(50, 30, generator=seeded(1))
    for k in (1, 3, 29, 30, 100):
        kept = torch.isfinite(top_k_filter(logits, k))
        assert (kept.sum(1) == min(k, 30)).all()
        threshold = logits.topk(min(k, 30), dim=1).values[:, -1:]
        assert torch.equal(kept, logits >= threshold)


def test_top_k_decoding_never_emits_a_token_outside_the_k_most_likely():
    model, k, max_length = tiny_model(seed=2), 3, 8
    z = latent_codes(60, seed=2)
    options = DecodingOptions(strategy="top-k", top_k=k, temperature=2.0, max_length=max_length)
    sequences = decode(model, z, options, generator=seeded(0))
    emitted_outside_top_1 = 0
    for z_row, ids in zip(z, sequences):
        targets, logits_per_step = step_logits(model, z_row, ids, max_length)
        for target, logits in zip(targets, logits_per_step):
            rank = int((logits > logits[target]).sum())
            assert rank < k, (ids, target, rank)
            emitted_outside_top_1 += rank > 0
    assert emitted_outside_top_1 > 20  # the draws do use the k tokens, not just the best one


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9, 0.99, 1.0])
def test_top_p_filter_keeps_the_smallest_most_likely_set_with_mass_at_least_p(p):
    logits = torch.randn(40, 30, generator=seeded(3)) * 2
    logits[:, PAD] = float("-inf")  # a banned token has probability 0 and never counts
    probabilities = logits.softmax(dim=1)
    kept = torch.isfinite(top_p_filter(logits, p))
    for row_probabilities, row_kept in zip(probabilities, kept):
        kept_probabilities = row_probabilities[row_kept]
        assert row_kept.any()
        assert float(kept_probabilities.sum()) >= p - 1e-6  # mass at least p ...
        assert float(kept_probabilities.sum() - kept_probabilities.min()) < p  # ... and no smaller set has it
        left_out = torch.cat([row_probabilities[~row_kept], torch.zeros(1)])
        assert float(kept_probabilities.min()) >= float(left_out.max())  # the most likely ones


def test_draws_follow_the_weights_and_the_renormalised_nucleus(monkeypatch):
    weights = torch.tensor([[0.0, 1.0, 3.0, 0.0, 6.0]]).repeat(20000, 1)
    counts = torch.bincount(draw(weights, seeded(0)), minlength=5) / 20000
    assert counts[[0, 3]].sum() == 0
    assert torch.allclose(counts, weights[0] / 10, atol=0.015)
    probabilities = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]]).repeat(20000, 1)
    for first_look in (5, 2):  # the nucleus {1, 3, 4} fits in the first look, or needs the full sort
        monkeypatch.setattr(textvae.generation.sampling, "NUCLEUS_FIRST_LOOK", first_look)
        counts = torch.bincount(draw_nucleus(probabilities, 0.8, seeded(1)), minlength=5) / 20000
        assert torch.allclose(counts, torch.tensor([0.0, 0.4, 0.0, 0.3, 0.15]) / 0.85, atol=0.015)


@pytest.mark.parametrize("first_look", [64, 2])
def test_top_p_decoding_draws_only_from_the_nucleus(monkeypatch, first_look):
    monkeypatch.setattr(textvae.generation.sampling, "NUCLEUS_FIRST_LOOK", first_look)
    model, p, max_length = tiny_model(seed=4), 0.5, 8
    z = latent_codes(60, seed=4)
    sequences = decode(model, z, DecodingOptions(strategy="top-p", top_p=p, max_length=max_length),
                       generator=seeded(0))
    distinct_tokens = set()
    for z_row, ids in zip(z, sequences):
        targets, logits_per_step = step_logits(model, z_row, ids, max_length)
        for target, logits in zip(targets, logits_per_step):
            assert bool(torch.isfinite(top_p_filter(logits.unsqueeze(0), p))[0, target]), (ids, target)
            distinct_tokens.add(target)
    assert len(distinct_tokens) > 5


@pytest.mark.parametrize("strategy", ["sample", "top-k", "top-p"])
def test_temperature_going_to_zero_equals_greedy(strategy):
    model = tiny_model(seed=5)
    z = latent_codes(40, seed=5)
    greedy = decode(model, z, DecodingOptions(max_length=12))
    for temperature in (0.0, 1e-6):
        options = DecodingOptions(strategy=strategy, temperature=temperature, top_k=5, max_length=12)
        assert decode(model, z, options, generator=seeded(9)) == greedy
    assert decode(model, z, DecodingOptions(strategy=strategy, temperature=1.0, top_k=5, max_length=12),
                  generator=seeded(9)) != greedy


@pytest.mark.parametrize("strategy", ["sample", "top-k", "top-p"])
def test_the_same_seed_gives_the_same_samples(strategy):
    model = tiny_model(seed=6)
    z = latent_codes(20, seed=6)
    options = DecodingOptions(strategy=strategy, top_k=5, top_p=0.8, max_length=10)
    first = decode(model, z, options, generator=seeded(7))
    assert decode(model, z, options, generator=seeded(7)) == first
    assert decode(model, z, options, generator=seeded(8)) != first


def test_pad_and_bos_are_never_emitted_unk_only_when_allowed_and_eos_stops():
    model = tiny_model(seed=7)
    with torch.no_grad():
        model.decoder.output.bias[[PAD, BOS, UNK]] += 50.0  # the model would rather say these than anything
    z = latent_codes(10, seed=7)
    for strategy in ("greedy", "sample", "top-k", "top-p", "beam"):
        for ban_unk in (False, True):
            options = DecodingOptions(strategy=strategy, max_length=6, ban_unk=ban_unk, beam_size=3)
            sequences = decode(model, z, options, generator=seeded(0))
            tokens = {token for ids in sequences for token in ids}
            assert not tokens & {PAD, BOS, EOS}, (strategy, tokens)
            assert (UNK in tokens) != ban_unk, (strategy, ban_unk)
            assert all(len(ids) <= 6 for ids in sequences)
    with torch.no_grad():
        model.decoder.output.bias[EOS] += 100.0
    for strategy in ("greedy", "sample", "beam"):
        assert decode(model, z, DecodingOptions(strategy=strategy)) == [[] for _ in range(10)]


# ---- beam search ----------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, {"z_conditioning": "input"}, {"decoder_layers": 2}])
def test_beam_size_one_equals_greedy(overrides):
    model = tiny_model(seed=8, **overrides)
    z = latent_codes(30, seed=8)
    greedy = decode(model, z, DecodingOptions(max_length=15))
    for length_penalty in (0.0, 1.0):
        found, _ = beam_search(model, z, 30, 1, 15, length_penalty, banned_ids(model.config))
        assert found == greedy


@pytest.mark.parametrize("length_penalty", [0.0, 0.6, 1.0])
def test_a_wider_beam_never_scores_below_beam_one(length_penalty):
    model = tiny_model(seed=9)
    z = latent_codes(40, seed=9)
    greedy = decode(model, z, DecodingOptions(max_length=10))
    greedy_scores = score_sequences(model, z, greedy, 10, length_penalty=length_penalty)
    improved = 0
    for beam_size in (2, 3, 5, 8):
        options = DecodingOptions(strategy="beam", beam_size=beam_size, length_penalty=length_penalty, max_length=10)
        scores = score_sequences(model, z, decode(model, z, options), 10, length_penalty=length_penalty)
        assert (scores >= greedy_scores - 1e-5).all(), (beam_size, scores - greedy_scores)
        improved += int((scores > greedy_scores + 1e-4).sum())
    assert improved > 0  # the beam does search: it finds better sentences than greedy for some codes
    plain, _ = beam_search(model, z, 40, 3, 10, length_penalty, banned_ids(model.config))
    plain_scores = score_sequences(model, z, plain, 10, length_penalty=length_penalty)
    assert (plain_scores < greedy_scores - 1e-5).any()  # why decode() lets the greedy sentence compete


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_a_beam_wide_enough_to_prune_nothing_finds_the_best_sequence(length_penalty):
    """Vocabulary of 6 (4 emittable: <eos>, <unk> and two words), 3 steps: 40 hypotheses, all enumerable."""
    model = tiny_model(seed=10, vocab_size=6)
    z = latent_codes(8, seed=10)
    words, max_length = [UNK, 4, 5], 3
    hypotheses = [list(ids) for length in range(max_length + 1) for ids in itertools.product(words, repeat=length)]
    found, found_scores = beam_search(model, z, 8, 64, max_length, length_penalty, banned_ids(model.config))
    for row in range(8):
        scores = score_sequences(model, z[row].expand(len(hypotheses), -1), hypotheses, max_length,
                                 length_penalty=length_penalty)
        best = int(scores.argmax())
        assert found[row] == hypotheses[best]
        assert found_scores[row] == pytest.approx(float(scores[best]), abs=1e-5)


def test_beam_scores_are_the_length_normalised_log_probabilities_of_its_sentences():
    model = tiny_model(seed=11)
    z = latent_codes(12, seed=11)
    found, found_scores = beam_search(model, z, 12, 4, 9, 0.7, banned_ids(model.config))
    assert torch.allclose(torch.tensor(found_scores), score_sequences(model, z, found, 9, length_penalty=0.7),
                          atol=1e-5)


# ---- batching -------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, {"z_conditioning": "init", "decoder_layers": 2}])
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_batched_decoding_equals_one_by_one_decoding(strategy, overrides):
    model = lively_model(seed=12, **overrides)
    z = 2 * latent_codes(25, seed=12)
    options = DecodingOptions(strategy=strategy, beam_size=4, max_length=20)
    batched = decode(model, z, options)
    assert batched == [decode(model, z[row: row + 1], options)[0] for row in range(25)]
    assert len({len(ids) for ids in batched}) > 3  # rows stop at different steps, so dropping them is exercised


def test_a_decoder_with_a_batch_first_dict_state_gets_every_strategy():
    """Generation talks to a model only through decode_step and decoder.reorder_state, so any state layout works."""

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(12, 6)
            self.mix = torch.nn.Linear(6 + 6 + 2, 6)
            self.output = torch.nn.Linear(6, 12)

        def reorder_state(self, state, indices):
            return select_rows(state, indices, dim=0)

    class ToyModel(torch.nn.Module):
        config = tiny_model(vocab_size=12).config

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.decoder = Decoder()

        @property
        def device(self):
            return torch.device("cpu")

        def decode_step(self, token_ids, z, state):
            memory = state["memory"] if state is not None else torch.zeros(token_ids.size(0), 6)
            memory = torch.tanh(self.decoder.mix(torch.cat([self.decoder.embedding(token_ids), memory, z], 1)))
            return self.decoder.output(memory), {"memory": memory, "steps": [memory.sum(1, keepdim=True)]}

    model = ToyModel().eval()
    z = latent_codes(15, size=2, seed=13)
    for strategy in ("greedy", "top-p", "beam"):
        options = DecodingOptions(strategy=strategy, beam_size=3, max_length=12, temperature=0.0)
        batched = decode(model, z, options)
        assert batched == [decode(model, z[row: row + 1], options)[0] for row in range(15)]
    greedy = decode(model, z, DecodingOptions(max_length=12))
    assert beam_search(model, z, 15, 1, 12, 1.0, banned_ids(model.config))[0] == greedy


def test_a_language_model_decodes_with_every_strategy():
    model = tiny_model(seed=14, model_variant="lm")
    for strategy in ("greedy", "sample", "top-k", "top-p", "beam"):
        sequences = decode(model, None, DecodingOptions(strategy=strategy, max_length=7), count=4, generator=seeded(0))
        assert len(sequences) == 4 and all(len(ids) <= 7 for ids in sequences)


# ---- latent geometry ------------------------------------------------------------------------------

def test_slerp_keeps_the_ends_and_interpolates_norm_and_angle():
    start, end = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 1.0])
    path = slerp_path(start, end, 5)
    assert torch.equal(path[0], start) and torch.equal(path[-1], end)
    weights = torch.linspace(0, 1, 5)
    assert torch.allclose(path.norm(dim=1), (1 - weights) * start.norm() + weights * end.norm(), atol=1e-6)
    angles = torch.arccos(torch.nn.functional.cosine_similarity(path, start.expand_as(path)).clamp(-1, 1))
    assert torch.allclose(angles, weights * math.pi / 2, atol=1e-5)  # even steps along the great circle
    assert torch.allclose(path[:, 1], path[:, 2])  # stays in the plane of the two ends


def test_slerp_of_random_codes_and_its_fallbacks():
    codes = latent_codes(2, size=16, seed=15)
    path = latent_path(codes[0], codes[1], 9, "slerp")
    weights = torch.linspace(0, 1, 9)
    assert torch.allclose(path.norm(dim=1), (1 - weights) * codes[0].norm() + weights * codes[1].norm(), atol=1e-5)
    linear = latent_path(codes[0], codes[1], 9, "linear")
    assert torch.equal(linear[0], codes[0]) and torch.allclose(linear[4], codes.mean(0), atol=1e-6)
    assert path[4].norm() > linear[4].norm()  # the straight line cuts towards the origin, slerp does not
    parallel = slerp_path(codes[0], 2 * codes[0], 3)
    assert torch.allclose(parallel[1], 1.5 * codes[0], atol=1e-6)
    assert torch.allclose(slerp_path(torch.zeros(16), codes[1], 3)[1], codes[1] / 2)


def test_analogy_traversal_and_collapse():
    z_a, z_b, z_c = latent_codes(3, size=4, seed=16)
    assert torch.allclose(analogy_point(z_a, z_b, z_c), z_c + (z_b - z_a))
    points = traversal_points(z_a, 2, torch.tensor([-1.0, 0.0, 2.0]))
    assert torch.equal(points[:, 2], torch.tensor([-1.0, 0.0, 2.0]))
    assert torch.equal(points[:, [0, 1, 3]], z_a[[0, 1, 3]].expand(3, 3))
    with pytest.raises(TextVAEError, match="dimension"):
        traversal_points(z_a, 4, torch.zeros(2))
    assert collapse_repeats(["a", "a", "b", "b", "b", "a"]) == [(0, "a"), (2, "b"), (5, "a")]


def test_nearest_by_cosine_and_by_euclidean_distance():
    corpus = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    query = torch.tensor([[2.0, 0.0]])
    cosine_scores, cosine_indices = closest_codes(query, corpus, 2, "cosine")
    assert cosine_indices.tolist() == [[0, 1]] and cosine_scores[0, 0] == pytest.approx(1.0)
    distances, indices = closest_codes(query, corpus, 3, "euclidean")
    assert indices.tolist() == [[0, 2, 3]]
    assert distances[0].tolist() == pytest.approx([1.0, math.sqrt(5), 3.0], abs=1e-5)


# ---- the API and the command line -----------------------------------------------------------------

FIRST, SECOND = "the happy dogs chased their ball .", "will the clerk review the report ?"


@pytest.mark.parametrize("path", ["linear", "slerp"])
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_interpolation_with_two_steps_is_exactly_the_two_reconstructions(tiny_run, path, strategy):
    vae = textvae.load(tiny_run)
    assert vae.interpolate(FIRST, SECOND, steps=2, path=path, strategy=strategy) == \
        vae.reconstruct([FIRST, SECOND], strategy=strategy)
    ends = vae.encode([FIRST, SECOND])
    assert vae.interpolate(ends[0], ends[1], steps=2, path=path) == vae.reconstruct([FIRST, SECOND])


def test_api_generation_methods(tiny_run, tmp_path):
    vae = textvae.load(tiny_run)
    assert vae.sample(4, strategy="top-p", top_p=0.9, seed=3) == vae.sample(4, strategy="top-p", top_p=0.9, seed=3)
    assert len(vae.sample(3, strategy="beam", beam_size=3)) == 3
    prior_path = vae.interpolate(steps=6, path="slerp", seed=1)
    assert len(prior_path) == 6 and prior_path == vae.interpolate(steps=6, path="slerp", seed=1)
    collapsed = vae.interpolate(FIRST, SECOND, steps=9, collapse=True)
    assert collapsed == [line for _, line in collapse_repeats(vae.interpolate(FIRST, SECOND, steps=9))]
    z = vae.encode([FIRST, SECOND, "the clerk wrote the report ."], return_tensors="pt")
    assert vae.analogy(FIRST, SECOND, "the clerk wrote the report .") == vae.decode_latents(
        (z[1] - z[0] + z[2]).unsqueeze(0))[0]
    sweep = vae.traverse(FIRST, dimension=1, span=2.0, steps=5)
    assert len(sweep) == 5 and sweep[2] == vae.decode_latents(
        traversal_points(z[0], 1, torch.tensor([0.0])))[0]
    around = vae.neighbourhood(FIRST, n=6, radius=0.0)
    assert around == vae.reconstruct([FIRST]) * 6  # radius 0: every neighbour is the sentence's own code
    assert vae.neighbourhood(FIRST, n=6, radius=1.0, seed=2) == vae.neighbourhood(FIRST, n=6, radius=1.0, seed=2)
    corpus = ["the clerk wrote the report .", FIRST, "a dog ran .", SECOND]
    found = vae.nearest(FIRST, sentences=corpus, k=2)
    assert found[0][0] == FIRST and found[0][1] == pytest.approx(1.0, abs=1e-5)
    by_distance = vae.nearest(SECOND, sentences=corpus, k=4, metric="euclidean")
    assert by_distance[0] == (SECOND, pytest.approx(0.0, abs=1e-3))
    assert [score for _, score in by_distance] == sorted(score for _, score in by_distance)


@pytest.mark.parametrize("call, message", [
    (lambda vae: vae.sample(2, strategy="nucleus"), "strategy: 'nucleus' is not one of"),
    (lambda vae: vae.sample(2, strategy="top-p", top_p=0.0), "top_p: must be in (0, 1]"),
    (lambda vae: vae.sample(2, strategy="top-p", top_p=1.5), "top_p: must be in (0, 1]"),
    (lambda vae: vae.sample(2, strategy="top-k", top_k=0), "top_k: must be a whole number >= 1"),
    (lambda vae: vae.sample(2, strategy="beam", beam_size=0), "beam_size: must be a whole number >= 1"),
    (lambda vae: vae.sample(2, strategy="sample", temperature=-0.5), "temperature: must be a number >= 0"),
    (lambda vae: vae.sample(2, topp=0.9), "unknown decoding option 'topp'"),
    (lambda vae: vae.interpolate(FIRST, SECOND, steps=1), "steps: must be a whole number >= 2"),
    (lambda vae: vae.interpolate(FIRST, SECOND, path="curved"), "path: 'curved' is not one of linear, slerp"),
    (lambda vae: vae.interpolate(FIRST), "give both ends"),
    (lambda vae: vae.interpolate(FIRST, [0.0, 1.0]), "a latent vector needs 4 numbers"),
    (lambda vae: vae.traverse(FIRST, dimension=4), "dimension: must be a whole number in 0..3"),
    (lambda vae: vae.traverse(FIRST, dimension=0, span=0), "span: must be a number > 0"),
    (lambda vae: vae.neighbourhood(FIRST, radius=-1.0), "radius: must be a number >= 0"),
    (lambda vae: vae.nearest(FIRST, sentences=[SECOND], k=0), "k: must be a whole number >= 1"),
    (lambda vae: vae.nearest(FIRST, sentences=[SECOND], metric="manhattan"), "metric: 'manhattan' is not one of"),
    (lambda vae: vae.nearest(FIRST), "give the sentences to search"),
])
def test_bad_generation_arguments_raise_one_clear_error(tiny_run, call, message):
    vae = textvae.load(tiny_run)
    with pytest.raises(TextVAEError) as caught:
        call(vae)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def cli_error(capsys, *argv) -> str:
    """Run the CLI, expect exit code 2 and one stderr line 'textvae: error: ...'; return that line."""
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("textvae: error: "), err
    return err


def test_cli_generation_commands(tiny_run, tmp_path, capsys):
    run = str(tiny_run)
    assert main(["sample", run, "-n", "3", "--strategy", "top-k", "--top-k", "5", "--seed", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["interpolate", run, FIRST, SECOND, "--steps", "9", "--path", "slerp"]) == 0
    full = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [int(row[0]) for row in full] == list(range(9))
    assert full[0][2].startswith("first: ") and full[-1][2].startswith("second: ")  # how faithful each end is
    assert main(["interpolate", run, FIRST, SECOND, "--steps", "9", "--path", "slerp", "--collapse"]) == 0
    collapsed = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(int(row[0]), row[1]) for row in collapsed] == collapse_repeats([row[1] for row in full])
    assert main(["interpolate", run, "--steps", "4", "--seed", "2", "--strategy", "beam"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["analogy", run, FIRST, SECOND, "the clerk wrote the report ."]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["traverse", run, FIRST, "--dim", "3", "--steps", "3", "--span", "2"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["-2.00", "+0.00", "+2.00"]
    assert main(["neighbourhood", run, FIRST, "-n", "4", "--radius", "0.3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4

    lines = [FIRST, SECOND, "the clerk wrote the report .", "a dog ran ."]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n", encoding="utf-8")
    assert main(["encode", run, str(corpus), "--out", str(tmp_path / "means.npy")]) == 0
    means = np.load(tmp_path / "means.npy")
    assert np.allclose(means, textvae.load(tiny_run).encode(lines), atol=1e-6)  # one row per line, in order
    assert main(["encode", run, str(corpus), "--out", str(tmp_path / "drawn.npy"), "--sample", "--seed", "1"]) == 0
    assert np.load(tmp_path / "drawn.npy").shape == (4, 4)
    assert not np.allclose(np.load(tmp_path / "drawn.npy"), means)
    capsys.readouterr()
    assert main(["nearest", run, "--query", SECOND, "--corpus", str(corpus), "-k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"query: {SECOND}" and len(out) == 3 and out[1].startswith("1\t1.0000\tline ") and out[1].endswith("\t" + SECOND)

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    assert "has only blank lines" in cli_error(capsys, "encode", run, empty, "--out", tmp_path / "x.npy")
    assert "has only blank lines" in cli_error(capsys, "nearest", run, "--query", FIRST, "--corpus", empty)
    assert "strategy: 'best' is not one of" in cli_error(capsys, "sample", run, "--strategy", "best")
    assert "top_p" in cli_error(capsys, "sample", run, "--strategy", "top-p", "--top-p", "0")
    assert "top_k" in cli_error(capsys, "reconstruct", run, FIRST, "--strategy", "top-k", "--top-k", "0")
    assert "beam_size" in cli_error(capsys, "interpolate", run, FIRST, SECOND, "--strategy", "beam", "--beam-size", "0")
    assert "steps" in cli_error(capsys, "interpolate", run, FIRST, SECOND, "--steps", "1")
    assert "dimension" in cli_error(capsys, "traverse", run, "--dim", "7")
    assert "give two sentences" in cli_error(capsys, "interpolate", run, FIRST)

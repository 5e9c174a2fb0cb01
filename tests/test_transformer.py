"""Transformer encoders and decoders: causal and padding masks, the key/value cache, every way z enters,
any encoder with any decoder, and the whole pipeline (train, evaluate, sample, save/load) on them."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_MODEL, batch_of, scramble_padding, tiny_model

from textvae.cli import main
from textvae.errors import TextVAEError
from textvae.generation import DecodingOptions, decode
from textvae.modeling import TextVAE, TextVAEConfig
from textvae.modeling.transformer import causal_mask, sinusoidal_positions

SENTENCES = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [15, 16, 17, 18]]
TRANSFORMER = dict(embedding_size=16, encoder_hidden_size=16, decoder_hidden_size=16, attention_heads=4,
                   feedforward_size=32, encoder_layers=2, decoder_layers=2, latent_size=3)


def transformer_model(seed: int = 0, **overrides) -> TextVAE:
    settings = dict(TRANSFORMER, encoder_type="transformer", decoder_type="transformer", z_conditioning="both")
    settings.update(overrides)
    return tiny_model(seed, **settings)


def teacher_forced_logits(model: TextVAE, inputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Logits (batch, steps, vocab) of the decoder reading all of `inputs` in one uncached pass."""
    return model.decoder.logits(model.decoder(inputs, z)[0])


@pytest.mark.parametrize("conditioning", ["memory", "input", "both"])
def test_changing_a_later_token_never_changes_earlier_logits(conditioning):
    model = transformer_model(z_conditioning=conditioning)
    z = torch.randn(2, 3)
    inputs = torch.randint(4, 30, (2, 8))
    reference = teacher_forced_logits(model, inputs, z)
    for changed in range(1, 8):
        altered = inputs.clone()
        altered[:, changed] = (altered[:, changed] + 1 - 4) % 26 + 4
        logits = teacher_forced_logits(model, altered, z)
        assert torch.allclose(logits[:, :changed], reference[:, :changed], atol=1e-5)
        assert not torch.allclose(logits[:, changed], reference[:, changed], atol=1e-4)


@pytest.mark.parametrize("pooling", ["mean", "summary_token"])
@pytest.mark.parametrize("decoder_type", ["transformer", "lstm"])
def test_padded_positions_never_change_summaries_or_losses(pooling, decoder_type):
    z_conditioning = "both"
    model = transformer_model(encoder_pooling=pooling, decoder_type=decoder_type, z_conditioning=z_conditioning)
    batch = batch_of(SENTENCES)
    clean = model(batch.token_ids, batch.lengths, sample_z=False)
    scrambled = model(scramble_padding(batch.token_ids, batch.lengths), batch.lengths, sample_z=False)
    assert torch.allclose(clean.mean, scrambled.mean, atol=1e-6)
    assert torch.allclose(clean.rec_nll, scrambled.rec_nll, atol=1e-5)


def test_mean_pooling_averages_the_real_tokens_only():
    model = transformer_model()
    encoder = model.encoder
    batch = batch_of(SENTENCES)
    tokens, lengths = batch.token_ids[:, 1:], batch.lengths - 1
    summaries = encoder(tokens, lengths)
    for row, length in enumerate(lengths.tolist()):
        alone = encoder(tokens[row:row + 1, :length], lengths[row:row + 1])
        assert torch.allclose(summaries[row], alone[0], atol=1e-5)


@pytest.mark.parametrize("conditioning", ["memory", "input", "both"])
def test_cached_steps_equal_the_uncached_teacher_forced_logits(conditioning):
    model = transformer_model(z_conditioning=conditioning)
    z = torch.randn(3, 3)
    inputs = torch.randint(4, 30, (3, 9))
    full = teacher_forced_logits(model, inputs, z)
    state, steps = None, []
    for step in range(inputs.size(1)):
        logits, state = model.decode_step(inputs[:, step], z, state)
        steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-5)
    assert state["keys"][0].size(2) == inputs.size(1) + (conditioning != "input")  # + the latent slot


def uncached_greedy(model: TextVAE, z: torch.Tensor, max_length: int) -> list[list[int]]:
    """Greedy decoding that re-reads the whole prefix at every step (no cache): the reference."""
    config = model.config
    sequences = []
    for row in range(z.size(0)):
        prefix = [config.bos_token_id]
        for _ in range(max_length):
            hidden, _ = model.decoder(torch.tensor([prefix]), z[row:row + 1])
            logits = model.decoder.logits(hidden[0, -1])
            logits[[config.pad_token_id, config.bos_token_id]] = float("-inf")
            token = int(logits.argmax())
            if token == config.eos_token_id:
                break
            prefix.append(token)
        sequences.append(prefix[1:])
    return sequences


@pytest.mark.parametrize("conditioning", ["memory", "input", "both"])
def test_cached_generation_equals_uncached_generation_token_for_token(conditioning):
    model = transformer_model(seed=3, z_conditioning=conditioning)
    z = torch.randn(6, 3) * 2
    cached = decode(model, z, DecodingOptions(strategy="greedy", max_length=12))
    assert cached == uncached_greedy(model, z, 12)
    assert any(len(sentence) > 3 for sentence in cached)  # long enough for the cache to matter


def test_beam_search_reorders_the_cache():
    model = transformer_model(seed=3)
    z = torch.randn(6, 3) * 2
    greedy = uncached_greedy(model, z, 12)
    assert decode(model, z, DecodingOptions(strategy="beam", beam_size=1, max_length=12)) == greedy
    beams = decode(model, z, DecodingOptions(strategy="beam", beam_size=3, max_length=12))
    assert len(beams) == 6 and all(0 < len(sentence) <= 12 for sentence in beams)


@pytest.mark.parametrize("conditioning", ["memory", "input", "both"])
def test_every_conditioning_makes_the_logits_depend_on_z(conditioning):
    model = transformer_model(z_conditioning=conditioning)
    inputs = torch.randint(4, 30, (2, 6))
    first = teacher_forced_logits(model, inputs, torch.zeros(2, 3))
    second = teacher_forced_logits(model, inputs, torch.ones(2, 3))
    assert (first - second).abs().amax(-1).min() > 1e-4  # at every position, the first one included
    if conditioning == "memory":
        assert model.decoder.z_to_input is None and model.decoder.z_to_memory is not None
    if conditioning == "input":
        assert model.decoder.z_to_memory is None and model.decoder.z_to_input is not None


def test_the_language_model_has_no_latent_path():
    model = transformer_model(model_variant="lm")
    assert model.encoder is None and model.decoder.z_to_input is None and model.decoder.z_to_memory is None
    batch = batch_of(SENTENCES)
    output = model(batch.token_ids, batch.lengths)
    assert output.kl_per_dimension is None and torch.isfinite(output.rec_nll).all()


def test_sinusoidal_positions_follow_the_formula():
    codes = sinusoidal_positions(torch.arange(5), 8)
    assert torch.allclose(codes[3, 0], torch.sin(torch.tensor(3.0)))
    assert torch.allclose(codes[3, 1], torch.cos(torch.tensor(3.0)))
    assert torch.allclose(codes[3, 2], torch.sin(torch.tensor(3.0 / 10000 ** (2 / 8))))
    model = transformer_model(position_encoding="sinusoidal")
    assert model.decoder.embedding.learned_positions is None


def test_causal_mask_lets_each_query_see_the_slot_and_its_past():
    mask = causal_mask(3, 4, torch.device("cpu"))  # one latent slot in front of three tokens
    assert mask.tolist() == [[True, True, False, False], [True, True, True, False], [True, True, True, True]]


@pytest.mark.parametrize("settings,message", [
    (dict(decoder_type="transformer", z_conditioning="init"), r"model.z_conditioning: 'init' is not a way into a "
                                                              r"transformer decoder; use one of memory, input, both"),
    (dict(decoder_type="lstm", z_conditioning="memory"), r"'memory' is not a way into a lstm decoder"),
    (dict(encoder_type="transformer", encoder_hidden_size=10, attention_heads=4),
     r"model.encoder_hidden_size: a Transformer's width \(10\) must be a multiple of model.attention_heads \(4\)"),
    (dict(encoder_type="transfomer"), r"model.encoder_type: 'transfomer' is not one of lstm, transformer, pretrained"),
    (dict(encoder_pooling="max"), r"model.encoder_pooling: 'max' is not one of mean, summary_token"),
    (dict(transformer_dropout=1.5), r"model.transformer_dropout: must be in \[0, 1\)"),
])
def test_impossible_transformer_settings_name_the_key(settings, message):
    with pytest.raises(TextVAEError, match=message):
        TextVAEConfig(vocab_size=30, **settings)


def test_a_sentence_longer_than_the_positions_is_refused_with_the_key():
    model = transformer_model(max_positions=6)
    with pytest.raises(TextVAEError, match=r"7 tokens is longer than model.max_positions \(6\).*data.max_length"):
        model.decoder(torch.randint(4, 30, (1, 7)), torch.zeros(1, 3))


def test_decoding_stops_at_the_positions_a_transformer_has():
    model = transformer_model(max_positions=6)
    for strategy in ("greedy", "beam", "sample"):
        sentences = decode(model, torch.randn(5, 3), DecodingOptions(strategy=strategy, max_length=20),
                           generator=torch.Generator().manual_seed(0))
        assert len(sentences) == 5 and max(len(sentence) for sentence in sentences) <= 6


TRANSFORMER_RUN = ["--set", "model.attention_heads=2", "--set", "model.feedforward_size=32",
                   "--set", "model.transformer_dropout=0.1", "--set", "train.max_steps=8",
                   "--set", "train.eval_every=4", "--set", "train.batch_size=16", "--set", "train.word_dropout=0.25",
                   "--set", "train.free_bits=0.1", "--set", "train.kl_schedule=cyclical"]


@pytest.mark.parametrize("encoder_type,decoder_type,conditioning", [
    ("transformer", "transformer", "both"), ("transformer", "lstm", "init"), ("lstm", "transformer", "memory")])
@pytest.mark.slow
def test_any_encoder_with_any_decoder_trains_evaluates_samples_and_reloads(tmp_path, capsys, encoder_type,
                                                                           decoder_type, conditioning):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--quiet", *TINY_MODEL, *TRANSFORMER_RUN,
                 "--set", f"model.encoder_type={encoder_type}", "--set", f"model.decoder_type={decoder_type}",
                 "--set", f"model.z_conditioning={conditioning}"]) == 0
    assert main(["evaluate", str(out), "--split", "test", "--iw-samples", "3"]) == 0
    assert main(["sample", str(out), "-n", "3", "--seed", "1"]) == 0
    assert main(["interpolate", str(out), "the dog sees a cat", "a cat runs", "--steps", "3"]) == 0
    printed = capsys.readouterr().out
    assert "nll" in printed.lower()

    loaded = TextVAE.from_pretrained(out)
    assert loaded.config.encoder_type == encoder_type and loaded.config.decoder_type == decoder_type


@pytest.mark.parametrize("conditioning", ["memory", "input", "both"])
def test_save_and_load_reproduce_identical_logits(tmp_path, conditioning):
    model = transformer_model(z_conditioning=conditioning, encoder_pooling="summary_token")
    model.save_pretrained(tmp_path)
    loaded = TextVAE.from_pretrained(tmp_path).eval()
    batch = batch_of(SENTENCES)
    before = model(batch.token_ids, batch.lengths, sample_z=False)
    after = loaded(batch.token_ids, batch.lengths, sample_z=False)
    assert torch.equal(before.mean, after.mean) and torch.equal(before.rec_nll, after.rec_nll)

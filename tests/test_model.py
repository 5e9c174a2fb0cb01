"""The model's mechanics: padding invisibility, KL, encoders' summaries, conditioning on z, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO, batch_of, scramble_padding, tiny_config, tiny_model
from torch.distributions import Normal, kl_divergence
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textvae.errors import TextVAEError
from textvae.modeling import TextVAE, TextVAEConfig
from textvae.modeling.posterior import kl_per_dimension

SENTENCES = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [15, 16, 17, 18]]


@pytest.mark.parametrize("conditioning", ["init", "input", "both"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_positions_never_change_the_loss(conditioning, bidirectional):
    model = tiny_model(z_conditioning=conditioning, encoder_bidirectional=bidirectional, encoder_layers=2)
    batch = batch_of(SENTENCES)
    clean = model(batch.token_ids, batch.lengths, sample_z=False)
    scrambled = model(scramble_padding(batch.token_ids, batch.lengths), batch.lengths, sample_z=False)
    assert torch.allclose(clean.rec_nll, scrambled.rec_nll, atol=1e-6)
    assert torch.allclose(clean.kl_per_dimension, scrambled.kl_per_dimension, atol=1e-6)


@pytest.mark.parametrize("sides", [dict(encoder_bidirectional=True),
                                   dict(encoder_type="transformer", decoder_type="transformer", attention_heads=2)])
def test_a_sentence_scores_the_same_alone_and_in_a_padded_batch(sides):
    model = tiny_model(**sides)
    batch = batch_of(SENTENCES)
    together = model(batch.token_ids, batch.lengths, sample_z=False)
    for row, sentence in enumerate(SENTENCES):
        alone_batch = batch_of([sentence])
        alone = model(alone_batch.token_ids, alone_batch.lengths, sample_z=False)
        assert torch.allclose(alone.rec_nll[0], together.rec_nll[row], atol=1e-4)
        assert torch.allclose(alone.mean[0], together.mean[row], atol=1e-5)


@pytest.mark.parametrize("pooling", ["final", "mean", "max"])
@pytest.mark.parametrize("bag_of_words_bias", [False, True])
def test_an_unpadded_batch_takes_the_short_way_to_the_same_loss_and_gradients(pooling, bag_of_words_bias):
    """A batch of one length skips packing in the encoder and the gather of real positions before the output
    layer (length-bucketed training batches mostly are such); the same batch with a padding column appended goes
    the long way. Loss, posterior and every gradient agree."""
    sentences = [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    extra = dict(bag_of_words_weight=1.0, bag_of_words_bias=True) if bag_of_words_bias else {}
    model = tiny_model(encoder_layers=2, encoder_bidirectional=True, lstm_encoder_pooling=pooling, **extra)
    batch = batch_of(sentences)
    padded = torch.cat([batch.token_ids, torch.zeros(len(sentences), 1, dtype=torch.long)], dim=1)
    results = []
    for token_ids in (batch.token_ids, padded):
        model.zero_grad()
        output = model(token_ids, batch.lengths, sample_z=False)
        output.rec_nll.sum().backward()
        results.append((output.rec_nll.detach(), output.mean.detach(),
                        [parameter.grad.clone() for parameter in model.parameters() if parameter.grad is not None]))
    (short_nll, short_mean, short_grads), (long_nll, long_mean, long_grads) = results
    assert torch.allclose(short_nll, long_nll, atol=1e-5) and torch.allclose(short_mean, long_mean, atol=1e-6)
    assert len(short_grads) == len(long_grads) > 0
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(short_grads, long_grads))


def test_kl_matches_torch_distributions():
    torch.manual_seed(1)
    mean, logvar = torch.randn(5, 7), torch.randn(5, 7)
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(torch.zeros(5, 7), torch.ones(5, 7)))
    assert torch.allclose(kl_per_dimension(mean, logvar), expected, atol=1e-6)


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (1, True), (3, True)])
def test_encoder_summary_is_the_top_layer_final_state_of_each_direction(layers, bidirectional):
    model = tiny_model(encoder_layers=layers, encoder_bidirectional=bidirectional)
    encoder = model.encoder
    batch = batch_of(SENTENCES)
    tokens, lengths = batch.token_ids[:, 1:], batch.lengths - 1
    summary = encoder(tokens, lengths)
    hidden = encoder.lstm.hidden_size
    assert summary.shape == (len(SENTENCES), hidden * (2 if bidirectional else 1))
    packed = pack_padded_sequence(encoder.embedding(tokens), lengths, batch_first=True, enforce_sorted=False)
    outputs, _ = pad_packed_sequence(encoder.lstm(packed)[0], batch_first=True)  # top layer, every step
    for row, length in enumerate(lengths.tolist()):
        assert torch.allclose(summary[row, :hidden], outputs[row, length - 1, :hidden], atol=1e-6)
        if bidirectional:  # the backward direction ends at the first word
            assert torch.allclose(summary[row, hidden:], outputs[row, 0, hidden:], atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_pooled_lstm_summary_is_the_mean_or_max_of_each_sentences_own_top_states(pooling, bidirectional):
    """model.lstm_encoder_pooling: the summary pools the top layer's states (both directions) over the real
    positions only, so it is the same alone and in a padded batch, whatever the padding holds."""
    model = tiny_model(encoder_layers=2, encoder_bidirectional=bidirectional, lstm_encoder_pooling=pooling)
    encoder = model.encoder
    batch = batch_of(SENTENCES)
    tokens, lengths = batch.token_ids[:, 1:], batch.lengths - 1
    summary = encoder(tokens, lengths)
    assert torch.allclose(summary, encoder(scramble_padding(tokens, lengths), lengths), atol=1e-6)
    final = TextVAE(TextVAEConfig(**{**model.config.to_dict(), "lstm_encoder_pooling": "final"}))
    final.load_state_dict(model.state_dict())
    assert not torch.allclose(final.encoder(tokens, lengths), summary)  # the pooling is not the final state
    for row, length in enumerate(lengths.tolist()):
        alone, _ = encoder.lstm(encoder.embedding(tokens[row:row + 1, :length]))  # (1, length, summary_size)
        expected = alone[0].mean(dim=0) if pooling == "mean" else alone[0].amax(dim=0)
        assert torch.allclose(summary[row], expected, atol=1e-5)
    with pytest.raises(TextVAEError, match="model.lstm_encoder_pooling: 'sum' is not one of final, mean, max"):
        tiny_config(lstm_encoder_pooling="sum")


@pytest.mark.parametrize("conditioning", ["init", "input", "both"])
def test_every_conditioning_makes_the_logits_depend_on_z(conditioning):
    model = tiny_model(z_conditioning=conditioning)
    batch = batch_of(SENTENCES)
    first = model(batch.token_ids, batch.lengths, z=torch.zeros(4, 3))
    second = model(batch.token_ids, batch.lengths, z=torch.ones(4, 3) * 2)
    assert not torch.allclose(first.rec_nll, second.rec_nll)


def test_decoder_never_sees_the_future():
    model = tiny_model()
    batch = batch_of([[5, 6, 7, 8, 9]])
    z = torch.zeros(1, 3)
    hidden, _ = model.decoder(batch.token_ids[:, :-1], z)
    changed = batch.token_ids[:, :-1].clone()
    changed[0, 4] = 20
    hidden_changed, _ = model.decoder(changed, z)
    assert torch.allclose(hidden[0, :4], hidden_changed[0, :4])
    assert not torch.allclose(hidden[0, 4], hidden_changed[0, 4])


def test_bidirectional_decoder_is_refused():
    with pytest.raises(TextVAEError, match="decoder cannot be bidirectional"):
        TextVAEConfig(decoder_bidirectional=True)


def test_language_model_variant_has_no_latent():
    model = tiny_model(model_variant="lm")
    batch = batch_of(SENTENCES)
    output = model(batch.token_ids, batch.lengths)
    assert model.encoder is None and output.kl_per_dimension is None and output.z is None
    assert output.rec_nll.shape == (4,) and bool((output.rec_nll > 0).all())
    assert output.token_counts.tolist() == [len(s) + 1 for s in SENTENCES]


def test_save_and_load_reproduce_identical_logits(tmp_path):
    model = tiny_model(encoder_bidirectional=True, decoder_layers=2)
    model.save_pretrained(tmp_path)
    loaded = TextVAE.from_pretrained(tmp_path).eval()
    batch = batch_of(SENTENCES)
    z = torch.randn(4, 3)
    before, _ = model.decoder(batch.token_ids[:, :-1], z)
    after, _ = loaded.decoder(batch.token_ids[:, :-1], z)
    assert torch.equal(model.decoder.logits(before), loaded.decoder.logits(after))
    assert torch.equal(model(batch.token_ids, batch.lengths, sample_z=False).rec_nll,
                       loaded(batch.token_ids, batch.lengths, sample_z=False).rec_nll)
    assert loaded.config.encoder_bidirectional and loaded.config.decoder_layers == 2


def test_impossible_sizes_are_refused():
    with pytest.raises(TextVAEError, match="model.latent_size: must be a positive whole number, got -4"):
        tiny_config(latent_size=-4)
    with pytest.raises(TextVAEError, match="model.z_conditioning: 'memory' is not a way into a lstm decoder; use one of init, input, both"):
        tiny_config(z_conditioning="memory")


@pytest.mark.parametrize("sides", [("lstm", "lstm"), ("transformer", "transformer")])
def test_each_dropout_key_acts_on_its_own_side_only(sides):
    """embedding_dropout reaches the decoder's inputs, encoder_embedding_dropout the encoder's: in training
    mode a side without dropout gives the same output on every call, a side with it does not."""
    batch = batch_of([[5, 6, 7, 8], [9, 10, 11]])
    widths = dict(encoder_hidden_size=16, decoder_hidden_size=16, attention_heads=2, feedforward_size=16,
                  embedding_size=16, transformer_dropout=0.0) if sides[0] == "transformer" else {}
    z = torch.randn(2, 3)
    for key, changes_encoder in (("embedding_dropout", False), ("encoder_embedding_dropout", True)):
        model = tiny_model(encoder_type=sides[0], decoder_type=sides[1], **widths, **{key: 0.5}).train()
        summaries = [model.encoder(batch.token_ids, batch.lengths) for _ in range(2)]
        logits = [model.decoder(batch.token_ids[:, :-1], z)[0] for _ in range(2)]
        assert torch.equal(*summaries) is not changes_encoder, key
        assert torch.equal(*logits) is changes_encoder, key


def test_the_variant_has_one_name_in_configs_and_config_json_and_the_older_key_is_still_read(tmp_path):
    from textvae.modeling import check_model_section

    assert check_model_section({"model_variant": "lm"}) == check_model_section({"model_type": "lm"}) == {
        "model_variant": "lm"}
    config = TextVAEConfig(model_variant="lm")
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_variant"] == "lm" and saved["model_type"] == "textvae"  # HF's architecture name
    for path in (REPO / "configs").glob("*.yaml"):
        assert "model_type:" not in path.read_text(encoding="utf-8"), path  # the one name in every config


def test_the_bag_of_words_loss_scores_each_word_of_a_sentence_from_z_and_joins_only_the_training_objective():
    """Zhao et al. 2017's loss: −Σ log softmax(W z + b)[w] over the words (not <bos>, <eos> or padding), in
    training mode only; the objective adds it times model.bag_of_words_weight, and its gradient reaches the head
    and the encoder."""
    from textvae.training.objectives import elbo_loss
    torch.manual_seed(0)
    model = TextVAE(tiny_config(bag_of_words_weight=0.5)).train()
    batch = batch_of([[5, 6, 5], [7, 8, 9, 10, 11]])
    token_ids, lengths = batch.token_ids, batch.lengths
    output = model(token_ids, lengths, noise=torch.zeros(2, 3))
    log_p = torch.log_softmax(model.bag_of_words.output(output.z), dim=-1)
    expected = torch.stack([-(2 * log_p[0, 5] + log_p[0, 6]), -log_p[1, [7, 8, 9, 10, 11]].sum()])
    torch.testing.assert_close(output.bag_of_words_nll, expected)
    with_bow = elbo_loss(output, 1.0, bag_of_words_weight=0.5)
    without = elbo_loss(output, 1.0)
    torch.testing.assert_close(with_bow.loss - without.loss, 0.5 * expected.mean())
    assert torch.equal(with_bow.rec, without.rec)  # the logged ELBO parts do not include it
    with_bow.loss.backward()
    assert model.bag_of_words.output.weight.grad.abs().sum() > 0
    assert model.posterior.to_mean_logvar.weight.grad.abs().sum() > 0
    assert model.eval()(token_ids, lengths).bag_of_words_nll is None  # evaluation never computes it
    assert TextVAE(tiny_config()).bag_of_words is None  # off by default: no extra weights


@pytest.mark.parametrize("decoder", [dict(), dict(encoder_type="transformer", decoder_type="transformer", attention_heads=2)])
def test_the_bag_of_words_bias_adds_the_heads_scores_of_z_to_every_steps_vocabulary_scores(decoder):
    """TextVAEConfig.bag_of_words_bias: log p(x_t | x_<t, z) = log softmax(W h_t + b + W_bow z + b_bow)[x_t], the
    same in the teacher-forced loss (fused) and in step-by-step decoding; the head learns from the reconstruction
    loss alone (no bag-of-words loss), and a large bias on a word makes the model say it."""
    model = tiny_model(bag_of_words_bias=True, **decoder)
    assert model.bag_of_words is not None and model.config.bag_of_words_weight == 0.0
    batch = batch_of([[5, 6, 5], [7, 8, 9, 10, 11]])
    token_ids, lengths = batch.token_ids, batch.lengths
    output = model(token_ids, lengths, sample_z=False)
    hidden, _ = model.decoder(token_ids[:, :-1], output.z)
    scores = model.decoder.logits(hidden) + model.bag_of_words.output(output.z).unsqueeze(1)
    token_nll = -torch.log_softmax(scores, dim=-1).gather(2, token_ids[:, 1:].unsqueeze(2)).squeeze(2)
    real = torch.arange(token_ids.size(1) - 1).unsqueeze(0) < (lengths - 1).unsqueeze(1)
    torch.testing.assert_close(output.rec_nll, (token_nll * real).sum(1), rtol=1e-5, atol=1e-5)
    for row in range(2):  # generation's path, one step at a time, scores the same
        state, nll = None, torch.tensor(0.0)
        for step in range(int(lengths[row]) - 1):
            logits, state = model.decode_step(token_ids[row: row + 1, step], output.z[row: row + 1], state)
            nll = nll - torch.log_softmax(logits, dim=-1)[0, token_ids[row, step + 1]]
        torch.testing.assert_close(nll, output.rec_nll[row], rtol=1e-5, atol=1e-5)
    plain = TextVAE(tiny_config(**decoder)).eval()
    plain.load_state_dict({name: value for name, value in model.state_dict().items()
                           if not name.startswith("bag_of_words")})
    assert not torch.allclose(plain(token_ids, lengths, sample_z=False).rec_nll, output.rec_nll)
    model.train()
    model(token_ids, lengths, noise=torch.zeros(2, 3)).rec_nll.sum().backward()
    assert model.bag_of_words.output.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():  # a bias far above every other score: the first word is that word, whatever the decoder
        model.bag_of_words.output.bias[7] = 1e3
    logits, _ = model.decode_step(torch.tensor([1]), output.z[:1], None)
    assert int(logits.argmax()) == 7


def test_the_bag_of_words_head_is_saved_and_a_language_model_refuses_it(tmp_path):
    model = tiny_model(bag_of_words_weight=1.0)
    model.save_pretrained(tmp_path)
    loaded = TextVAE.from_pretrained(str(tmp_path))
    assert torch.equal(loaded.bag_of_words.output.weight, model.bag_of_words.output.weight)
    assert loaded.config.bag_of_words_weight == 1.0
    with pytest.raises(TextVAEError, match="model.bag_of_words_weight: a language model has no z"):
        tiny_config(model_variant="lm", bag_of_words_weight=1.0)
    with pytest.raises(TextVAEError, match="model.bag_of_words_weight: must be a number >= 0"):
        tiny_config(bag_of_words_weight=-1.0)
    with pytest.raises(TextVAEError, match="model.bag_of_words_bias: a language model has no z"):
        tiny_config(model_variant="lm", bag_of_words_bias=True)
    with pytest.raises(TextVAEError, match="model.bag_of_words_bias: must be true or false"):
        tiny_config(bag_of_words_bias="yes")
    biased = tiny_model(bag_of_words_bias=True)
    biased.save_pretrained(tmp_path / "biased")
    loaded = TextVAE.from_pretrained(str(tmp_path / "biased"))
    batch = batch_of(SENTENCES)
    torch.testing.assert_close(loaded(batch.token_ids, batch.lengths, sample_z=False).rec_nll,
                               biased(batch.token_ids, batch.lengths, sample_z=False).rec_nll)


def test_the_decoder_reset_redraws_the_bag_of_words_head_only_when_it_biases_the_decoder():
    """Li et al. 2019's decoder reset (train.pretrain_ae_steps, train.reset_decoder) draws p(x | z) afresh: with
    model.bag_of_words_bias the head is part of it and is redrawn (the same draw for the same seed) and loses its
    optimizer state; as an auxiliary loss alone it keeps its weights and its state. The encoder is never touched."""
    from textvae.training.collapse import reset_decoder

    for bias, redrawn in ((True, True), (False, False)):
        model = tiny_model(bag_of_words_weight=1.0, bag_of_words_bias=bias)
        with torch.no_grad():
            model.bag_of_words.output.weight.fill_(0.5)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        model.bag_of_words.output.weight.grad = torch.ones_like(model.bag_of_words.output.weight)
        optimizer.step()  # lr 0: a momentum buffer for the head, its weights unchanged
        encoder_before = {name: value.clone() for name, value in model.encoder.state_dict().items()}
        reset_decoder(model, [optimizer], seed=4)
        head = model.bag_of_words.output.weight
        assert bool((head != 0.5).any()) is redrawn
        assert (head in optimizer.state) is not redrawn
        for name, value in model.encoder.state_dict().items():
            assert torch.equal(value, encoder_before[name])
        if redrawn:
            again = tiny_model(bag_of_words_weight=1.0, bag_of_words_bias=True)
            reset_decoder(again, [], seed=4)
            assert torch.equal(again.bag_of_words.output.weight, head)

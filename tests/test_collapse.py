"""The mechanics of each remedy against posterior collapse (docs/collapse.md): free bits in its three modes
stop the KL gradient below the floor only; the target-rate multiplier; BN-VAE's KL floor; autoencoder
pretraining with a real decoder reset; aggressive encoder updates and their switch-off rule; exact resume
with every remedy on; one-line errors for bad settings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL, batch_of, read_metrics, tiny_model, untimed_metrics

import textvae.training.collapse
import textvae.training.trainer
from textvae.cli import main
from textvae.training.collapse import (
    aggressive_inner_loop,
    aggressive_stays_on,
    check_remedies,
    decoder_parameters,
    encoder_parameters,
    mi_ceiling,
    reset_decoder,
)
from textvae.config import TrainConfig, load_config
from textvae.data import Batch
from textvae.errors import TextVAEError
from textvae.evaluation import mutual_information
from textvae.modeling import TextVAEOutput, check_model_section
from textvae.modeling.lstm import LSTMDecoder
from textvae.training.objectives import elbo_loss, kl_term, kl_weight, updated_multiplier
from textvae.config import resumed_config
from textvae.training import train, training_step

SPECIAL = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "unk_token_id": 3}


def tiny_settings(*extra: str):
    overrides = [value for value in TINY_MODEL if value != "--set"]
    return load_config(None, [*overrides, "train.batch_size=32", "train.progress_bar=false", *extra])


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)


def random_batch(seed: int = 0, sentences: int = 16, vocab: int = 30):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 9, (sentences,), generator=generator).tolist()
    return batch_of([torch.randint(4, vocab, (n,), generator=generator).tolist() for n in lengths])


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


# ---- free bits ---------------------------------------------------------------------------------------

def test_free_bits_batch_dimension_floors_each_dimensions_batch_mean():
    kl = torch.tensor([[0.1, 2.0], [0.3, 4.0]], requires_grad=True)  # dimension means 0.2 (below), 3.0 (above)
    kl_term(kl, 0.5, "batch_dimension").backward()
    assert torch.equal(kl.grad[:, 0], torch.zeros(2))
    assert torch.allclose(kl.grad[:, 1], torch.full((2,), 0.5))
    assert kl_term(kl.detach(), 0.5, "batch_dimension").item() == pytest.approx(0.5 + 3.0)


def test_free_bits_dimension_floors_each_sentence_and_dimension():
    kl = torch.tensor([[0.1, 2.0], [0.9, 0.2]], requires_grad=True)  # 0.1 and 0.2 are below 0.5
    kl_term(kl, 0.5, "dimension").backward()
    assert kl.grad.tolist() == [[0.0, 0.5], [0.5, 0.0]]
    assert kl_term(kl.detach(), 0.5, "dimension").item() == pytest.approx(((0.5 + 2.0) + (0.9 + 0.5)) / 2)


def test_free_bits_sentence_floors_each_sentences_total_at_lambda_times_latent():
    kl = torch.tensor([[0.1, 0.2], [2.0, 0.1]], requires_grad=True)  # totals 0.3 (below 0.5 * 2) and 2.1
    kl_term(kl, 0.5, "sentence").backward()
    assert kl.grad.tolist() == [[0.0, 0.0], [0.5, 0.5]]  # above the floor every dimension of it counts
    assert kl_term(kl.detach(), 0.5, "sentence").item() == pytest.approx((1.0 + 2.1) / 2)


@pytest.mark.parametrize("mode", ["batch_dimension", "dimension", "sentence"])
def test_free_bits_in_the_loss_pass_gradient_above_the_floor_and_none_below(mode):
    """Through elbo_loss and a real posterior: KL far below the floor gives the encoder no KL gradient;
    far above it, the same gradient as without free bits."""
    model = tiny_model()
    token_ids = random_batch().token_ids
    summary = torch.randn(token_ids.size(0), model.encoder.summary_size)

    def kl_gradient(free_bits: float, scale: float) -> torch.Tensor:
        model.zero_grad()
        mean, logvar = model.posterior(summary * scale)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0)
        output = TextVAEOutput(rec_nll=torch.zeros(token_ids.size(0)), kl_per_dimension=kl)
        elbo_loss(output, 1.0, free_bits, free_bits_mode=mode).loss.backward()
        return model.posterior.to_mean_logvar.weight.grad.clone()

    with torch.no_grad():
        model.posterior.to_mean_logvar.weight.mul_(0.01)
        model.posterior.to_mean_logvar.bias.zero_()
    assert kl_gradient(5.0, 1.0).abs().max() == 0  # KL ~ 1e-4 nats per dimension, floor 5
    with torch.no_grad():
        model.posterior.to_mean_logvar.bias.fill_(3.0)  # KL ~ 9 + nats per dimension
    above, plain = kl_gradient(0.01, 1.0), kl_gradient(0.0, 1.0)
    assert above.abs().max() > 0
    assert torch.allclose(above, plain)


# ---- β and the target rate ------------------------------------------------------------------------------

def test_kl_max_weight_is_beta():
    output = TextVAEOutput(rec_nll=torch.tensor([1.0, 3.0]), kl_per_dimension=torch.tensor([[1.0, 3.0], [2.0, 2.0]]))
    settings = TrainConfig(kl_schedule="constant", kl_max_weight=0.25)
    assert elbo_loss(output, kl_weight(0, settings)).loss.item() == pytest.approx(2.0 + 0.25 * 4.0)


def test_target_rate_multiplier_rises_below_the_target_and_falls_to_zero_above():
    settings = TrainConfig(target_rate=8.0, target_rate_lr=0.1)
    u = 0.0
    for _ in range(3):
        u = updated_multiplier(u, 3.0, settings)  # KL 3 < 8: +0.5 each step
    assert u == pytest.approx(1.5)
    u = updated_multiplier(u, 10.0, settings)  # KL 10 > 8: -0.2
    assert u == pytest.approx(1.3)
    assert updated_multiplier(u, 100.0, settings) == 0.0  # never negative
    assert updated_multiplier(5.0, 0.0, TrainConfig(target_rate=0.0)) == 0.0  # off


def test_target_rate_term_pushes_the_kl_up_with_the_multiplier():
    kl = torch.tensor([[1.0, 1.0], [2.0, 2.0]], requires_grad=True)
    output = TextVAEOutput(rec_nll=torch.tensor([4.0, 6.0]), kl_per_dimension=kl)
    loss = elbo_loss(output, 0.5, target_rate=8.0, multiplier=2.0)
    assert loss.loss.item() == pytest.approx(5.0 + 0.5 * 3.0 + 2.0 * (8.0 - 3.0))
    loss.loss.backward()
    assert torch.allclose(kl.grad, torch.full((2, 2), (0.5 - 2.0) / 2))  # net weight beta - u, per sentence mean


def test_target_rate_multiplier_is_trained_and_checkpointed(tmp_path):
    run = tmp_path / "rate"
    train(tiny_settings("train.max_steps=6", "train.eval_every=3", "train.log_every=1", "train.target_rate=50",
                        "train.target_rate_lr=0.01"), run)
    lines = [line for line in read_metrics(run) if line["split"] == "train"]
    multipliers = [line["kl_multiplier"] for line in lines]
    assert multipliers == sorted(multipliers) and multipliers[0] > 0  # KL far below 50: u only grows
    expected = 0.0
    for line in lines:  # each step adds lr * (r - that batch's KL)
        expected = max(0.0, expected + 0.01 * (50 - line["kl"]))
        assert line["kl_multiplier"] == pytest.approx(expected, rel=1e-6)
    assert checkpoint(run)["state"]["kl_multiplier"] == pytest.approx(multipliers[-1])


# ---- BN-VAE ------------------------------------------------------------------------------------------------

def test_bn_vae_keeps_the_expected_kl_above_its_analytic_floor():
    """Minimising the KL alone drives a plain posterior towards zero KL; with BN-VAE the batch-mean KL stays at
    or above sum_d (gamma^2 v_d / (v_d + eps) + beta_d^2) / 2 throughout (v_d: the batch variance of the raw
    means), and that stays at sum_d (gamma^2 + beta_d^2) / 2: the optimiser does not escape through eps (with
    batch norm's usual eps = 1e-5 it does, shrinking v_d below eps within 20 steps)."""
    gamma = 0.6
    batch = random_batch(sentences=32)
    token_ids, lengths = batch.token_ids, batch.lengths
    finals = {}
    for bn in (0.0, gamma):
        model = tiny_model(bn_vae_gamma=bn).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(100):
            mean, logvar = model.encode(token_ids, lengths)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0)
            batch_kl = kl.sum(-1).mean()
            if bn:
                norm = model.posterior.mean_norm
                with torch.no_grad():
                    raw = model.posterior.to_mean_logvar(model.encoder(token_ids[:, 1:], lengths - 1)).chunk(2, -1)[0]
                    variance = raw.var(0, unbiased=False)
                    exact = 0.5 * (gamma ** 2 * variance / (variance + norm.normalize.eps) + norm.shift ** 2).sum()
                floor = norm.floor()
                assert floor >= model.config.latent_size * gamma ** 2 / 2
                assert batch_kl.item() >= exact.item() - 1e-5, (batch_kl.item(), exact.item())
                assert exact.item() >= 0.99 * floor, (exact.item(), floor)
                shift = model.posterior.mean_norm.shift.detach()
                assert torch.allclose(mean.mean(0), shift, atol=1e-3 * gamma)  # batch mean of mu_hat = beta
                assert torch.allclose(mean.pow(2).mean(0), gamma ** 2 + shift ** 2, rtol=1e-3)  # mean square
            optimizer.zero_grad()
            batch_kl.backward()
            optimizer.step()
        finals[bn] = batch_kl.item()
    analytic = 3 * gamma ** 2 / 2
    assert finals[0.0] < 0.2 * analytic  # without BN the KL collapses far below the floor
    assert finals[gamma] >= analytic * (1 - 1e-3)


def test_bn_vae_uses_running_statistics_in_eval_and_for_single_sentences():
    model = tiny_model(bn_vae_gamma=0.5).train()
    batch = random_batch(sentences=8)
    for _ in range(3):
        model.encode(batch.token_ids, batch.lengths)  # updates the running statistics
    model.eval()
    one = model.encode(batch.token_ids[:1], batch.lengths[:1])[0]
    assert torch.allclose(one, model.encode(batch.token_ids, batch.lengths)[0][:1], atol=1e-6)
    model.train()
    assert model.encode(batch.token_ids[:1], batch.lengths[:1])[0].shape == (1, 3)  # no batch-norm error


# ---- autoencoder pretraining and the decoder reset --------------------------------------------------------

def test_kl_weight_is_zero_while_pretraining_then_the_schedule_starts_over():
    settings = TrainConfig(kl_schedule="linear", kl_start_weight=0.0, kl_max_weight=1.0, kl_anneal_steps=100,
                           pretrain_ae_steps=50)
    assert [kl_weight(step, settings) for step in (0, 49)] == [0.0, 0.0]
    assert kl_weight(50, settings) == 0.0 and kl_weight(100, settings) == pytest.approx(0.5)
    assert kl_weight(150, settings) == pytest.approx(1.0)


def test_decoder_reset_gives_a_fresh_decoder_and_keeps_the_trained_encoder():
    model = tiny_model().train()
    initial = snapshot(model.decoder)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = random_batch()
    for step in range(3):
        training_step(model, optimizer, batch.token_ids, batch.lengths, step, TrainConfig(kl_schedule="constant"),
                      SPECIAL)
    trained_decoder, trained_encoder = snapshot(model.decoder), snapshot(model.encoder)
    trained_posterior = snapshot(model.posterior)
    reset_decoder(model, [optimizer], seed=7)
    torch.manual_seed(7)
    fresh = LSTMDecoder(model.config).state_dict()  # what a newly built decoder from that seed holds
    assert same(snapshot(model.decoder), fresh)
    assert not any(torch.equal(trained_decoder[key], fresh[key]) for key in fresh if key.endswith("weight"))
    assert not same(snapshot(model.decoder), initial)
    assert same(snapshot(model.encoder), trained_encoder) and same(snapshot(model.posterior), trained_posterior)
    assert all(parameter not in optimizer.state for parameter in decoder_parameters(model))
    assert all(len(optimizer.state[parameter]) > 0 for parameter in encoder_parameters(model))
    training_step(model, optimizer, batch.token_ids, batch.lengths, 3, TrainConfig(), SPECIAL)  # trains on


def test_pretraining_trains_an_autoencoder_then_resets_the_decoder_in_the_loop(tmp_path, monkeypatch):
    """The encoder that starts the VAE phase is the one the autoencoder phase trained; the decoder is fresh."""
    resets, first_vae_step = [], []
    original_reset, original_step = textvae.training.collapse.reset_decoder, textvae.training.trainer.training_step

    def reset_spy(model, optimizers, seed):
        resets.append((snapshot(model.encoder), snapshot(model.posterior)))
        original_reset(model, optimizers, seed)

    def step_spy(model, *args, **kwargs):
        if resets and not first_vae_step:  # the first update after the reset: what it starts from
            first_vae_step.append((snapshot(model.encoder), snapshot(model.posterior), snapshot(model.decoder)))
        return original_step(model, *args, **kwargs)

    monkeypatch.setattr(textvae.training.collapse, "reset_decoder", reset_spy)
    monkeypatch.setattr(textvae.training.trainer, "training_step", step_spy)
    run = tmp_path / "pretrain"
    train(tiny_settings("train.max_steps=8", "train.eval_every=4", "train.log_every=1", "train.pretrain_ae_steps=4",
                        "train.kl_schedule=constant"), run)
    assert len(resets) == 1 and len(first_vae_step) == 1
    (encoder_trained, posterior_trained), (encoder, posterior, decoder) = resets[0], first_vae_step[0]
    assert same(encoder, encoder_trained) and same(posterior, posterior_trained)
    config = textvae.TextVAEConfig.from_pretrained(run)
    torch.manual_seed(0 + 2)  # train.seed (0) + 2
    assert same(decoder, LSTMDecoder(config).state_dict())
    weights = [line["kl_weight"] for line in read_metrics(run) if line["split"] == "train"]
    assert weights == [0.0] * 4 + [1.0] * 4
    valid = [line for line in read_metrics(run) if line["split"] == "valid"]
    assert [line.get("pretraining", False) for line in valid] == [True, False]
    assert checkpoint(run)["state"]["decoder_reset"] is True


# ---- aggressive inference-network training -----------------------------------------------------------------

def fake_batch(tokens: int) -> Batch:
    return Batch(torch.zeros(1, tokens + 1, dtype=torch.long), torch.tensor([tokens + 1]), [0])


def test_aggressive_inner_loop_stops_when_a_window_does_not_improve():
    losses = iter([9, 8, 7, 6, 6.5, 6.5, 1, 1])  # windows of 2: 8.5, 6.5, 6.5 (no better) -> stop after 6
    seen = []

    def update(batch):
        seen.append(batch)
        return next(losses) * batch.predicted_tokens

    first = fake_batch(4)
    steps = aggressive_inner_loop(update, first, lambda: fake_batch(4), max_steps=100, window=2)
    assert steps == 6 and len(seen) == 6 and seen[0] is first and all(b is not first for b in seen[1:])
    falling = iter(range(1000, 0, -1))
    assert aggressive_inner_loop(lambda b: next(falling), first, lambda: first, max_steps=7, window=2) == 7


def test_aggressive_switches_off_for_good_once_mi_stops_rising():
    assert aggressive_stays_on(None, 0.1)
    sequence, on, previous, states = [0.5, 0.9, 1.3, 1.2, 1.6], True, None, []
    for mi in sequence:  # the loop's use: once off, the rule is no longer consulted
        if on:
            on, previous = aggressive_stays_on(previous, mi), mi
        states.append(on)
    assert states == [True, True, True, False, False]
    assert not aggressive_stays_on(1.0, 1.0)  # equal is not larger


def test_mi_estimate_of_disjoint_posteriors_sits_at_log_n_with_the_noise_the_ceiling_allows():
    """The ceiling's premise, measured: posteriors that do not overlap give one-draw MI estimates around log N
    whose spread over draws is sqrt(d / 2N), so the ceiling is one such spread below log N."""
    sentences, latent = 200, 8
    mean = 100.0 * torch.randn(sentences, latent, generator=torch.Generator().manual_seed(0))  # far apart
    logvar = torch.full((sentences, latent), -2.0)
    draws = torch.tensor([mutual_information(mean, logvar, torch.Generator().manual_seed(seed)) for seed in range(300)])
    spread = math.sqrt(latent / (2 * sentences))
    assert abs(draws.mean().item() - math.log(sentences)) < 4 * spread / math.sqrt(len(draws))
    assert 0.85 * spread < draws.std().item() < 1.15 * spread
    assert mi_ceiling(sentences, latent) == pytest.approx(math.log(sentences) - spread)


def test_aggressive_stops_once_mi_reaches_the_ceiling_from_the_second_validation():
    assert aggressive_stays_on(None, 5.0, ceiling=4.0)  # the first validation has nothing to compare with
    assert aggressive_stays_on(3.0, 3.9, ceiling=4.0)
    assert not aggressive_stays_on(3.9, 4.0, ceiling=4.0)  # a rise at the ceiling is the estimate's noise
    assert not aggressive_stays_on(3.0, 2.9, ceiling=4.0)


def test_aggressive_inner_steps_update_the_encoder_only_then_the_decoder_alone(tmp_path, monkeypatch):
    captured, records = [], []
    original_parameters = textvae.training.trainer.encoder_parameters
    original_loop = textvae.training.collapse.aggressive_inner_loop

    def capture(model):
        captured.append(model)
        return original_parameters(model)

    def spy(update, first, draw, max_steps, window):
        model = captured[0]
        before = (snapshot(model.encoder), snapshot(model.posterior), snapshot(model.decoder))
        steps = original_loop(update, first, draw, max_steps, window)
        records.append((before, (snapshot(model.encoder), snapshot(model.posterior), snapshot(model.decoder)), steps))
        return steps

    monkeypatch.setattr(textvae.training.trainer, "encoder_parameters", capture)
    monkeypatch.setattr(textvae.training.collapse, "aggressive_inner_loop", spy)
    run = tmp_path / "aggressive"
    train(tiny_settings("train.max_steps=2", "train.log_every=1", "train.aggressive=true",
                        "train.aggressive_max_inner_steps=5", "train.aggressive_window=50"), run)
    assert [steps for _, _, steps in records] == [5, 5]
    for (encoder, posterior, decoder), (encoder_after, posterior_after, decoder_after), _ in records:
        assert not same(encoder, encoder_after) and not same(posterior, posterior_after)
        assert same(decoder, decoder_after)
    # the outer step between the two inner loops changed the decoder and left the encoder alone
    assert not same(records[0][1][2], records[1][0][2])
    assert same(records[0][1][0], records[1][0][0]) and same(records[0][1][1], records[1][0][1])
    assert [line["inner_steps"] for line in read_metrics(run) if line["split"] == "train"] == [5, 5]
    assert checkpoint(run)["encoder_optimizer"]["state"]


class BehindModule(torch.nn.Module):
    """A model behind `.module`, as DistributedDataParallel holds it: training_step then computes every
    gradient and drops those of the parameters it does not update."""

    def __init__(self, model):
        super().__init__()
        self.module = model

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def test_an_encoder_or_decoder_only_step_computes_only_its_gradients_and_equals_the_all_gradients_step():
    """Aggressive training's one-sided steps ask autograd for the updated side's gradients alone (the speed-up
    benchmarks/aggressive_speed.py measures); the update is bit for bit the one of computing every gradient."""
    settings = TrainConfig(word_dropout=0.3, kl_start_weight=0.5)
    batch = batch_of([[5, 6, 7, 8, 9], [10, 11, 12], [13, 14]])
    weights, computed = [], []
    for behind_module in (False, True):
        model = tiny_model(seed=3).train()
        seen = []
        for parameter in decoder_parameters(model)[:1] + encoder_parameters(model)[:1]:
            parameter.register_hook(lambda grad, parameter=parameter: seen.append(id(parameter)))
        for side in (encoder_parameters, decoder_parameters, encoder_parameters):
            optimizer = torch.optim.Adam(side(model), lr=0.01)
            training_step(BehindModule(model) if behind_module else model, optimizer, batch.token_ids, batch.lengths,
                          0, settings, SPECIAL, generator=torch.Generator().manual_seed(0), parameters=side(model))
        weights.append(snapshot(model))
        computed.append(seen)
    assert same(*weights)
    direct, everything = computed
    # each watched parameter's gradient is computed when its side is updated only (3 steps: 2 encoder, 1 decoder)
    assert len(direct) == 3 and len(everything) == 6


def test_a_one_sided_step_that_fails_leaves_every_parameter_trainable():
    """The other side's parameters stop requiring gradients for one step only, even when the step raises."""
    model = tiny_model(seed=3).train()
    with torch.no_grad():
        next(iter(model.decoder.parameters())).fill_(float("nan"))  # the loss turns NaN: the step raises
    batch = batch_of([[5, 6, 7, 8, 9], [10, 11, 12]])
    optimizer = torch.optim.Adam(encoder_parameters(model), lr=0.01)
    with pytest.raises(textvae.training.trainer.Diverged):
        training_step(model, optimizer, batch.token_ids, batch.lengths, 0, TrainConfig(), SPECIAL,
                      parameters=encoder_parameters(model))
    assert all(parameter.requires_grad for parameter in model.parameters())


def fake_validations(mis: list[float]):
    """evaluate_split's stand-in: fixed scores, and the given validation MIs in turn."""
    values = iter(mis)
    return lambda model, split, batch_size, seed=0, dtype=None: {
        "neg_elbo": 50.0, "rec": 45.0, "kl": 5.0, "ppl_bound": 100.0, "mi": next(values), "au": 2}


AGGRESSIVE = ["train.eval_every=2", "train.log_every=1", "train.aggressive=true", "train.aggressive_max_inner_steps=2",
              "train.aggressive_window=10"]


def valid_aggressive(run: Path) -> list:
    return [line.get("aggressive") for line in read_metrics(run) if line["split"] == "valid"]


def test_aggressive_mode_is_switched_off_by_validation_mi_and_the_checkpoint_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(textvae.training.trainer, "evaluate_split", fake_validations([1.0, 2.0, 1.5, 3.0, 4.0]))
    run = tmp_path / "switch"
    train(tiny_settings("train.max_steps=10", "train.eval_every=2", "train.log_every=1", "train.aggressive=true",
                        "train.aggressive_max_inner_steps=2", "train.aggressive_window=10"), run)
    lines = read_metrics(run)
    assert [line.get("aggressive") for line in lines if line["split"] == "valid"] == [True, True, False, None, None]
    inner = [line["step"] for line in lines if line["split"] == "train" and "inner_steps" in line]
    assert inner == [1, 2, 3, 4, 5, 6]  # off after the validation at step 6, for good
    state = checkpoint(run)["state"]
    assert state["aggressive_off"] is True and state["previous_mi"] == 1.5


def test_aggressive_switches_off_at_the_mi_ceiling_unless_that_rule_is_off(tmp_path, monkeypatch):
    saturated = [90.0, 95.0, 99.0]  # rising, and far above log N for any valid split
    monkeypatch.setattr(textvae.training.trainer, "evaluate_split", fake_validations(saturated))
    train(tiny_settings("train.max_steps=6", *AGGRESSIVE), tmp_path / "ceiling")
    assert valid_aggressive(tmp_path / "ceiling") == [True, False, None]
    monkeypatch.setattr(textvae.training.trainer, "evaluate_split", fake_validations(saturated))
    train(tiny_settings("train.max_steps=6", "train.aggressive_mi_ceiling=false", *AGGRESSIVE), tmp_path / "he")
    assert valid_aggressive(tmp_path / "he") == [True, True, True]


def test_resume_judges_the_last_validation_by_the_rule_in_force(tmp_path, monkeypatch):
    """A run validated above the ceiling with the rule off, resumed with it on, continues without inner steps."""
    run = tmp_path / "run"
    monkeypatch.setattr(textvae.training.trainer, "evaluate_split", fake_validations([90.0, 95.0]))
    train(tiny_settings("train.max_steps=4", "train.aggressive_mi_ceiling=false", *AGGRESSIVE), run)
    assert valid_aggressive(run) == [True, True] and checkpoint(run)["state"]["aggressive_off"] is False
    monkeypatch.setattr(textvae.training.trainer, "evaluate_split", fake_validations([96.0]))
    train(resumed_config(run, ["train.max_steps=6", "train.aggressive_mi_ceiling=true"]), run, resume=True)
    inner = [line["step"] for line in read_metrics(run) if "inner_steps" in line]
    assert inner == [1, 2, 3, 4] and checkpoint(run)["state"]["aggressive_off"] is True


def test_aggressive_switch_off_survives_resume(tmp_path, monkeypatch):
    def fake_evaluations():
        return fake_validations([1.0, 2.0, 1.5, 3.0, 4.0])  # off at the third validation (step 6)

    extra = AGGRESSIVE
    monkeypatch.setattr(textvae.training.trainer, "evaluate_split", fake_evaluations())
    train(tiny_settings("train.max_steps=10", *extra), tmp_path / "straight")
    monkeypatch.setattr(textvae.training.trainer, "evaluate_split", fake_evaluations())  # one sequence for both halves
    train(tiny_settings("train.max_steps=6", *extra), tmp_path / "interrupted")
    assert checkpoint(tmp_path / "interrupted")["state"]["aggressive_off"] is True
    train(resumed_config(tmp_path / "interrupted", ["train.max_steps=10"]), tmp_path / "interrupted", resume=True)
    inner = [line["step"] for line in read_metrics(tmp_path / "interrupted") if "inner_steps" in line]
    assert inner == [1, 2, 3, 4, 5, 6]
    straight, continued = checkpoint(tmp_path / "straight")["model"], checkpoint(tmp_path / "interrupted")["model"]
    assert all(torch.equal(straight[name], continued[name]) for name in straight)


# ---- all of them at once: exact resume across the decoder reset -------------------------------------------

def test_resume_is_exact_across_the_decoder_reset_with_every_remedy_on(tmp_path):
    extra = ["train.eval_every=4", "train.word_dropout=0.2", "train.pretrain_ae_steps=8", "train.aggressive=true",
             "train.aggressive_max_inner_steps=3", "train.aggressive_window=2", "train.target_rate=20",
             "train.free_bits=0.1", "train.free_bits_mode=sentence", "model.bn_vae_gamma=0.5",
             "train.kl_schedule=linear", "train.kl_anneal_steps=6"]
    train(tiny_settings("train.max_steps=16", *extra), tmp_path / "straight")
    train(tiny_settings("train.max_steps=8", *extra), tmp_path / "interrupted")
    assert checkpoint(tmp_path / "interrupted")["state"]["decoder_reset"] is False  # stopped right at the boundary
    train(resumed_config(tmp_path / "interrupted", ["train.max_steps=12"]), tmp_path / "interrupted", resume=True)
    state = checkpoint(tmp_path / "interrupted")["state"]  # stopped again, with the multiplier at work
    assert state["decoder_reset"] is True and state["kl_multiplier"] > 0
    train(resumed_config(tmp_path / "interrupted", ["train.max_steps=16"]), tmp_path / "interrupted", resume=True)
    straight, continued = checkpoint(tmp_path / "straight"), checkpoint(tmp_path / "interrupted")
    assert straight["model"].keys() == continued["model"].keys()
    for name in straight["model"]:
        assert torch.equal(straight["model"][name], continued["model"][name]), name
    for key in ("kl_multiplier", "decoder_reset", "aggressive_off", "previous_mi", "step"):
        assert straight["state"][key] == continued["state"][key], key
    assert straight["state"]["decoder_reset"] and straight["state"]["kl_multiplier"] > 0
    assert untimed_metrics(tmp_path / "straight") == untimed_metrics(tmp_path / "interrupted")


# ---- bad settings -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, key", [
    ("train.free_bits_mode=per_word", "train.free_bits_mode"),
    ("train.free_bits=-0.5", "train.free_bits"),
    ("train.target_rate=-1", "train.target_rate"),
    ("train.target_rate_lr=0", "train.target_rate_lr"),
    ("train.pretrain_ae_steps=-3", "train.pretrain_ae_steps"),
    ("train.aggressive=maybe", "train.aggressive"),
    ("train.aggressive_max_inner_steps=0", "train.aggressive_max_inner_steps"),
    ("train.aggressive_window=0", "train.aggressive_window"),
])
def test_bad_remedy_settings_name_the_key(override, key):
    with pytest.raises(TextVAEError, match=key.replace(".", r"\.")) as error:
        load_config(None, [override])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value", [-0.5, "big"])
def test_bad_bn_vae_gamma_names_the_key(value):
    with pytest.raises(TextVAEError, match=r"model\.bn_vae_gamma") as error:
        check_model_section({"bn_vae_gamma": value})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("override", ["train.aggressive=true", "train.pretrain_ae_steps=10", "train.target_rate=5"])
def test_remedies_that_need_a_latent_are_refused_for_a_language_model(override):
    with pytest.raises(TextVAEError, match=override.split("=")[0].replace(".", r"\.") + ".*model_variant is lm"):
        check_remedies(load_config(None, ["model.model_variant=lm", override]))


def test_aggressive_is_refused_for_a_streamed_train_split(capsys, tmp_path):
    code = main(["train", "--quiet", "--out", str(tmp_path / "run"), "--set", "data.streaming=true",
                 "--set", "train.aggressive=true",
                 "--set", "data.train_file=missing.txt"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "train.aggressive" in lines[0] and "streaming" in lines[0]


def test_free_bits_floor_matches_across_modes_for_uniform_kl():
    """The three modes agree when every sentence has the same KL in every dimension (a sanity check of the
    shared meaning of lambda: nats per latent dimension)."""
    kl = torch.full((4, 3), 0.2)
    values = {mode: kl_term(kl, 0.5, mode).item() for mode in ("batch_dimension", "dimension", "sentence")}
    assert all(value == pytest.approx(1.5) for value in values.values())
    assert kl_term(kl, 0.1, "sentence").item() == pytest.approx(0.6)
    assert math.isclose(kl_term(kl, 0.0, "sentence").item(), 0.6, rel_tol=1e-6)


# ---- under torchrun -----------------------------------------------------------------------------------------

@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is needed")
@pytest.mark.slow
def test_two_process_ddp_with_the_remedies_equals_one_process(tmp_path):
    """The remedies that are exact per sentence (free bits per dimension, the target-rate multiplier from the
    whole batch's KL, the decoder reset, aggressive inner updates on shared random batches) make the same
    updates under DDP as in one process."""
    from test_distributed import final_weights, run_training

    config = tmp_path / "tiny.yaml"
    config.write_text("""\
data: {source: null, max_length: 40}
tokenizer: {vocab_size: 400}
model: {embedding_size: 16, encoder_hidden_size: 16, decoder_hidden_size: 16, latent_size: 4}
train: {batch_size: 11, max_steps: 6, eval_every: 3, num_threads: 1, device: cpu, kl_schedule: constant,
        eval_batch_size: 256, progress_bar: false, log_every: 1, free_bits: 0.2, free_bits_mode: dimension,
        target_rate: 30, target_rate_lr: 0.05, pretrain_ae_steps: 2, aggressive: true,
        aggressive_max_inner_steps: 3, aggressive_window: 10, precision: fp32}
""", encoding="utf-8")
    run_training(config, tmp_path / "single", processes=1)
    run_training(config, tmp_path / "ddp", processes=2)
    single, ddp = final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp")
    for name, weight in single.items():
        torch.testing.assert_close(ddp[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    states = [checkpoint(tmp_path / run)["state"] for run in ("single", "ddp")]
    assert states[0]["kl_multiplier"] > 0
    assert states[1]["kl_multiplier"] == pytest.approx(states[0]["kl_multiplier"], rel=1e-4)
    assert states[0]["decoder_reset"] and states[1]["decoder_reset"]


def test_every_parameter_is_on_one_side_of_aggressive_training_bag_of_words_head_included():
    """Aggressive training updates the encoder side, then the decoder side: a parameter on neither would never be
    trained in its aggressive phase. The bag-of-words head, p(words | z), is on the decoder's."""
    model = tiny_model(bag_of_words_weight=1.0)
    encoder, decoder = encoder_parameters(model), decoder_parameters(model)
    assert {id(parameter) for parameter in model.bag_of_words.parameters()} <= {id(parameter) for parameter in decoder}
    sides = [id(parameter) for parameter in [*encoder, *decoder]]
    assert sorted(sides) == sorted(id(parameter) for parameter in model.parameters())  # each once

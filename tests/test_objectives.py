"""KL-weight schedules at known steps, word dropout's rules, free bits' gradient floor, the ELBO loss."""

from __future__ import annotations

import math

import pytest
import torch

from textvae.config import TrainConfig
from textvae.modeling import TextVAEOutput
from textvae.training.objectives import elbo_loss, kl_term, kl_weight, word_dropout


def schedule(**settings) -> TrainConfig:
    return TrainConfig(**settings)


def test_constant_schedule():
    settings = schedule(kl_schedule="constant", kl_max_weight=0.7)
    assert [kl_weight(step, settings) for step in (0, 10, 10**6)] == [0.7, 0.7, 0.7]


def test_linear_schedule_values():
    settings = schedule(kl_schedule="linear", kl_start_weight=0.1, kl_max_weight=1.0, kl_anneal_steps=100)
    assert kl_weight(0, settings) == pytest.approx(0.1)
    assert kl_weight(50, settings) == pytest.approx(0.55)
    assert kl_weight(100, settings) == pytest.approx(1.0)
    assert kl_weight(5000, settings) == pytest.approx(1.0)


def test_logistic_schedule_values():
    settings = schedule(kl_schedule="logistic", kl_max_weight=1.0, kl_anneal_steps=5000, kl_logistic_rate=0.0025)
    assert kl_weight(2500, settings) == pytest.approx(0.5)
    assert kl_weight(0, settings) == pytest.approx(1 / (1 + math.exp(0.0025 * 2500)))
    assert kl_weight(10**7, settings) == pytest.approx(1.0)
    assert kl_weight(0, settings) < kl_weight(1000, settings) < kl_weight(4000, settings)


def test_cyclical_schedule_values():
    settings = schedule(kl_schedule="cyclical", kl_max_weight=1.0, kl_anneal_steps=400, kl_cycles=4,
                        kl_cycle_rise_ratio=0.5)
    # each cycle lasts 100 steps: rises over the first 50, holds for the next 50, then restarts at 0
    assert kl_weight(0, settings) == 0.0
    assert kl_weight(25, settings) == pytest.approx(0.5)
    assert kl_weight(50, settings) == pytest.approx(1.0)
    assert kl_weight(99, settings) == pytest.approx(1.0)
    assert kl_weight(100, settings) == 0.0
    assert kl_weight(325, settings) == pytest.approx(0.5)
    assert kl_weight(400, settings) == 1.0 and kl_weight(10**6, settings) == 1.0


def test_word_dropout_spares_bos_and_padding():
    torch.manual_seed(0)
    inputs = torch.tensor([[1, 5, 6, 7, 8], [1, 9, 0, 0, 0]])
    dropped = word_dropout(inputs, 1.0, unk_id=3, spared_ids=(1, 0))
    assert dropped.tolist() == [[1, 3, 3, 3, 3], [1, 3, 0, 0, 0]]


def test_word_dropout_rate_and_eval_mode():
    torch.manual_seed(0)
    inputs = torch.randint(4, 100, (200, 50))
    inputs[:, 0] = 1
    dropped = word_dropout(inputs, 0.3, unk_id=3, spared_ids=(1, 0))
    share = (dropped[:, 1:] == 3).float().mean().item()
    assert 0.27 < share < 0.33
    assert torch.equal(word_dropout(inputs, 0.3, unk_id=3, spared_ids=(1, 0), training=False), inputs)


def test_free_bits_stops_the_kl_gradient_below_the_floor_only():
    kl = torch.tensor([[0.1, 2.0], [0.3, 4.0]], requires_grad=True)  # batch means: 0.2 (below), 3.0 (above)
    kl_term(kl, free_bits=0.5).backward()
    assert kl.grad[:, 0].abs().sum() == 0
    assert torch.allclose(kl.grad[:, 1], torch.tensor([0.5, 0.5]))
    assert kl_term(kl.detach(), 0.5).item() == pytest.approx(0.5 + 3.0)
    assert kl_term(kl.detach(), 0.0).item() == pytest.approx((2.1 + 4.3) / 2)


def test_elbo_loss_is_rec_plus_weighted_kl():
    output = TextVAEOutput(rec_nll=torch.tensor([10.0, 20.0]), kl_per_dimension=torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    loss = elbo_loss(output, weight=0.5)
    assert loss.loss.item() == pytest.approx(15.0 + 0.5 * 3.0)
    assert loss.rec.item() == 15.0 and loss.kl.item() == 3.0
    lm = elbo_loss(TextVAEOutput(rec_nll=torch.tensor([4.0, 6.0])), weight=1.0)
    assert lm.loss.item() == 5.0 and lm.kl.item() == 0.0

"""textvae's Dropout (modeling/dropout.py): torch's dropout distribution with a mask from uniform draws on a CPU."""

from __future__ import annotations

import pytest
import torch

from textvae.modeling.dropout import Dropout, keep_mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout_keeps_1_minus_p_of_the_units_scaled_and_passes_gradients_through_the_same_mask(p, dtype):
    torch.manual_seed(0)
    layer = Dropout(p).train()
    x = (torch.rand(400, 250) + 0.5).to(dtype).requires_grad_()
    y = layer(x)
    kept = y != 0
    rounded_p = round(p * 2**15) / 2**15  # the mask's 15-bit resolution
    assert y.dtype == dtype and abs(rounded_p - p) <= 2**-16
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.01)  # 100,000 units: sd of the share 0.0016
    torch.testing.assert_close(y[kept], (x[kept] / (1 - rounded_p)).to(dtype))
    y.sum().backward()
    expected_grad = kept.to(dtype) / (1 - rounded_p)
    torch.testing.assert_close(x.grad, expected_grad.to(dtype))


def test_dropout_is_the_identity_in_eval_mode_and_reproducible_from_the_seed():
    x = torch.randn(30, 20)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    torch.manual_seed(3)
    first = Dropout(0.5).train()(x)
    torch.manual_seed(3)
    assert torch.equal(Dropout(0.5).train()(x), first)
    assert not torch.equal(Dropout(0.5).train()(x), first)  # the next draw differs


def test_the_mask_units_are_uniform_15_bit_integers_and_the_keep_share_follows_p_to_its_resolution():
    """Each 64-bit draw gives four units; all four lanes (the top one has a bit fewer from the draw) keep the same
    share, and a p between two multiples of 2⁻¹⁵ rounds to the nearer one."""
    torch.manual_seed(1)
    keep, rounded_p = keep_mask(torch.Size([400_000]), 0.25, torch.device("cpu"))
    assert rounded_p == 0.25 and keep.dtype == torch.bool
    by_lane = keep.view(-1, 4).float().mean(dim=0)  # sd of a lane's share: 0.0014
    assert torch.allclose(by_lane, torch.full((4,), 0.75), atol=0.007), by_lane
    assert keep_mask(torch.Size([3]), 0.3, torch.device("cpu"))[1] == 9830 / 2**15
    assert keep_mask(torch.Size([3]), 1e-6, torch.device("cpu"))[1] == 0.0

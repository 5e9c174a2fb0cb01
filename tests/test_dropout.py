"""textvae's Dropout (modeling/dropout.py): torch's dropout distribution with a mask from uniform draws on a CPU."""

from __future__ import annotations

import pytest
import torch

from textvae.modeling.dropout import Dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout_keeps_1_minus_p_of_the_units_scaled_and_passes_gradients_through_the_same_mask(p, dtype):
    torch.manual_seed(0)
    layer = Dropout(p).train()
    x = (torch.rand(400, 250) + 0.5).to(dtype).requires_grad_()
    y = layer(x)
    kept = y != 0
    assert y.dtype == dtype
    assert kept.float().mean().item() == pytest.approx(1 - p, abs=0.01)  # 100,000 units: sd of the share 0.0016
    torch.testing.assert_close(y[kept], (x[kept] / (1 - p)).to(dtype))
    y.sum().backward()
    expected_grad = kept.to(dtype) / (1 - p)
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

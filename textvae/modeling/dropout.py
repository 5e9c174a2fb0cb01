"""Dropout whose mask on a CPU comes from 15-bit random integers, four per 64-bit draw of torch's generator:
torch's dropout draws the mask with bernoulli_, and uniform floats compared with p (an earlier version here) take
one 32-bit draw per unit; both cost more for the PTB recipe's activations (benchmarks/dropout_speed.py, figures in
benchmarks/RESULTS.md). Each unit is kept with probability 1 − p′ and scaled by 1 / (1 − p′)
(Srivastava et al. 2014), where p′ is p rounded to a multiple of 2⁻¹⁵ (at most 1.5 · 10⁻⁵ away: 0.5 stays 0.5,
0.3 becomes 0.299988), so the expectation is the input exactly. Elsewhere (CUDA) torch's fused kernel stays."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LANE_BITS = 15  # random bits per unit: each 64-bit draw of torch's generator (63 random bits) gives four units


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """A boolean mask of `shape`, each unit True with probability 1 − p′; and p′, p to a multiple of 2⁻¹⁵."""
    count = shape.numel()
    draws = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_()  # uniform in [0, 2⁶³)
    units = draws.view(torch.int16)[:count].view(shape) & (2**LANE_BITS - 1)  # four 15-bit integers per draw
    threshold = round(p * 2**LANE_BITS)
    return units >= threshold, threshold / 2**LANE_BITS


class Dropout(nn.Dropout):
    """nn.Dropout with the mask drawn by keep_mask on a CPU."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or self.p == 1.0 or input.device.type != "cpu" or self.inplace:
            return F.dropout(input, self.p, self.training, self.inplace)
        keep, rounded_p = keep_mask(input.shape, self.p, input.device)
        if rounded_p == 1.0:  # p within 2⁻¹⁶ of 1: every unit dropped
            return input * 0.0
        return input * (keep.to(input.dtype) * (1.0 / (1.0 - rounded_p)))

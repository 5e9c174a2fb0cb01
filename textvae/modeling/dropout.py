"""Dropout whose mask on a CPU comes from uniform draws compared with p: torch's dropout draws it with bernoulli_,
which there took about twice as long for the PTB recipe's activations (736 × 256, with the backward; the per-step
effect is in benchmarks/RESULTS.md). The same distribution: each unit kept with probability 1 − p and scaled by
1 / (1 − p) (Srivastava et al. 2014). Elsewhere (CUDA) torch's fused kernel stays."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Dropout):
    """nn.Dropout with the mask drawn as U(0, 1) ≥ p on a CPU."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or self.p == 1.0 or input.device.type != "cpu" or self.inplace:
            return F.dropout(input, self.p, self.training, self.inplace)
        keep = torch.rand(input.shape, device=input.device) >= self.p
        return input * (keep.to(input.dtype) * (1.0 / (1.0 - self.p)))

"""Sparse word-embedding gradients under plain SGD, and the clipping norm that reads them.

A batch of 32 PTB sentences uses about 700 of the 10,002 rows of each embedding table, yet a dense gradient
fills both tables (10 MB each), the clipping norm reads them and SGD rewrites them: per step three passes over
20 MB for rows whose gradient is zero. With `nn.Embedding.sparse` the backward keeps the rows used, the norm
reads those and SGD adds to those: the same update, because plain SGD (no momentum, no weight decay) leaves a
row with zero gradient where it is. Adam and AdamW move every row through their moment estimates, SGD with
momentum or weight decay does too, so the switch is on only for the published PTB recipe's plain SGD
(He et al. 2019, Li et al. 2019: `train.optimizer: sgd`). Off under DDP, torch.compile and fp16's loss scaler,
which were measured and tested with dense gradients only.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig


def sparse_gradients_apply(settings: TrainConfig, device: torch.device, distributed: bool,
                           loss_scaling: bool = False) -> bool:
    """Whether training `settings` on `device` gives the embeddings sparse gradients (see the module);
    `loss_scaling`: fp16's GradScaler is in use (also when precision `auto` chose fp16)."""
    plain_sgd = settings.optimizer == "sgd" and settings.momentum == 0.0 and settings.weight_decay == 0.0
    return (plain_sgd and device.type in ("cpu", "cuda") and not distributed and not settings.compile
            and settings.precision != "fp16" and not loss_scaling)


def use_sparse_embedding_gradients(model: nn.Module) -> int:
    """Make every embedding table of `model` return sparse gradients; the number of tables switched."""
    tables = [module for module in model.modules() if isinstance(module, nn.Embedding)]
    for table in tables:
        table.sparse = True
    return len(tables)


def total_gradient_norm(parameters: list[nn.Parameter]) -> torch.Tensor:
    """The total L2 norm of the parameters' gradients, sparse ones included (torch.nn.utils.clip_grad_norm_ does
    not take them). Sparse gradients are coalesced first (a row used twice is one row)."""
    dense, sparse_values = [], []
    for parameter in parameters:
        if parameter.grad is None:
            continue
        if parameter.grad.is_sparse:
            parameter.grad = parameter.grad.coalesce()
            sparse_values.append(parameter.grad._values())
        else:
            dense.append(parameter.grad)
    squares = [norm.float().square() for norm in torch._foreach_norm(dense)] if dense else []
    squares += [values.float().square().sum() for values in sparse_values]
    if not squares:
        return torch.zeros(())
    return torch.stack(squares).sum().sqrt()


def clip_factor(norm: torch.Tensor, clip: float) -> torch.Tensor:
    """min(1, clip / (norm + 1e-6)): what clip_grad_norm_ multiplies the gradients by."""
    return (clip / (norm + 1e-6)).clamp(max=1.0)


def step_with_clipping(optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter], clip: float) -> torch.Tensor:
    """Clip the gradients, sparse ones included, to total norm `clip` (0: no clipping) as clip_grad_norm_ would,
    and take plain SGD's step; the norm before clipping. Plain SGD moves each weight by −lr · gradient, so the
    clipped step is the step at learning rate lr · clip_factor: the factor goes into the learning rate for this one
    step instead of a pass over every gradient (the output layer's alone is 10 MB at PTB's size)."""
    if not isinstance(optimizer, torch.optim.SGD) or any(group["momentum"] or group["weight_decay"]
                                                         for group in optimizer.param_groups):
        raise ValueError("step_with_clipping is plain SGD's (no momentum, no weight decay)")
    norm = total_gradient_norm(parameters)
    factor = float(clip_factor(norm, clip)) if clip else 1.0
    learning_rates = [group["lr"] for group in optimizer.param_groups]
    try:
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * factor
        optimizer.step()
    finally:
        for group, learning_rate in zip(optimizer.param_groups, learning_rates):
            group["lr"] = learning_rate
    return norm

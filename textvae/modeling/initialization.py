"""Uniform initialisation of textvae's own layers, the scheme of the published PTB code of He et al. 2019
("Lagging Inference Networks and Posterior Collapse") and Li et al. 2019 ("A Surprisingly Effective Fix for
Deep Latent Variable Modeling of Text"): every weight and bias from U(-0.01, 0.01), embeddings from U(-0.1, 0.1).
Their SGD recipe (learning rate 1.0) trains well from these small weights; PyTorch's defaults are larger."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # the registry imports this module, and configuration the registry
    from .configuration import TextVAEConfig


def initialize_uniformly(module: nn.Module, config: TextVAEConfig) -> nn.Module:
    """Redraw `module`'s parameters as config.weight_init_range / embedding_init_range say (0 leaves them);
    padding rows of embeddings stay zero. Returns `module`."""
    with torch.no_grad():
        if config.weight_init_range > 0:
            for parameter in module.parameters():
                parameter.uniform_(-config.weight_init_range, config.weight_init_range)
        for layer in module.modules():
            if not isinstance(layer, nn.Embedding):
                continue
            if config.embedding_init_range > 0:
                layer.weight.uniform_(-config.embedding_init_range, config.embedding_init_range)
            if config.weight_init_range > 0 or config.embedding_init_range > 0:
                if layer.padding_idx is not None:
                    layer.weight[layer.padding_idx].zero_()
    return module

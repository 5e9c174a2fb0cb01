"""The encoders and decoders a TextVAEConfig can name (encoder_type, decoder_type), in one registry: a name maps
to the class that builds that side, so adding a kind of encoder or decoder is one line here, not another branch.

Classes are named by module path and imported when first built, so the pretrained sides (and transformers'
Auto classes, which they load) cost nothing to a run that does not use them.
"""

from __future__ import annotations

import importlib

from torch import nn

from .initialization import initialize_uniformly

# name -> "module:Class"; every encoder maps (token_ids, lengths) to a summary (batch, summary_size), every decoder
# offers forward(input_ids, z, state), reorder_state, logits and token_nll
ENCODERS = {"lstm": "lstm:LSTMEncoder", "transformer": "transformer:TransformerEncoder",
            "pretrained": "pretrained:PretrainedEncoder"}
DECODERS = {"lstm": "lstm:LSTMDecoder", "transformer": "transformer:TransformerDecoder",
            "pretrained": "pretrained:PretrainedDecoder"}


def registered_class(registry: dict[str, str], name: str) -> type[nn.Module]:
    """The class registered under `name` (imported now, from this package)."""
    module, class_name = registry[name].split(":")
    return getattr(importlib.import_module(f".{module}", __package__), class_name)


def build_side(registry: dict[str, str], name: str, config) -> nn.Module:
    """The encoder or decoder `name` for `config`; textvae's own layers are initialised as the config says
    (modeling.initialization), a pretrained model keeps its weights."""
    module = registered_class(registry, name)(config)
    return module if getattr(module, "keeps_pretrained_weights", False) else initialize_uniformly(module, config)


def build_encoder(config) -> nn.Module:
    """The encoder that `config.encoder_type` names."""
    return build_side(ENCODERS, config.encoder_type, config)


def build_decoder(config) -> nn.Module:
    """The decoder that `config.decoder_type` names."""
    return build_side(DECODERS, config.decoder_type, config)

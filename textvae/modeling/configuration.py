"""TextVAEConfig: every size and choice of the model, saved as config.json beside the weights."""

from __future__ import annotations

import inspect
from typing import Any

from transformers import PretrainedConfig

from ..config import check_value, nearest
from ..errors import TextVAEError

VARIANTS = ("vae", "lm")
Z_CONDITIONING = ("init", "input", "both")


class TextVAEConfig(PretrainedConfig):
    """Sizes of a sentence VAE (Bowman et al. 2016) or, with model_variant='lm', of the same decoder without z.

    z_conditioning says how the latent code reaches the decoder: 'init' maps z to the initial LSTM
    state, 'input' concatenates z to every input embedding, 'both' does the two. bn_vae_gamma > 0
    batch-normalises the posterior means with that fixed scale (BN-VAE, Zhu et al. 2020; modeling.posterior).
    """

    model_type = "textvae"

    def __init__(
        self,
        vocab_size: int = 10000,
        model_variant: str = "vae",
        embedding_size: int = 256,
        encoder_hidden_size: int = 256,
        encoder_layers: int = 1,
        encoder_bidirectional: bool = False,
        decoder_hidden_size: int = 256,
        decoder_layers: int = 1,
        latent_size: int = 32,
        z_conditioning: str = "both",
        embedding_dropout: float = 0.0,
        decoder_dropout: float = 0.0,
        bn_vae_gamma: float = 0.0,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        unk_token_id: int = 3,
        **kwargs: Any,
    ):
        if kwargs.get("decoder_bidirectional"):
            raise TextVAEError("model.decoder_bidirectional: a decoder cannot be bidirectional (it would see the "
                               "words it must predict); remove the key")
        kwargs.pop("decoder_bidirectional", None)
        self.vocab_size = vocab_size
        self.model_variant = model_variant
        self.embedding_size = embedding_size
        self.encoder_hidden_size = encoder_hidden_size
        self.encoder_layers = encoder_layers
        self.encoder_bidirectional = encoder_bidirectional
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_layers = decoder_layers
        self.latent_size = latent_size
        self.z_conditioning = z_conditioning
        self.embedding_dropout = embedding_dropout
        self.decoder_dropout = decoder_dropout
        self.bn_vae_gamma = bn_vae_gamma
        self.unk_token_id = unk_token_id
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
        self.validate_sizes()

    @property
    def has_latent(self) -> bool:
        """True for a VAE, False for the language-model baseline."""
        return self.model_variant == "vae"

    def validate_sizes(self) -> None:
        """Reject impossible sizes and unknown choices with a message naming the key."""
        if self.model_variant not in VARIANTS:
            raise TextVAEError(f"model.model_type: '{self.model_variant}' is not one of {', '.join(VARIANTS)}")
        if self.z_conditioning not in Z_CONDITIONING:
            raise TextVAEError(
                f"model.z_conditioning: '{self.z_conditioning}' is not one of {', '.join(Z_CONDITIONING)}")
        for key in ("vocab_size", "embedding_size", "encoder_hidden_size", "encoder_layers",
                    "decoder_hidden_size", "decoder_layers", "latent_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise TextVAEError(f"model.{key}: must be a positive whole number, got {value!r}")
        for key in ("embedding_dropout", "decoder_dropout"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise TextVAEError(f"model.{key}: must be in [0, 1), got {value!r}")
        gamma = self.bn_vae_gamma
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma < float("inf"):
            raise TextVAEError(f"model.bn_vae_gamma: must be a number >= 0 (0 = no BN-VAE), got {gamma!r}")


def model_section_defaults() -> dict[str, Any]:
    """The keys a `model:` config section may hold, with their defaults."""
    parameters = inspect.signature(TextVAEConfig.__init__).parameters
    skip = {"self", "kwargs", "vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id"}
    keys = {name: p.default for name, p in parameters.items() if name not in skip}
    keys["model_type"] = "vae"  # the name users write for model_variant
    return keys


def check_model_section(values: dict[str, Any]) -> dict[str, Any]:
    """Check a `model:` section (unknown keys with a hint, types, sizes) and map model_type → model_variant."""
    defaults = model_section_defaults()
    checked = {}
    for key, value in values.items():
        if key == "decoder_bidirectional":
            raise TextVAEError("model.decoder_bidirectional: a decoder cannot be bidirectional (it would see the "
                               "words it must predict); remove the key")
        if key not in defaults:
            raise TextVAEError(f"unknown config key 'model.{key}'{nearest(key, list(defaults))}")
        default = defaults[key]
        annotation = "str" if isinstance(default, str) else ""
        checked[key] = check_value(f"model.{key}", value, default, annotation)
    if "model_type" in checked:
        checked["model_variant"] = checked.pop("model_type")
    TextVAEConfig(**checked)  # sizes and choices checked now, before any data is read
    return checked


def build_model_config(section: dict[str, Any], vocab_size: int, special_ids: dict[str, int]) -> TextVAEConfig:
    """A TextVAEConfig from a checked `model:` section and the tokenizer's vocabulary and special ids."""
    return TextVAEConfig(vocab_size=vocab_size, **special_ids, **check_model_section(section))

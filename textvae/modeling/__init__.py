"""The model: configuration, encoders, decoders, posterior and the TextVAE that joins them."""

from .configuration import TextVAEConfig, build_model_config, check_model_section
from .vae import TextVAE, TextVAEOutput

__all__ = ["TextVAE", "TextVAEConfig", "TextVAEOutput", "build_model_config", "check_model_section"]

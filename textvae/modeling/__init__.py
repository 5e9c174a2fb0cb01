"""The model: configuration, encoders, decoders, posterior and the TextVAE that joins them."""

from .configuration import TextVAEConfig, build_model_config, check_model_section
from .registration import register_auto_classes
from .vae import TextVAE, TextVAEOutput

register_auto_classes()  # AutoConfig / AutoModel.from_pretrained(run_dir) after `import textvae`

__all__ = ["TextVAE", "TextVAEConfig", "TextVAEOutput", "build_model_config", "check_model_section"]

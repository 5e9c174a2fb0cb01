"""textvae: sentence-level variational autoencoders for text (Bowman et al. 2016), trained and used
from the command line (`textvae`), from scripts/, or from Python:

    vae = textvae.load("runs/demo")
    vae.sample(5)
    vae.interpolate("the first sentence", "the second sentence", steps=7)
"""

from .api import TextVAEPipeline, load
from .errors import TextVAEError
from .modeling import TextVAE, TextVAEConfig

__all__ = ["TextVAE", "TextVAEConfig", "TextVAEPipeline", "TextVAEError", "load"]
__version__ = "0.1.0"

"""textvae: sentence-level variational autoencoders for text (Bowman et al. 2016), trained and used
from the command line (`textvae`), from scripts/, or from Python:

    vae = textvae.load("runs/demo")
    vae.sample(5)
    vae.interpolate("the first sentence", "the second sentence", steps=7)

The names below load on first use (PEP 562), so `import textvae` and `textvae --help` stay quick:
torch, transformers and the rest are imported by the modules that need them, when they are needed.
"""

from __future__ import annotations

import importlib

from .errors import TextVAEError

_LAZY = {"TextVAE": ".modeling", "TextVAEConfig": ".modeling", "TextVAEPipeline": ".pipeline", "load": ".pipeline"}

__all__ = ["TextVAE", "TextVAEConfig", "TextVAEPipeline", "TextVAEError", "load"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'textvae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

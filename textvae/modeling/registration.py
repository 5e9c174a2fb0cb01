"""TextVAE in transformers' Auto classes: after `import textvae`, `AutoConfig.from_pretrained(run_dir)` gives a
TextVAEConfig and `AutoModel.from_pretrained(run_dir)` a TextVAE, as for any Hugging Face model.

The config registers at once (configuration_auto is small and transformers loads it anyway). The model's
registry lives in transformers.models.auto.modeling_auto, a heavy module that `import textvae` should not load
for commands that never touch it: so the model registers the moment something else imports that module (a
one-shot import hook), or at once when it is already loaded. Nothing needs `trust_remote_code` or an
`auto_map`, since the classes come from the installed package.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

MODELING_AUTO = "transformers.models.auto.modeling_auto"


class AfterImport(importlib.abc.MetaPathFinder):
    """A one-shot import hook: when module `name` is first imported, run `callback(module)` right after the
    module's own code, before the import returns to whoever asked for it."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # let the other finders find the module, once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        run_module, callback = spec.loader.exec_module, self.callback

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            callback(module)

        spec.loader.exec_module = exec_module  # this module's own loader object, so no other module is affected
        return spec


def after_import(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Run `callback(module)` when module `name` is imported: now if it already is, else right after its import."""
    if name in sys.modules:
        callback(sys.modules[name])
    elif not any(isinstance(finder, AfterImport) and finder.name == name and finder.callback == callback
                 for finder in sys.meta_path):
        sys.meta_path.insert(0, AfterImport(name, callback))


def register_model(modeling_auto: ModuleType) -> None:
    from .configuration import TextVAEConfig
    from .vae import TextVAE

    modeling_auto.AutoModel.register(TextVAEConfig, TextVAE, exist_ok=True)


def register_auto_classes() -> None:
    """Register TextVAEConfig with AutoConfig now, and TextVAE with AutoModel when transformers loads its model
    registry (see the module docstring)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from .configuration import TextVAEConfig

    CONFIG_MAPPING.register(TextVAEConfig.model_type, TextVAEConfig, exist_ok=True)
    after_import(MODELING_AUTO, register_model)

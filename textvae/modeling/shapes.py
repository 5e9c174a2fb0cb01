"""What a model config builds, in shapes and counts, without reading or allocating weights: the parameter count
(on the meta device; training refuses a model that cannot fit in memory before building it) and whether saved
weights fit a model (checkpoints, init_from, a run dir's model.safetensors), said in words."""

from __future__ import annotations

import copy

import torch

from ..data.model_folders import read_folder_config
from .configuration import TextVAEConfig
from .vae import TextVAE


def skeleton_config(model_config: TextVAEConfig) -> TextVAEConfig:
    """A copy of the model config whose pretrained sides are built from their folders' configs alone, so the
    meta-device build reads no weights (transformers refuses from_pretrained under a meta device)."""
    skeleton = copy.deepcopy(model_config)
    for side in ("encoder", "decoder"):
        folder = getattr(skeleton, f"pretrained_{side}")
        if getattr(skeleton, f"{side}_type") == "pretrained" and folder and not getattr(skeleton, f"pretrained_{side}_config"):
            setattr(skeleton, f"pretrained_{side}_config", read_folder_config(folder, f"model.pretrained_{side}").to_dict())
    return skeleton


def parameter_count(model_config: TextVAEConfig) -> int:
    """The parameters of the model `model_config` builds, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return sum(parameter.numel() for parameter in TextVAE(skeleton_config(model_config)).parameters())


def weights_mismatch(model: torch.nn.Module, saved: dict[str, tuple[int, ...]], where: str) -> str | None:
    """The first way saved weights (name → shape) do not fit `model`, in words, or None when they fit.

    Names missing from `saved` are fine when they share their parameter with a saved name (tied weights,
    which save_pretrained stores once)."""
    shapes = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    for name, shape in shapes.items():
        if name in saved and tuple(saved[name]) != shape:
            return (f"{name} has shape {tuple(saved[name])} in {where} but {shape} in the model its config describes")
    tied = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        tied.setdefault(id(parameter), []).append(name)
    stored_once = {name for names in tied.values() if any(other in saved for other in names) for name in names}
    missing = [name for name in shapes if name not in saved and name not in stored_once]
    if missing:
        return f"{where} lacks {missing[0]}" + (f" and {len(missing) - 1} more weights" if len(missing) > 1 else "")
    unknown = [name for name in saved if name not in shapes]
    if unknown:
        return f"{where} has {unknown[0]}, which the model its config describes does not"
    return None

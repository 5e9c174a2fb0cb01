"""Setting up a training run: the optimizer, the seeds, the thread share of this process, a model checked to fit
in memory before it is built, the model as the steps run it (sparse embedding gradients, DDP, torch.compile), and
weights started from another run (init_from, decoder_from) or reloaded from the best."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import TrainConfig
from ..errors import TextVAEError
from ..modeling import TextVAE
from ..modeling.shapes import parameter_count, weights_mismatch
from ..runtime import free_memory
from ..data.loading import run_tokenizer
from .collapse import reset_decoder
from .distributed import Workers
from .sparse_gradients import sparse_gradients_apply, use_sparse_embedding_gradients

logger = logging.getLogger("textvae")

BYTES_PER_PARAMETER = 16  # fp32 weight, gradient and Adam's two moments: the least training needs


def check_model_fits(model_config, device: torch.device) -> None:
    """Refuse a model whose weights, gradients and optimizer state alone exceed the free memory, with the
    sizes to lower, instead of an allocation error or the kernel killing the process."""
    try:
        parameters = parameter_count(model_config)  # on the meta device: nothing is allocated
    except Exception:  # a model that cannot be built on the meta device: building it for real will tell
        return
    needed, free = parameters * BYTES_PER_PARAMETER, free_memory(device)
    if free is not None and needed > free:
        raise TextVAEError(f"the model has {parameters:,} parameters: training needs at least {needed / 2**30:.1f} GiB "
                           f"but {free / 2**30:.1f} GiB of {device.type} memory is free; lower model.embedding_size, "
                           "the hidden sizes, model.latent_size or tokenizer.vocab_size")


def reload_best_weights(model: TextVAE, out_dir: Path, optimizers: list[torch.optim.Optimizer | None]) -> None:
    """Put the run dir's best weights (model.safetensors, written at the best validation) back into `model`
    and empty the optimizers' state (momentum, Adam moments), as a newly built optimizer would have it."""
    best = TextVAE.from_pretrained(str(out_dir)).to(model.device)
    model.load_state_dict(best.state_dict())
    for optimizer in optimizers:
        if optimizer is not None:
            optimizer.state.clear()


def start_from_run(model: TextVAE, source: Path, settings: TrainConfig) -> None:
    """Load the best weights of the run dir `source` into `model` and, with train.reset_decoder, draw the decoder
    afresh: Li et al. 2019 start the VAE from a pretrained autoencoder's encoder with a new decoder."""
    if not (source / "model.safetensors").is_file():
        raise TextVAEError(f"train.init_from: {source} has no model.safetensors; train that run first (its best "
                           "weights are what this run starts from)")
    weights = TextVAE.from_pretrained(str(source)).state_dict()
    mismatch = weights_mismatch(model, {name: tuple(value.shape) for name, value in weights.items()}, str(source))
    if mismatch:
        raise TextVAEError(f"train.init_from: the weights of {source} do not fit this run's model ({mismatch}); give "
                           "both runs the same model settings")
    model.load_state_dict(weights)
    if settings.reset_decoder:
        reset_decoder(model, [], settings.seed + 2)
    logger.info(f"started from the weights of {source}" + (", decoder re-initialised" if settings.reset_decoder else ""))


def start_decoder_from_lm(model: TextVAE, source: Path, tokenizer) -> None:
    """Copy the decoder of the trained language model in run dir `source` into `model`'s decoder: every weight
    the two share (embedding, LSTM, vocabulary layer). What only a VAE's decoder has keeps its fresh
    initialisation: the LSTM's input columns that read z, and z's map to the initial state, so the VAE starts
    as that LM with z's pathway nearly closed and learns to open it (as Li et al. 2020's Optimus starts from a
    pretrained GPT-2, here from an LM trained on the same corpus)."""
    if not (source / "model.safetensors").is_file():
        raise TextVAEError(f"train.decoder_from: {source} has no model.safetensors; train that language model first")
    lm = TextVAE.from_pretrained(str(source))
    if lm.config.has_latent:
        raise TextVAEError(f"train.decoder_from: {source} is a VAE, not a language model; give the run dir of a "
                           "run trained with model.model_variant=lm")
    if run_tokenizer(source, "train.decoder_from").get_vocab() != tokenizer.get_vocab():
        raise TextVAEError(f"train.decoder_from: {source} indexes another vocabulary than this run's tokenizer; "
                           "train both on the same corpus and tokenizer settings")
    own = model.decoder.state_dict()
    for name, value in lm.decoder.state_dict().items():
        target = own.get(name)
        if target is not None and target.shape == value.shape:
            target.copy_(value)
        elif (target is not None and name.startswith("lstm.weight_ih_l0") and target.dim() == 2
              and target.shape[0] == value.shape[0] and target.shape[1] > value.shape[1]):
            target[:, : value.shape[1]].copy_(value)  # the word embedding's columns; z's columns come after them
        else:
            raise TextVAEError(f"train.decoder_from: the decoder of {source} does not fit this run's ({name}: "
                               f"{tuple(value.shape)}); give both runs the same decoder settings")
    model.decoder.load_state_dict(own)
    logger.info(f"decoder started from the language model of {source}")


def local_processes(workers: Workers) -> int:
    """Training processes on this machine (torchrun's LOCAL_WORLD_SIZE; else all of them)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", workers.world_size)))
    except ValueError:
        return max(1, workers.world_size)


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's global random streams (weight initialisation, shuffling)."""
    random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(model: torch.nn.Module | list[torch.nn.Parameter], settings: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over a model's (or a list of) parameters; Adam/AdamW use PyTorch's fused
    kernel (one pass over all parameters)."""
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


def model_as_trained(model: TextVAE, settings: TrainConfig, device: torch.device, distributed: bool,
                     loss_scaling: bool = False) -> torch.nn.Module:
    """What the training steps call: `model` with sparse embedding gradients under plain SGD (sparse_gradients.py),
    wrapped in DistributedDataParallel under torchrun, compiled with train.compile. `model` keeps the weights
    (optimizer, checkpoints); train() and the speed and profile benchmarks all build the step's model here."""
    if sparse_gradients_apply(settings, device, distributed, loss_scaling):
        use_sparse_embedding_gradients(model)  # plain SGD: the same update, ~700 rows a batch, not 10,002
    trained = DistributedDataParallel(model) if distributed else model
    return torch.compile(trained) if settings.compile else trained

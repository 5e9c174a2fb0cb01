"""The `ae` row's encoder, kept in the repository so that the rows starting from it can train in a later session.

Run dirs are not kept from one session to the next (a new machine, the work tree laid anew), and a row of the
published recipe takes most of a session on one core, so `ae` (the autoencoder of Li et al. 2019) and a row
that starts from it (`pretrain_free_bits`, `warm_start`) cannot both train in one. Those rows keep only the
encoder (train.reset_decoder draws the decoder afresh), so the table keeps the trained encoder's weights,
fp32, beside the row records (~12 MB: embeddings, LSTM, posterior layer; no text and no vocabulary), with a
fingerprint of the vocabulary they index. A later session rebuilds from it a run dir for train.init_from: the
tokenizer made again from the corpus as the recipe makes it (refused if its fingerprint differs), the encoder
loaded exactly, and a fresh decoder, which the rows replace anyway.

A row that starts its decoder from the `lm` row's (train.decoder_from: `warm_start`) reads a copy of that row's run
(copied_run); the language model is not kept here (its decoder is twice the encoder's size), so that row needs the
`lm` row trained in the same runs dir.

A row that trains another row further (the same config, a higher train.max_epochs) starts from a copy of that
row's run dir with its checkpoint and curves (continued_run), and resumes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from textvae.atomic_files import replace_atomically
from textvae.config import TRAIN_CONFIG, save_config
from textvae.data import load_splits
from textvae.data.tokenization import special_ids, vocabulary_size
from textvae.errors import TextVAEError
from textvae.modeling import TextVAE, build_model_config
from textvae.training.checkpoint import CHECKPOINT, METRICS

ENCODER_SIDE = ("encoder.", "posterior.")  # state-dict prefixes of the inference network
RUN_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "train_config.yaml")
ENCODER_FACTS = "encoder_facts.json"  # in a run dir rows start from: what trained it (finished or not)


def vocabulary_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's (token, id) pairs: two tokenizers with equal fingerprints index words alike."""
    pairs = sorted(tokenizer.get_vocab().items(), key=lambda pair: pair[1])
    return hashlib.sha256(json.dumps(pairs).encode("utf-8")).hexdigest()


def save_encoder(run_dir: Path, path: Path, facts: dict) -> None:
    """Write the encoder side of `run_dir`'s best model to `path` (atomically), with the vocabulary's fingerprint
    and `facts` (what trained it) as metadata."""
    from transformers import PreTrainedTokenizerFast

    model = TextVAE.from_pretrained(str(run_dir))
    weights = {name: tensor.detach().float().contiguous() for name, tensor in model.state_dict().items()
               if name.startswith(ENCODER_SIDE) and tensor.is_floating_point()}
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(run_dir))
    metadata = {"vocabulary_sha256": vocabulary_fingerprint(tokenizer), "facts": json.dumps(facts)}
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(lambda tmp: save_file(weights, str(tmp), metadata=metadata), path)


def encoder_run(source_run: Path, source_facts: dict | None, kept: Path, out_dir: Path, config) -> Path | None:
    """A run dir at `out_dir` whose model holds the trained encoder, for train.init_from: copied from the trained
    row's run dir `source_run` when that row finished here (`source_facts`: its training facts; None when not), else
    rebuilt from the kept encoder file `kept` with the tokenizer made again under `config` (the source row's
    config); None when neither exists."""
    copied = copied_run(source_run, source_facts, out_dir)
    if copied is not None:
        return copied
    if not kept.is_file():
        return None
    with safe_open(str(kept), framework="pt") as handle:
        metadata = handle.metadata() or {}
        weights = {name: handle.get_tensor(name) for name in handle.keys()}
    fingerprint = metadata.get("vocabulary_sha256")
    tokenizer, _ = load_splits(config, None)
    if vocabulary_fingerprint(tokenizer) != fingerprint:
        raise TextVAEError(f"{kept}: the tokenizer made from {config.data.source} indexes words differently from "
                           "the one the kept encoder was trained with; train the `ae` row again")
    scratch = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")  # rows started side by side each make one
    model = TextVAE(build_model_config(config.model, vocabulary_size(tokenizer), special_ids(tokenizer)))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    encoder_missing = [name for name in missing if name.startswith(ENCODER_SIDE)]
    if unexpected or encoder_missing:
        raise TextVAEError(f"{kept}: its weights do not fit the recipe's model (missing {encoder_missing[:3]}, "
                           f"unexpected {unexpected[:3]}); train the `ae` row again")
    model.save_pretrained(str(scratch))
    tokenizer.save_pretrained(str(scratch))
    write_facts(scratch, {**json.loads(metadata.get("facts", "{}")), "kept_in": str(kept)})
    return moved_into_place(scratch, out_dir)


def copied_run(source_run: Path, source_facts: dict | None, out_dir: Path) -> Path | None:
    """A copy at `out_dir` of the trained run `source_run` (its model, config and tokenizer, and `source_facts`: what
    trained it), for a row that starts from its weights; `out_dir` as it is when it already holds a model; None when
    the source has not finished training (`source_facts` None) or has no model."""
    if (out_dir / "model.safetensors").is_file():
        return out_dir
    if source_facts is None or not (source_run / "model.safetensors").is_file():
        return None
    scratch = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")  # rows started side by side each make one
    scratch.mkdir(parents=True)
    for name in RUN_FILES:
        shutil.copy2(source_run / name, scratch / name)
    write_facts(scratch, {"row": source_run.name, **source_facts})
    return moved_into_place(scratch, out_dir)


def continued_run(source_run: Path, source_facts: dict, out_dir: Path, config) -> Path:
    """A copy at `out_dir` of the finished run `source_run` with its checkpoint and curves, to be resumed under
    `config` (the source's config with a higher limit, written as the copy's train_config.yaml): a row that trains
    another row further (ptb_table.CONTINUES). `source_facts` (what trained the source) go into the copy's facts."""
    scratch = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")
    scratch.mkdir(parents=True)
    for name in (*RUN_FILES, CHECKPOINT, METRICS):
        if name != TRAIN_CONFIG:
            shutil.copy2(source_run / name, scratch / name)
    save_config(config, scratch / TRAIN_CONFIG)
    write_facts(scratch, {"row": source_run.name, **source_facts})
    out_dir.mkdir(parents=True, exist_ok=True)  # the row's lock file lives there already
    for path in sorted(scratch.iterdir(), key=lambda path: path.name == CHECKPOINT):  # the checkpoint last: resume
        path.replace(out_dir / path.name)                                            # starts once it is there
    scratch.rmdir()
    return out_dir


def write_facts(run_dir: Path, facts: dict) -> None:
    """Say in a run dir that rows start from (init_from, decoder_from) what trained it, for those rows' records."""
    (run_dir / ENCODER_FACTS).write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")


def encoder_facts(run_dir: Path) -> dict | None:
    """What trained the weights of a run dir that encoder_run or copied_run made (None for one made otherwise)."""
    path = run_dir / ENCODER_FACTS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def moved_into_place(scratch: Path, out_dir: Path) -> Path:
    """Rename the finished folder `scratch` to `out_dir`; when another process got there first (two rows starting
    side by side), keep its folder and drop this one."""
    try:
        scratch.replace(out_dir)
    except OSError:
        if not (out_dir / "model.safetensors").is_file():
            raise
        shutil.rmtree(scratch, ignore_errors=True)
    return out_dir


def same_encoder(run_dir: Path, kept: Path) -> bool:
    """Whether `run_dir`'s model holds exactly the encoder weights kept in `kept` (tests, checks)."""
    state = TextVAE.from_pretrained(str(run_dir)).state_dict()
    with safe_open(str(kept), framework="pt") as handle:
        return all(torch.equal(state[name].float(), handle.get_tensor(name)) for name in handle.keys())

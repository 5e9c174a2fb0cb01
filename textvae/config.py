"""Run settings: dataclasses for data, tokenizer and training, read from YAML with `--set` overrides.

The model's own settings live in `TextVAEConfig` (a transformers config, saved with the model);
the `model:` section is kept as a plain mapping here and checked by `modeling.configuration`.
Every check raises `TextVAEError` with one line that names the key, the problem and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checks import is_real, is_whole
from .errors import TextVAEError


@dataclass
class DataConfig:
    """Where the sentences come from and how long they may be."""

    source: str | None = None  # folder with train/valid/test.txt, a save_to_disk folder, or a hub name; None = embedded corpus
    train_file: str | None = None  # explicit text files (one sentence a line) instead of `source`
    valid_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"  # column holding the sentences in a saved or hub dataset
    hub_config: str | None = None  # configuration name of a hub dataset, if it has several
    max_length: int | str = 64  # most tokens a sentence may have, <bos>/<eos> not counted; auto = chosen from the train split
    length_coverage: float = 0.999  # max_length auto: the shortest limit that keeps this share of the train lines whole
    length_policy: str = "drop"  # what to do with longer sentences: drop | truncate
    synthetic_seed: int = 0  # seed of the embedded corpus (used when no source is given)
    synthetic_train_size: int = 6000  # sentences in the embedded corpus's train split (valid and test: the same 2,000 each at any size)
    streaming: bool = False  # read the train file as a stream (corpora bigger than memory; textvae.data.streaming)
    tokenizer_sample: int = 200_000  # streaming: train the tokenizer on this many lines from the top of the file
    shuffle_buffer: int = 10_000  # streaming: lines in the shuffle buffer
    bucket_batches: int = 50  # streaming: batches' worth of lines bucketed by length together


@dataclass
class TokenizerConfig:
    """How text becomes ids: a word-level or BPE vocabulary trained on the train split, a given file, or the
    tokenizer of a Hugging Face model folder ('pretrained', the default when model.decoder_type is pretrained)."""

    kind: str = "word"  # word | bpe | file | pretrained
    vocab_size: int | str = 10000  # the most entries, special tokens included; auto = chosen from the train split (word)
    vocab_coverage: float = 0.99  # vocab_size auto: the fewest words that cover this share of the train split's tokens
    split: str = "whitespace"  # word: whitespace (text as is: PTB, tokenized text) | punctuation (marks split off words)
    min_frequency: int = 1  # rarer words/merges are left out (words become <unk>)
    path: str | None = None  # a tokenizer.json (kind: file), a model folder (kind: pretrained; default: the decoder's)
    lowercase: bool = False  # lowercase text before tokenizing (also applied to sentences typed later)


@dataclass
class TrainConfig:
    """The optimisation recipe: optimizer, schedule of the KL weight, anti-collapse tricks, evaluation."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 32
    eval_batch_size: int = 128
    max_epochs: int = 10
    max_steps: int = 0  # 0 = no step limit (max_epochs decides)
    max_minutes: float = 0.0  # stop after this much training time (evaluations not counted; kept across resumes); 0 = off
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    warmup_steps: int = 0  # raise the LR linearly from lr / warmup_steps to lr over the first steps (Transformers); 0 = off
    lr_cooldown: float = 0.0  # share of the run's steps (max_steps, else max_epochs) at its end over which the LR falls linearly to 0; 0 = off
    weight_decay: float = 0.0
    momentum: float = 0.0  # for sgd
    grad_clip: float = 5.0  # max global gradient norm; 0 = off
    lr_decay_factor: float = 0.5  # multiply the LR by this when validation loss stops improving
    lr_decay_patience: int = 2  # evaluations without improvement tolerated; the LR decays at the next one (torch's ReduceLROnPlateau)
    lr_decay_from_epoch: int = 0  # the LR may first decay at the validation after this epoch (counted from 1); 0 = at any
    lr_decay_reload_best: bool = False  # at each decay, go back to the best weights so far and restart the optimizer
    lr_decay_max: int = 0  # stop training at this many LR decays; 0 = no cap
    min_lr: float = 1e-5
    eval_every: int = 0  # steps between evaluations; 0 = once per epoch
    checkpoint_minutes: float = 30.0  # between evaluations, also checkpoint after this much training time; 0 = off
    early_stopping_patience: int = 0  # evaluations without improvement before stopping; 0 = off
    kl_schedule: str = "linear"  # constant | linear | logistic | cyclical
    kl_max_weight: float = 1.0  # beta at the end of annealing (beta-VAE weight)
    kl_start_weight: float = 0.0  # beta at step 0 (linear)
    kl_anneal_steps: int = 10000  # length of the warm-up (linear, logistic) or of all cycles (cyclical)
    kl_logistic_rate: float = 0.0025  # steepness of the logistic curve (Bowman et al. 2016)
    kl_cycles: int = 4  # number of cycles (cyclical)
    kl_cycle_rise_ratio: float = 0.5  # share of each cycle spent rising from 0 to kl_max_weight (cyclical)
    word_dropout: float = 0.0  # probability of replacing a decoder input word by <unk> (Bowman et al. 2016)
    free_bits: float = 0.0  # KL floor lambda in nats per latent dimension (Kingma et al. 2016); 0 = off
    free_bits_mode: str = "batch_dimension"  # batch_dimension | dimension | sentence: what the floor clamps
    target_rate: float = 0.0  # minimum desired KL in nats per sentence, a Lagrangian constraint (Pelsmaeker & Aziz 2019); 0 = off
    target_rate_lr: float = 0.01  # step size of the gradient ascent on the target-rate multiplier
    pretrain_ae_steps: int = 0  # train as an autoencoder (beta = 0) this many steps, then reset the decoder (Li et al. 2019)
    init_from: str | None = None  # a run dir whose best weights and tokenizer start this run (e.g. a pretrained autoencoder)
    reset_decoder: bool = False  # with init_from: re-initialise the decoder and keep the encoder (Li et al. 2019's --reset_dec)
    decoder_from: str | None = None  # a language-model run dir (model_variant lm) whose decoder starts this VAE's; z's inputs start fresh
    aggressive: bool = False  # aggressive inference-network training until validation MI stops rising (He et al. 2019)
    aggressive_max_inner_steps: int = 100  # most encoder-only updates before each joint update
    aggressive_window: int = 10  # inner updates compared: stop once a window's mean loss is not below the previous one's
    aggressive_mi_ceiling: bool = True  # also stop at validation MI ≥ log N − sqrt(d / 2N), where it can only rise by noise
    log_every: int = 50  # steps between train lines in metrics.jsonl
    progress_bar: bool = True
    tensorboard: bool = False  # also log metrics.jsonl's scalars to RUN_DIR/tensorboard/ (needs the tensorboard package)
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    precision: str = "auto"  # auto | fp32 | bf16 | fp16: matrix products under autocast; auto = bf16 where fast
    fit_sampling_prior: bool = False  # after training, fit a Gaussian to training codes for `sample` to draw from (modeling/sampling_prior.py)
    compile: bool = False  # torch.compile the model (measured: no gain for the LSTM models on CPU; docs/speed.md)


SCHEDULES = ("constant", "linear", "logistic", "cyclical")
FREE_BITS_MODES = ("batch_dimension", "dimension", "sentence")
CHOICES = {
    ("data", "length_policy"): ("drop", "truncate"),
    ("tokenizer", "kind"): ("word", "bpe", "file", "pretrained"),
    ("tokenizer", "split"): ("whitespace", "punctuation"),
    ("train", "optimizer"): ("adam", "adamw", "sgd"),
    ("train", "kl_schedule"): SCHEDULES,
    ("train", "precision"): ("auto", "fp32", "bf16", "fp16"),
    ("train", "free_bits_mode"): FREE_BITS_MODES,
}
POSITIVE = {("data", "max_length"), ("data", "synthetic_train_size"), ("data", "tokenizer_sample"), ("data", "shuffle_buffer"), ("data", "bucket_batches"), ("tokenizer", "vocab_size"), ("tokenizer", "min_frequency"),
            ("train", "batch_size"), ("train", "eval_batch_size"), ("train", "max_epochs"), ("train", "lr"), ("train", "log_every"),
            ("train", "kl_cycles"), ("train", "kl_anneal_steps"), ("train", "target_rate_lr"),
            ("train", "aggressive_max_inner_steps"), ("train", "aggressive_window")}
PROBABILITIES = {("train", "word_dropout"), ("train", "lr_cooldown"), ("train", "kl_cycle_rise_ratio"), ("train", "lr_decay_factor"),
                 ("data", "length_coverage"), ("tokenizer", "vocab_coverage")}
POSITIVE |= {("data", "length_coverage"), ("tokenizer", "vocab_coverage")}
AUTO = "auto"
CHOSEN_FROM_DATA = {("data", "max_length"), ("tokenizer", "vocab_size")}  # keys that also take `auto` (textvae.data chooses)
PATHS = {("data", "source"), ("data", "train_file"), ("data", "valid_file"), ("data", "test_file")}


@dataclass
class RunConfig:
    """Everything a training run needs; saved as train_config.yaml in the run dir."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: dict[str, Any] = field(default_factory=dict)  # TextVAEConfig keyword arguments
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataConfig, "tokenizer": TokenizerConfig, "train": TrainConfig}


SYNONYMS = {"learning_rate": "lr", "learningrate": "lr", "lr_rate": "lr", "rate": "lr", "epochs": "max_epochs",
            "num_epochs": "max_epochs", "n_epochs": "max_epochs", "steps": "max_steps", "num_steps": "max_steps",
            "max_iters": "max_steps", "iterations": "max_steps", "minutes": "max_minutes", "time_limit": "max_minutes",
            "clip": "grad_clip", "gradient_clip": "grad_clip", "max_grad_norm": "grad_clip", "patience": "early_stopping_patience",
            "vocabulary_size": "vocab_size", "latent_dim": "latent_size", "z_dim": "latent_size", "hidden_size": "decoder_hidden_size",
            "emb_size": "embedding_size", "embedding_dim": "embedding_size", "dtype": "precision", "amp": "precision"}


def did_you_mean(word: str, candidates: list[str]) -> str:
    """' (did you mean X?)' for the likeliest intended key, or a list of the valid ones. Tried in order: a known
    synonym (learning_rate → lr), a candidate that is one of the word's own parts (lr_rate → lr), then the
    closest spellings (difflib), up to three."""
    if SYNONYMS.get(word) in candidates:
        return f" (did you mean '{SYNONYMS[word]}'?)"
    parts = [part for part in word.split("_") if part]
    whole_parts = [part for part in parts if part in candidates]
    if whole_parts:
        return f" (did you mean '{whole_parts[0]}'?)"
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    if close:
        return " (did you mean " + " or ".join(f"'{match}'" for match in close) + "?)"
    return f" (valid keys: {', '.join(sorted(candidates))})"


def number_from_text(text: str) -> float | str:
    """'3e-4' → 0.0003; text that is not a number comes back unchanged."""
    try:
        return float(text)
    except ValueError:
        return text


def check_value(where: str, value: Any, default: Any, annotation: str) -> Any:
    """Coerce `value` to the type of the field (int→float allowed) or raise naming the key."""
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise TextVAEError(f"config key {where}: must not be empty; give a value like {default!r}")
    if "bool" in annotation or isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise TextVAEError(f"config key {where}: expected true or false, got {value!r}")
    if "float" in annotation or isinstance(default, float):
        if isinstance(value, str):
            value = number_from_text(value)  # YAML 1.1 reads 3e-4 (no dot) as text
        if is_real(value) and math.isfinite(value):
            return float(value)
        raise TextVAEError(f"config key {where}: expected a number, got {value!r}")
    if "int" in annotation or isinstance(default, int):
        if is_whole(value):
            return value
        raise TextVAEError(f"config key {where}: expected a whole number, got {value!r}")
    if "str" in annotation or isinstance(default, str):
        if isinstance(value, str) or is_real(value):
            return str(value)
        raise TextVAEError(f"config key {where}: expected text, got {value!r}")
    return value


def build_section(name: str, values: dict[str, Any]) -> Any:
    """One dataclass section from a dict, with unknown keys, types, choices and ranges checked."""
    cls = SECTIONS[name]
    known = {f.name: f for f in dataclasses.fields(cls)}
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise TextVAEError(f"unknown config key '{name}.{key}'{did_you_mean(key, list(known))}")
        spec = known[key]
        if (name, key) in CHOSEN_FROM_DATA and isinstance(value, str) and value.strip().lower() == AUTO:
            checked[key] = AUTO  # chosen from the data when training starts (textvae.data)
            continue
        if (name, key) in CHOSEN_FROM_DATA and isinstance(value, str):
            raise TextVAEError(f"config key {name}.{key}: expected a whole number or auto (chosen from the data), "
                               f"got {value!r}")
        checked[key] = check_value(f"{name}.{key}", value, spec.default, str(spec.type))
        if (name, key) in PATHS and isinstance(checked[key], str):
            checked[key] = expand_home(checked[key])
        choices = CHOICES.get((name, key))
        if choices and checked[key] not in choices:
            raise TextVAEError(
                f"config key {name}.{key}: '{checked[key]}' is not one of {', '.join(choices)}")
    section = cls(**checked)
    for key in known:
        value = getattr(section, key)
        if value == AUTO:
            continue
        if (name, key) in POSITIVE and value is not None and value <= 0:
            raise TextVAEError(f"config key {name}.{key}: must be > 0, got {value}")
        if (name, key) in PROBABILITIES and not 0.0 <= value <= 1.0:
            raise TextVAEError(f"config key {name}.{key}: must be between 0 and 1, got {value}")
        if is_real(value) and value < 0:
            raise TextVAEError(f"config key {name}.{key}: must not be negative, got {value}")
    return section


def expand_home(path: str) -> str:
    """`~/my_text` → `/home/me/my_text`: the shell leaves a ~ after `--set data.source=` as it is."""
    return os.path.expanduser(path) if path.startswith("~") else path


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=3e-4' → (['train', 'lr'], 0.0003); the value is read as YAML so types come out right."""
    if "=" not in text:
        raise TextVAEError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. --set model.latent_size=32")
    dotted, raw = text.split("=", 1)
    path = dotted.strip().split(".")
    if len(path) != 2 or not all(path):
        raise TextVAEError(f"--set {text!r}: the key must be SECTION.KEY, e.g. train.lr or model.latent_size")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return path, value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, with missing files and syntax errors reported on one line."""
    path = Path(path)
    if not path.is_file():
        raise TextVAEError(f"config file not found: {path}; pass an existing YAML file, e.g. configs/demo.yaml")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TextVAEError(f"config file {path}{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    except UnicodeDecodeError:
        raise TextVAEError(f"config file {path}: not UTF-8 text; save it as UTF-8") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise TextVAEError(f"config file {path}: expected a mapping of sections (data, tokenizer, model, train)")
    return loaded


DEMO_RECIPE = Path(__file__).parent / "recipes" / "demo.yaml"
CORPUS_RECIPE = Path(__file__).parent / "recipes" / "corpus.yaml"  # your own text: sizes chosen from the data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The run config from an optional YAML file plus `SECTION.KEY=VALUE` overrides, fully checked.
    With no file, every key takes its dataclass default (use DEMO_RECIPE for the demo's settings)."""
    raw = read_yaml(path) if path else {}
    return config_from_dict(raw, overrides)


def config_from_dict(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Like `load_config`, from an already-parsed mapping."""
    valid_sections = [*SECTIONS, "model"]
    sections: dict[str, dict[str, Any]] = {name: {} for name in valid_sections}
    for name, values in raw.items():
        if name not in sections:
            raise TextVAEError(f"unknown config section '{name}'{did_you_mean(str(name), valid_sections)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise TextVAEError(f"config section '{name}': expected a mapping of keys, got {values!r}")
        sections[name].update(values)
    for text in overrides:
        (name, key), value = parse_override(text)
        if name not in sections:
            raise TextVAEError(f"--set {text!r}: unknown section '{name}'{did_you_mean(name, valid_sections)}")
        sections[name][key] = value
    return RunConfig(
        data=build_section("data", sections["data"]),
        tokenizer=tokenizer_for_model(sections["tokenizer"], sections["model"]),
        model=sections["model"],
        train=build_section("train", sections["train"]),
    )


def tokenizer_for_model(values: dict[str, Any], model: dict[str, Any]) -> TokenizerConfig:
    """The tokenizer section, fitted to the model: a pretrained decoder reads its own vocabulary, so its
    folder's tokenizer is the default (kind 'pretrained', path model.pretrained_decoder), and a vocabulary
    trained here (word, bpe) is refused, since the decoder's embeddings would not match it."""
    pretrained_decoder = model.get("decoder_type") == "pretrained"
    if pretrained_decoder and values.get("kind") in ("word", "bpe"):
        raise TextVAEError(f"config key tokenizer.kind: '{values['kind']}' trains a new vocabulary, but a pretrained "
                           "decoder reads its own; set tokenizer.kind: pretrained (or remove the key)")
    values = {"kind": "pretrained", **values} if pretrained_decoder else values
    section = build_section("tokenizer", values)
    if section.kind == "pretrained" and not section.path:
        if not model.get("pretrained_decoder"):
            raise TextVAEError("config key tokenizer.kind: 'pretrained' reads a model folder's tokenizer; set "
                               "tokenizer.path to the folder (or model.pretrained_decoder)")
        section.path = str(model["pretrained_decoder"])
    return section


TRAIN_CONFIG = "train_config.yaml"  # a run dir's config, as it was trained


def resumed_config(out_dir: Path, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """The config a run was started with (its run dir's train_config.yaml), plus any new overrides."""
    return config_from_dict(read_yaml(Path(out_dir) / TRAIN_CONFIG), overrides)


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (every key, defaults included)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")

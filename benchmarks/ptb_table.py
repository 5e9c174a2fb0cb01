"""The PTB results table: the LSTM language model and each remedy against posterior collapse, trained with
one shared recipe (configs/ptb.yaml: 1-layer LSTMs, embedding 256, hidden 256, latent 32, batch 32) and
scored on the test split with textvae's own evaluation (IW-NLL with k importance samples, -ELBO, KL, MI,
AU, PPL over words + <eos>, reconstruction BLEU), beside the published numbers for the same setting.

Each row trains into RUNS_DIR/<row> and is resumable: a finished row is not trained again, an unfinished one
continues from its checkpoint (the --resume of `textvae train`), so the script can be stopped and rerun, or
run one row at a time (--rows). Test results are cached per k in RUNS_DIR/<row>/ptb_table_results.json.
Processes run side by side, one per core or GPU, never train or evaluate the same row twice: the one training
or evaluating a row holds a lock on it, and the others skip it (so two queues may name the same rows, and each
takes the next row nobody holds) and leave it out of their table until it is recorded.
Each named row is evaluated as soon as its training ends, before the next one trains, so a queue of rows
stopped with its session keeps every row it finished. Each evaluated row is also kept as a small record in
the repository (--records: its training facts, test results and curves, no weights), and the table is
written from those records, so rows trained in earlier sessions stay in it after their run dirs
(gitignored) are gone. Writes the Markdown table (--table) with the
command that made it and, when matplotlib is importable, PNG plots of the training curves next to it.
Uses the GPU when one is present (--device auto). Run from the repo root:
  python benchmarks/ptb_table.py                      # every row: many GPU hours
  python benchmarks/ptb_table.py --rows lm,bn_vae     # some rows; rerun with others later
  python benchmarks/ptb_table.py --status             # where each row stands; trains nothing
  python benchmarks/ptb_table.py --rows ''            # only rewrite the table from the records
  python benchmarks/ptb_table.py --rows '' --note 'bn_vae=paused 11 min'  # a note on a recorded row, in the table
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from ptb_table_carry import continued_run, copied_run, encoder_facts, encoder_run, save_encoder  # benchmarks/ is the script's own folder on sys.path
from ptb_table_records import (
    load_records,
    provenance,
    read_metrics,
    record_from_run,
    records_from_table,
    save_record,
    write_json,
)

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so rows run side by side may train or evaluate one row twice
    fcntl = None

import textvae
from textvae.config import load_config, resumed_config
from textvae.errors import TrainingInterrupted
from textvae.evaluation.progress import PREFIX as PARTIAL_SCORES_PREFIX
from textvae.evaluation.progress import UNREADABLE, scored_share
from textvae.runtime import select_device
from textvae.training import train
from textvae.training.checkpoint import CHECKPOINT

EPOCH = 1315  # training steps in one PTB epoch at batch 32 (42,068 sentences)

# The published LM code (lm.py) halves its LR after 2 validations without improvement, from the first epoch on;
# configs/ptb_lm.yaml is configs/ptb.yaml with these and model_variant lm (tests/test_ptb_table.py checks it).
LM_SCHEDULE = ["train.lr_decay_patience=1", "train.lr_decay_from_epoch=0"]
# Li et al. 2019 train an autoencoder first (β = 0, the same SGD recipe, judged by its reconstruction loss), then
# start the VAE from its weights with a new decoder, KL weight from 0 over 10 epochs, free bits per dimension and
# sentence (their fb = 2 with target_kl 8: λ = 8 / 32 = 0.25). {runs_dir} is --runs-dir.
# The encoder comes from {runs_dir}/ae_encoder: the `ae` row's run dir copied, or, in a later session without it, rebuilt
# from the encoder kept in the records (ptb_table_carry.py).
FROM_AUTOENCODER = ["train.init_from={runs_dir}/ae_encoder", "train.reset_decoder=true", "train.kl_start_weight=0"]
KEPT_ENCODERS = {"ae": "ae_encoder"}  # row: the run dir, under --runs-dir, that rows starting from it read
# textvae's own addition: the decoder starts from the trained `lm` row's (its LSTM, embeddings and output layer; the
# inputs from z start fresh), so the VAE begins where the language model ended instead of relearning it; a copy of
# the `lm` run dir, made when the row starts (ptb_table_carry.copied_run).
FROM_LANGUAGE_MODEL = ["train.decoder_from={runs_dir}/lm_decoder"]
SOURCE_RUNS = {**KEPT_ENCODERS, "lm": "lm_decoder"}  # every row that others start from: the copy they read
# both starts together, at LR 0.25: the LM's weights are already near a minimum (runs/probes/dec_from_lm, issue 24)
WARM_START = [*FROM_AUTOENCODER, *FROM_LANGUAGE_MODEL, "train.lr=0.25"]

# name: (label, overrides of the recipe, configs/ptb.yaml). The recipe's own KL schedule is linear from 0.1 to 1
# over 10 epochs (He et al. 2019); rows change only what their remedy needs. A row with init_from or decoder_from
# trains after the rows it starts from (`ae`, `lm`).
ROWS: dict[str, tuple[str, list[str]]] = {
    "lm": ("LSTM-LM", ["model.model_variant=lm", *LM_SCHEDULE]),
    "ae": ("autoencoder (β = 0): the pretraining of Li et al. 2019", ["train.kl_schedule=constant",
                                                                     "train.kl_max_weight=0"]),
    "bowman": ("VAE + annealing + word dropout (Bowman et al. 2016)", ["train.word_dropout=0.3"]),
    "cyclical": ("cyclical annealing (Fu et al. 2019)",
                 ["train.kl_schedule=cyclical", f"train.kl_anneal_steps={20 * EPOCH}", "train.kl_cycles=4",
                  "train.kl_cycle_rise_ratio=0.5"]),
    "free_bits": ("free bits λ = 0.25 (Kingma et al. 2016)", ["train.free_bits=0.25"]),
    "pretrain_free_bits": ("AE pretraining + reset + free bits λ = 0.25 (Li et al. 2019)",
                           [*FROM_AUTOENCODER, "train.free_bits=0.25", "train.free_bits_mode=dimension"]),
    "aggressive": ("aggressive inference network (He et al. 2019)", ["train.aggressive=true"]),
    "bn_vae": ("BN-VAE γ = 0.7 (Zhu et al. 2020)", ["model.bn_vae_gamma=0.7"]),
    # the package's recipe: Li et al. 2019's, without the 100-epoch cap that ended `pretrain_free_bits` while its
    # validation loss still fell; it trains on to the 5th halving (CONTINUES: from that row's last checkpoint)
    "textvae": ("textvae's own recipe: AE pretraining + reset + free bits λ = 0.25, trained to its 5th halving",
                [*FROM_AUTOENCODER, "train.free_bits=0.25", "train.free_bits_mode=dimension", "train.max_epochs=200"]),
    # textvae's recipe of 2026-12-03 (then the `textvae` row): the encoder of Li et al. 2019's pretraining and the
    # decoder of the trained LM, both at LR 0.25, free bits λ = 0.3
    "warm_start": ("AE encoder + LM decoder, free bits λ = 0.3, LR 0.25 (textvae's earlier recipe)",
                   [*WARM_START, "train.free_bits=0.3", "train.free_bits_mode=dimension"]),
    # Ablations of the published recipe on its cheapest row, the LM (issue 24: what each ingredient is worth)
    "lm_no_reload": ("LSTM-LM, SGD, halving without going back to the best weights (ablation)",
                     ["model.model_variant=lm", *LM_SCHEDULE, "train.lr_decay_reload_best=false"]),
    "lm_adam": ("LSTM-LM, Adam 1e-3 on the published schedule (ablation)",
                ["model.model_variant=lm", *LM_SCHEDULE, "train.optimizer=adam", "train.lr=0.001"]),
    # the README of bohanli/vae-pretraining-encoder runs text_anneal_fb.py at --lr 0.5 (its code's default is 1.0)
    "pretrain_free_bits_lr05": ("AE pretraining + reset + free bits λ = 0.25 at LR 0.5 (the repository README's LR)",
                                [*FROM_AUTOENCODER, "train.free_bits=0.25", "train.free_bits_mode=dimension",
                                 "train.lr=0.5"]),
}
# row: the row it trains further. Its overrides are that row's plus a higher limit, and resume is exact, so it
# starts from that row's last checkpoint (a copy) instead of training the same first epochs again.
CONTINUES = {"textvae": "pretrain_free_bits"}
# The rows as the earlier recipe (configs/ptb_adam.yaml, then named configs/ptb.yaml) trained them, for the records
# written before the recipe changed, which do not name their overrides.
ADAM_RECIPE = "configs/ptb_adam.yaml"
ADAM_OVERRIDES = {
    "lm": ["model.model_type=lm"],
    "pretrain_free_bits": [f"train.pretrain_ae_steps={5 * EPOCH}", "train.free_bits=0.25"],
    "textvae": [f"train.pretrain_ae_steps={5 * EPOCH}", "model.bn_vae_gamma=0.75", "train.free_bits=0.3"],
}


def row_overrides(name: str, runs_dir: str) -> list[str]:
    """The row's overrides of the recipe, with {runs_dir} filled in."""
    return [override.format(runs_dir=runs_dir) for override in ROWS[name][1]]


def starts_from(name: str) -> list[str]:
    """The rows whose trained runs this row starts from (train.init_from, train.decoder_from); empty for none."""
    folders = [override.rsplit("/", 1)[1] for override in ROWS[name][1]
               if override.startswith(("train.init_from={runs_dir}/", "train.decoder_from={runs_dir}/"))]
    return [next((row for row, copy in SOURCE_RUNS.items() if copy == folder), folder) for folder in folders]


def kept_encoder_file(row: str, args: argparse.Namespace) -> Path:
    """Where the records keep the trained encoder of `row` (a row of KEPT_ENCODERS)."""
    return Path(args.records) / f"{row}.encoder.safetensors"


def source_ready(source: str, args: argparse.Namespace) -> bool:
    """Whether the run dir that rows starting from `source` read exists or can be made: from the trained row's run
    dir, or from its encoder kept in the records (a session after the one that trained it)."""
    runs_dir = Path(args.runs_dir)
    trained = read_json(runs_dir / source / TRAINED)  # None: not trained here (a later session)
    if source in KEPT_ENCODERS:
        config = load_config(args.config, [*row_overrides(source, args.runs_dir), *shared_overrides(args)])
        return encoder_run(runs_dir / source, trained, kept_encoder_file(source, args),
                           runs_dir / KEPT_ENCODERS[source], config) is not None
    if source in SOURCE_RUNS:
        return copied_run(runs_dir / source, trained, runs_dir / SOURCE_RUNS[source]) is not None
    return trained is not None


def keep_unfinished_encoder(name: str, args: argparse.Namespace) -> None:
    """Keep the encoder of a row of KEPT_ENCODERS whose training has not ended (its best weights so far), with where
    it stopped in the file's facts: the rows that start from it can then train in a later session."""
    run_dir = Path(args.runs_dir) / name
    lines = read_metrics(run_dir)
    valid = [line for line in lines if line["split"] == "valid"]
    if not (run_dir / "model.safetensors").is_file() or not valid:
        raise SystemExit(f"ptb_table: {name}: nothing trained in {run_dir} to keep")
    best = min(valid, key=lambda line: line["rec"] if name == "ae" else line["loss"])
    learning_rates = [line["lr"] for line in lines if line["split"] == "train"]
    facts = {"row": name, "unfinished": True, "stopped_after_epoch": valid[-1]["epoch"],
             "stopped_after_step": valid[-1]["step"], "best_epoch": best["epoch"], "best_step": best["step"],
             "best_valid_rec": best["rec"], "lr_at_stop": learning_rates[-1] if learning_rates else None,
             "command": args.command}
    save_encoder(run_dir, kept_encoder_file(name, args), facts)
    print(f"ptb_table: {name}: the encoder of its best weights so far (epoch {best['epoch']}, valid rec "
          f"{best['rec']:.2f}) is kept in {kept_encoder_file(name, args)}; training stopped after epoch "
          f"{valid[-1]['epoch']}")


def keep_encoder(name: str, args: argparse.Namespace) -> None:
    """After a row of KEPT_ENCODERS is trained: keep its encoder in the records (once per trained model)."""
    run_dir, kept = Path(args.runs_dir) / name, kept_encoder_file(name, args)
    if name not in KEPT_ENCODERS or not (run_dir / TRAINED).is_file():
        return
    if kept.is_file() and kept.stat().st_mtime >= (run_dir / "model.safetensors").stat().st_mtime:
        return
    save_encoder(run_dir, kept, {"row": name, **read_json(run_dir / TRAINED)})
    logger.info(f"{name}: its encoder is kept in {kept} for the rows that start from it")


def record_recipe(record: dict) -> tuple[str, list[str]]:
    """The recipe file and overrides that trained a recorded row (records from before the recipe changed: Adam)."""
    trained = record["trained"]
    return trained.get("recipe", ADAM_RECIPE), trained.get("overrides")


# Li et al. 2020 (Optimus), PTB, quoting He et al. 2019 and Li et al. 2019 (the same LSTM setting), as the issue lists them.
PUBLISHED = [
    ("LSTM-LM", {"nll": 101.04, "ppl": 100.47}),
    ("VAE + annealing (Bowman et al.)", {"kl": 0.0}),
    ("cyclical annealing", {"kl": 1.37, "au": 5, "ppl": 108.81}),
    ("aggressive inference network", {"kl": 0.93, "au": 4, "ppl": 99.83}),
    ("AE pretraining + free bits", {"kl": 6.54, "mi": 5.31, "au": 32, "ppl": 96.86}),
]

TRAINED = "ptb_table_train.json"  # written when a row's training has finished
RESULTS = "ptb_table_results.json"  # the row's test results (with their k)
EVALUATING = "ptb_table_evaluating.lock"  # locked by the process evaluating the row
TRAINING = "ptb_table_training.lock"  # locked by the process training the row
COLUMNS = (("NLL", "nll", 2), ("−ELBO", "neg_elbo", 2), ("KL", "kl", 2), ("MI", "mi", 2), ("AU", "au", 0),
           ("PPL", "ppl", 2), ("BLEU", "bleu", 2))
CURVES = (("kl", "KL, nats/sentence (train batches; log scale above 1)"), ("mi", "MI, nats (valid)"),
          ("au", "active units (valid)"),
          ("nll", "−ELBO, nats/sentence (valid; LM: NLL)"))
LOG_SCALED = ("kl",)  # curves plotted on a logarithmic y axis
INFLATED_BLEU = "–*"  # stands for a BLEU scored with sacrebleu's 13a tokenizer (results without bleu_tokenize)
INFLATED_BLEU_NOTE = (f"BLEU {INFLATED_BLEU}: scored with sacrebleu's default 13a tokenizer, which splits `<unk>` into "
                      "three tokens that every sentence pair sharing an `<unk>` matches, so the number was inflated "
                      "and is left out; those rows' run dirs are gone, so it cannot be scored again (training the "
                      "row again scores it). Every BLEU shown uses `tokenize=\"none\"` (the results' "
                      "`bleu_tokenize`).")

logger = logging.getLogger("ptb_table")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"rows to train, comma-separated ({', '.join(ROWS)})")
    parser.add_argument("--max-epochs", type=int, default=None, help="train.max_epochs of every row (recipe: 100)")
    parser.add_argument("--max-steps", type=int, default=None, help="train.max_steps of every row (quick checks)")
    parser.add_argument("--iw-samples", type=int, default=500, help="importance samples per test sentence (k)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    parser.add_argument("--config", default="configs/ptb.yaml", help="the shared recipe")
    parser.add_argument("--runs-dir", default="runs/ptb_table", help="one run dir per row under here")
    parser.add_argument("--table", default="benchmarks/ptb_table.md", help="the Markdown table to write")
    parser.add_argument("--records", default="benchmarks/ptb_table_rows",
                        help="one committed JSON record per evaluated row; the table is written from these")
    parser.add_argument("--adopt-table", metavar="TABLE",
                        help="record the measured rows of a table this script wrote earlier (rows with no record "
                             "yet), for rows whose run dirs are lost; their curves are not recoverable")
    parser.add_argument("--note", action="append", default=[], metavar="ROW=TEXT",
                        help="keep TEXT in ROW's record and print it with the row (what the numbers cannot say, "
                             "e.g. that its training was paused); ROW= removes the note; new results for the row (its "
                             "record rewritten) drop it; repeatable")
    parser.add_argument("--keep-unfinished-encoder", metavar="ROW", choices=list(KEPT_ENCODERS),
                        help="keep ROW's encoder (its best weights so far) in the records although its training has "
                             "not ended, saying so in the file, for when a session ends before the row does; "
                             "trains nothing")
    parser.add_argument("--status", action="store_true",
                        help="only print where each row stands (training, evaluation) and exit; trains nothing")
    add_shared_arguments(parser, "row")
    args = parser.parse_args(argv)
    args.command = command_line("benchmarks/ptb_table.py", argv)
    args.rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = [row for row in args.rows if row not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    if args.iw_samples < 0:
        parser.error("--iw-samples must be >= 0")
    args.notes = dict(parse_note(note, parser) for note in args.note)
    return args


def parse_note(note: str, parser: argparse.ArgumentParser) -> tuple[str, str]:
    """--note ROW=TEXT as (ROW, TEXT)."""
    name, equals, text = note.partition("=")
    if not equals or name.strip() not in ROWS:
        parser.error(f"--note {note!r}: write ROW=TEXT with ROW one of {', '.join(ROWS)} (ROW= removes a note)")
    return name.strip(), text.strip()


def add_shared_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """--set and --quiet, which the PTB benchmarks share (`unit`: what one run dir holds, for the help)."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help=f"a config override for every {unit} (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that ran `script` with `argv` (None: this process's own), quoted for a shell."""
    return " ".join(shlex.quote(part) for part in ["python", script, *(sys.argv[1:] if argv is None else argv)])


def shared_overrides(args: argparse.Namespace) -> list[str]:
    """Overrides every row gets: device, limits, --set, progress bar."""
    overrides = [f"train.device={args.device}", *args.overrides]
    if args.max_epochs is not None:
        overrides.append(f"train.max_epochs={args.max_epochs}")
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.quiet:
        overrides.append("train.progress_bar=false")
    return overrides


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def train_row(name: str, args: argparse.Namespace, overrides: list[str] | None = None) -> bool:
    """Train one row to the end, resuming its checkpoint if it has one; wall time accumulates across runs.
    True once the row is trained; False, at once, while another process is training it. `overrides` of
    `args.config` (default: the row's, `row_overrides`) let other benchmarks train their rows the same way."""
    run_dir = Path(args.runs_dir) / name
    if (run_dir / TRAINED).is_file():
        logger.info(f"{name}: already trained, skipped")
        return True
    fresh = overrides is None and not (run_dir / CHECKPOINT).is_file()  # a table row not started yet
    continued = CONTINUES.get(name) if fresh else None
    if continued and not (Path(args.runs_dir) / continued / TRAINED).is_file():
        logger.info(f"{name}: trains the `{continued}` row further, which is not trained yet; skipped (train it "
                    f"first: --rows {continued},{name})")
        return False
    sources = starts_from(name) if fresh and not continued else []
    untrained = [source for source in sources if not source_ready(source, args)]
    if untrained:
        logger.info(f"{name}: starts from the trained {' and '.join(f'`{row}`' for row in untrained)} row"
                    f"{'s' if len(untrained) > 1 else ''}, not trained yet; skipped (train "
                    f"{'them' if len(untrained) > 1 else 'it'} first: --rows {','.join([*untrained, name])})")
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    with claim(run_dir / TRAINING) as claimed:
        if not claimed:
            logger.info(f"{name}: another process is training it; skipped")
            return False
        if continued and not (run_dir / CHECKPOINT).is_file():
            source = Path(args.runs_dir) / continued
            continued_run(source, read_json(source / TRAINED), run_dir,
                          load_config(args.config, [*row_overrides(name, args.runs_dir), *shared_overrides(args)]))
            logger.info(f"{name}: starts from the last checkpoint of {source}")
        if not (run_dir / TRAINED).is_file():  # read under the lock: that process may just have finished
            train_claimed_row(name, run_dir, args,
                              row_overrides(name, args.runs_dir) if overrides is None else overrides)
    return True


def train_claimed_row(name: str, run_dir: Path, args: argparse.Namespace, overrides: list[str]) -> None:
    """Train the row this process holds the lock of, and write its TRAINED facts when training ends."""
    resume = (run_dir / CHECKPOINT).is_file()
    if resume:
        config = resumed_config(run_dir, shared_overrides(args))
        logger.info(f"{name}: resuming {run_dir}")
    else:
        config = load_config(args.config, [*overrides, *shared_overrides(args)])
        logger.info(f"{name}: training into {run_dir}")
    try:
        summary = train(config, run_dir, resume=resume)
    except TrainingInterrupted as stop:  # Ctrl-C or SIGTERM: the step in flight is checkpointed; one line, no traceback
        print(f"{Path(sys.argv[0]).stem}: {name}: {stop.signal_name} after step {stop.step}; its checkpoint is kept "
              f"in {run_dir}: rerun the same command to resume it", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    device = select_device(config.train.device)
    described = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    # the trainer's own clock: checkpointed with the weights, so a killed session's finished epochs still count
    facts = {"seconds": summary["train_seconds"], "steps": summary["steps"], "epochs": summary["epochs"],
             "device": described, "command": args.command, "recipe": args.config, "overrides": overrides,
             "precision": config.train.precision}
    if name in CONTINUES:
        facts["continued_from"] = encoder_facts(run_dir)  # the row whose last checkpoint it started from
    for source in starts_from(name) if name in ROWS and name not in CONTINUES else []:
        # which weights it started from: the encoder of the finished row or of one kept before it ended, the LM's decoder
        if source in SOURCE_RUNS:
            key = "started_from" if source in KEPT_ENCODERS else "decoder_started_from"
            facts[key] = encoder_facts(Path(args.runs_dir) / SOURCE_RUNS[source])
    write_json(run_dir / TRAINED, facts)


def evaluate_row(name: str, args: argparse.Namespace) -> dict | None:
    """The row's test results with k = --iw-samples, computed once per k and trained model, cached in its run dir;
    None while another process (a row trained side by side) is evaluating it."""
    run_dir = Path(args.runs_dir) / name
    with claim(run_dir / EVALUATING) as claimed:
        if not claimed:
            logger.info(f"{name}: another process is evaluating it; left out of this table")
            return None
        cached = cached_results(run_dir, args.iw_samples)  # read under the lock: that process may just have finished
        if cached is not None:
            return cached
        trained = read_json(run_dir / TRAINED)
        steps, precision = trained["steps"], trained.get("precision", "auto")
        logger.info(f"{name}: evaluating on test with k = {args.iw_samples}")
        # in the precision it trained in (the recipe's fp32), not what `auto` picks on this CPU
        vae = textvae.load(run_dir, device=args.device, precision=precision)
        vae.progress = not args.quiet  # k = 500 takes most of an hour on a CPU: show the ETA
        start = time.perf_counter()
        results = vae.evaluate("test", iw_samples=args.iw_samples, samples=0, bleu=True)
        results["eval_seconds"] = time.perf_counter() - start
        results["iw_samples_asked"], results["trained_steps"] = args.iw_samples, steps
        results.pop("kl_per_dim", None)
        write_json(run_dir / RESULTS, results)
        del vae
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return results


@contextmanager
def claim(lock_file: Path) -> Iterator[bool]:
    """Whether this process may do the work `lock_file` guards (train or evaluate a row): True while it holds an
    exclusive lock on the file, False when another process holds it. The OS drops the lock when its holder
    exits, so a killed process leaves no stale claim behind."""
    with open(lock_file, "a") as handle:
        yield locked(handle)


def held_elsewhere(lock_file: Path) -> bool:
    """Whether another process holds `lock_file` now (a file that does not exist is held by nobody)."""
    if not lock_file.is_file():
        return False
    with claim(lock_file) as claimed:
        return not claimed


def locked(handle) -> bool:
    """Take an exclusive advisory lock on an open file without waiting; False when another process holds one."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a filesystem without locks: go on unlocked rather than never evaluate
        return True
    return True


def cached_results(run_dir: Path, iw_samples: int) -> dict | None:
    """The row's saved test results when they were computed with k = `iw_samples` from its finished model."""
    trained, cached = read_json(run_dir / TRAINED), read_json(run_dir / RESULTS)
    if trained is None or cached is None:
        return None
    fresh = cached.get("iw_samples_asked") == iw_samples and cached.get("trained_steps") == trained["steps"]
    return cached if fresh else None


def row_status(name: str, args: argparse.Namespace) -> str:
    """One line on where a row stands: not started, training (its last validation, and whether a process is
    training it now), trained and how far its test evaluation got (from the evaluation's saved partial
    scores), or evaluated."""
    run_dir = Path(args.runs_dir) / name
    trained, results = read_json(run_dir / TRAINED), cached_results(run_dir, args.iw_samples)
    if trained is not None:
        done = f"trained: {trained['epochs']} epochs, {duration(trained['seconds'])}"
        if results is not None:
            return (f"{name}: {done}; evaluated with k = {args.iw_samples}: NLL {results['nll']:.2f}, "
                    f"PPL {results['ppl']:.2f}, KL {results['kl']:.2f}")
        where = "another process is evaluating it" if held_elsewhere(run_dir / EVALUATING) else "rerun to finish it"
        return f"{name}: {done}; test evaluation {evaluation_progress(run_dir)}; {where}"
    has_checkpoint = (run_dir / CHECKPOINT).is_file()
    validations = [line for line in read_metrics(run_dir) if line["split"] == "valid"]
    record = load_records(Path(args.records), [name]).get(name)
    if record is not None and not has_checkpoint:
        results = record["results"]
        return (f"{name}: recorded in {args.records} (no run dir here), k = {results['iw_samples_asked']}: "
                f"NLL {results['nll']:.2f}, PPL {results['ppl']:.2f}, KL {results['kl']:.2f}")
    running = held_elsewhere(run_dir / TRAINING)
    if not (has_checkpoint or running):
        return f"{name}: not started"
    where = "; another process is training it" if running else "; stopped: rerun to resume it"
    epochs = resumed_config(run_dir, []).train.max_epochs if has_checkpoint else "?"
    if not validations:  # a checkpoint written between validations (train.checkpoint_minutes) still tells the time
        return (f"{name}: training, no validation yet" + (training_clock(run_dir, epochs) if has_checkpoint else "")
                + where)
    last = validations[-1]
    measured = "".join(f", {label} {last[key]:.2f}" for key, label in (("kl", "KL"), ("mi", "MI")) if key in last)
    phase = " (autoencoder pretraining)" if last.get("pretraining") else ""
    return (f"{name}: training, epoch {last['epoch']} of {epochs}{phase}: validation loss {last['loss']:.2f}"
            + measured + (f", AU {last['au']}" if "au" in last else "")
            + (training_clock(run_dir, epochs) if has_checkpoint else "") + where)


def training_clock(run_dir: Path, max_epochs: int) -> str:
    """'; trained T, at most L to go at this pace' from the checkpoint's trainer clock (mapped, not read whole).
    The pace is the last epoch's, timed by the validations' train_seconds, so a phase that is over (aggressive
    training, autoencoder pretraining) does not count; the average epoch's where the validations do not tell.
    Early stopping may end the row sooner."""
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", mmap=True, weights_only=True)["state"]
    if not state["epoch"]:
        return f"; trained {duration(state['train_seconds'])} ({state['step']} steps)"
    timed = [record for record in state["history"] if "train_seconds" in record]
    if len(timed) > 1 and timed[-1]["epoch"] > timed[-2]["epoch"]:
        before, last = timed[-2], timed[-1]
        epoch_seconds = (last["train_seconds"] - before["train_seconds"]) / (last["epoch"] - before["epoch"])
    else:
        epoch_seconds = state["train_seconds"] / state["epoch"]
    left = (max_epochs - state["epoch"]) * epoch_seconds
    return f"; trained {duration(state['train_seconds'])}, at most {duration(left)} to go at this pace"


def evaluation_progress(run_dir: Path) -> str:
    """How much of a stopped test evaluation its saved partial scores hold (textvae.score_progress)."""
    saved = sorted(run_dir.glob(f"{PARTIAL_SCORES_PREFIX}*.npz"), key=lambda path: path.stat().st_mtime)
    if not saved:
        return "not started, or under a minute in"
    try:
        share = scored_share(saved[-1])
    except UNREADABLE:
        return f"saved partial scores unreadable ({saved[-1].name}): it will start again"
    return f"{share:.0%} of the sentences scored"


def cell(value, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if digits else str(int(value))


def duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def bleu_is_inflated(results: dict) -> bool:
    """Whether a row's BLEU was scored with sacrebleu's 13a tokenizer: results from before textvae said which
    tokenizer it used (no `bleu_tokenize`) were all scored that way."""
    return results.get("bleu") is not None and results.get("bleu_tokenize", "13a") == "13a"


def table_rows(records: dict[str, dict]) -> list[str]:
    """Markdown rows for the measured rows (from their records), then the published ones; a BLEU scored with
    the 13a tokenizer is left out (INFLATED_BLEU)."""
    lines = []
    for name, record in records.items():
        results = record["results"]
        values = {key: results.get(key) for _, key, _ in COLUMNS}
        if name == "lm":  # the LM has no z: KL is 0 by construction, MI/AU/BLEU do not exist
            values.update(mi=None, au=None, bleu=None)
        cells = [cell(values[key], digits) for _, key, digits in COLUMNS]
        if values["bleu"] is not None and bleu_is_inflated(results):
            cells[[key for _, key, _ in COLUMNS].index("bleu")] = INFLATED_BLEU
        lines.append(f"| {ROWS[name][0]} (`{name}`) | `{record_recipe(record)[0]}` | " + " | ".join(cells)
                     + f" | {duration(record['trained']['seconds'])} | {cell(record['tokens_per_s'], 0)} |")
    for label, values in PUBLISHED:
        lines.append(f"| {label} (published) | papers' code | " + " | ".join(cell(values.get(key), digits) for _, key, digits in COLUMNS)
                     + " | – | – |")
    return lines


def target_verdict(finished: dict[str, dict]) -> str:
    """Which rows reach issue 24's target for textvae's own recipe: PPL below the LM baseline's and the published
    LM's, KL >= 8, MI >= 6, AU = latent size (32); `finished` holds each row's test results."""
    published = dict(PUBLISHED)["LSTM-LM"]["ppl"]
    ours = f" {finished['lm']['ppl']:.2f}" if "lm" in finished else ""
    target = f"Target (PPL below the LM baseline's{ours} and the published LM's {published:.2f}, KL ≥ 8, MI ≥ 6, AU = 32)"
    if "lm" not in finished:
        return f"{target}: no LM row yet, so not judged."
    baseline = min(finished["lm"]["ppl"], published)
    met = [name for name, r in finished.items() if name != "lm" and r["ppl"] < baseline and r["kl"] >= 8
           and (r.get("mi") or 0) >= 6 and r.get("au") == 32]
    verdict = f"met by {', '.join(f'`{name}`' for name in met)}" if met else "met by no row"
    return f"{target}: {verdict}."


def pending_rows(finished: dict[str, dict], evaluating: list[str], other_k: list[str]) -> list[str]:
    """Lines naming the rows another process is evaluating, those recorded with another k, and the rows not
    trained yet (none: no lines)."""
    lines = []
    if evaluating:
        names = ", ".join(f"`{name}`" for name in evaluating)
        lines += [f"Trained, but another process is evaluating them, so not in the table yet: {names}.", ""]
    if other_k:
        names = ", ".join(f"`{name}`" for name in other_k)
        lines += [f"Recorded with another k, so not in this table: {names} (rerun with their run dirs to "
                  "evaluate them again).", ""]
    untrained = [f"`{name}`" for name in ROWS if name not in finished and name not in evaluating + other_k]
    if untrained:
        lines += [f"Not yet trained, so not in the table: {', '.join(untrained)} (`--rows NAME` trains and adds one).",
                  ""]
    return lines


def row_origin(name: str, record: dict) -> str:
    """A list item: the row's overrides of the recipe, its device (train times compare only on one) and, when
    recorded, the command whose run finished its training (rows train one at a time, possibly over several
    resumed runs, before a later run writes the table), or where a recovered row's numbers come from."""
    recipe, overrides = record_recipe(record)
    overrides = ADAM_OVERRIDES.get(name, ROWS[name][1]) if overrides is None else overrides
    line = (f"- `{name}`: {ROWS[name][0]}: `{recipe}` with `{' '.join(overrides)}`; trained on "
            f"{record['trained']['device']}")
    command = record["trained"].get("command")
    line += f"; training finished by `{command}`" if command else ""
    if "recovered_from" in record:
        line += f"; recovered from {record['recovered_from']} (its run dir was lost: numbers as printed, no curves)"
    started = record["trained"].get("started_from") or {}
    if started.get("unfinished"):
        line += (f"; started from the encoder of an unfinished `{started['row']}` run (its best weights, epoch "
                 f"{started['best_epoch']}, of a run stopped after epoch {started['stopped_after_epoch']})")
    continued = record["trained"].get("continued_from") or {}
    if continued:
        line += (f"; its first {continued.get('epochs', '?')} epochs are the `{continued['row']}` row's run (the same "
                 f"config up to train.max_epochs; resume is exact), whose last checkpoint it started from")
    decoder = record["trained"].get("decoder_started_from") or {}
    if decoder:
        line += (f"; its decoder started from a `{decoder['row']}` run ({decoder.get('epochs', '?')} epochs, "
                 f"{decoder.get('precision', 'fp32')}, trained by `{decoder.get('command', '?')}`)")
    return line + (f". Note: {record['note']}" if record.get("note") else "")


def describe_recipe(path: str) -> str:
    """The shared recipe in words, read from the config file."""
    config = load_config(path)
    model, settings = {**load_config(None).model, **config.model}, config.train
    sizes = {key: model.get(key, default) for key, default in (("encoder_layers", 1), ("decoder_layers", 1),
             ("embedding_size", 256), ("encoder_hidden_size", 256), ("decoder_hidden_size", 256), ("latent_size", 32))}
    schedule = settings.kl_schedule
    if schedule == "linear":
        schedule = (f"linear KL annealing {settings.kl_start_weight:g} → {settings.kl_max_weight:g} over "
                    f"{settings.kl_anneal_steps} steps")
    lr_schedule = (f"LR × {settings.lr_decay_factor:g} after {settings.lr_decay_patience + 1} validations without "
                   f"improvement")
    if settings.lr_decay_reload_best:
        lr_schedule += " with the best weights reloaded"
    if settings.lr_decay_from_epoch:
        lr_schedule += f", not before epoch {settings.lr_decay_from_epoch}"
    if settings.lr_decay_max:
        lr_schedule += f", training ending at the {settings.lr_decay_max}th decay"
    if model.get("weight_init_range"):
        lr_schedule += (f"; weights from U(±{model['weight_init_range']:g}), embeddings from "
                        f"U(±{model.get('embedding_init_range', 0):g})")
    return (f"{sizes['encoder_layers']}-layer LSTM encoder, {sizes['decoder_layers']}-layer LSTM decoder, embedding "
            f"{sizes['embedding_size']}, hidden {sizes['encoder_hidden_size']}/{sizes['decoder_hidden_size']}, latent "
            f"{sizes['latent_size']}, batch {settings.batch_size}, {settings.optimizer} {settings.lr:g}, {schedule}, "
            f"{lr_schedule}, at most {settings.max_epochs} epochs"
            + (f", early stopping after {settings.early_stopping_patience}" if settings.early_stopping_patience else ""))


def recipe_lines(records: dict[str, dict], args: argparse.Namespace) -> list[str]:
    """What the recipe column names: each recipe that trained a row, in words, and when the recipe changed."""
    recipes = sorted({record_recipe(record)[0] for record in records.values()} | {args.config})
    described = "; ".join(f"`{recipe}`: {describe_recipe(recipe)}" for recipe in recipes if Path(recipe).is_file())
    return [f"Recipes: {described}. Each row changes only what its remedy needs (listed below); the rows this "
            f"command trained also got `{' '.join(shared_overrides(args))}`, and each row below names the command "
            "that finished its training where it was recorded.",
            f"On 2026-12-02 the recipe changed from `{ADAM_RECIPE}` (Adam, then named configs/ptb.yaml) to the "
            "published code's SGD recipe, `configs/ptb.yaml`; rows are trained again under it one by one, and each "
            "row's recipe column says which trained its numbers."]


def write_table(records: dict[str, dict], evaluating: list[str], other_k: list[str], args: argparse.Namespace,
                plots: list[Path]) -> str:
    finished = {name: record["results"] for name, record in records.items()}
    any_results = next(iter(finished.values()), {})
    devices = sorted({record["trained"].get("device", "?") for record in records.values()})
    header = "| row | recipe | " + " | ".join(label for label, _, _ in COLUMNS) + " | train time | tokens/s |"
    lines = [
        "# PTB: the language model and the remedies against posterior collapse",
        "",
        "Written by this command, run from the repository root (the table is its output, not typed); it trains "
        "the rows it names in turn (resuming any that stopped part-way), evaluating each as soon as its training "
        f"ends and recording it in `{args.records}`, then evaluates and records any other finished row in the runs "
        "dir, and tabulates every recorded row:",
        "",
        *provenance(args.command, devices),
        *recipe_lines(records, args),
        f"Test split: {any_results.get('sentences', '?')} sentences, {any_results.get('tokens', '?')} predicted tokens "
        f"(words + `<eos>`). NLL: importance-weighted with k = {args.iw_samples} per sentence (the LM's is exact); "
        "NLL, −ELBO, KL and MI in nats per sentence; PPL = exp(Σ NLL / Σ words), words = whitespace-separated words "
        "+ `<eos>` (with PTB's word-level tokenizer, the predicted tokens); AU: dimensions with "
        "Cov_x(E_q[z|x]) > 0.01; BLEU: greedy reconstructions from the posterior means against the test sentences, "
        "scored by sacrebleu on the tokenized text (see the note below the table); train time: the trainer's "
        "clock (validation passes not counted), summed over resumed sessions; tokens/s: median training "
        "throughput (target tokens) over the logged windows.",
        "",
        header,
        "| --- | --- |" + " ---: |" * (len(COLUMNS) + 2),
        *table_rows(records),
        "",
        *([INFLATED_BLEU_NOTE, ""] if any(bleu_is_inflated(results) for results in finished.values()) else []),
        target_verdict(finished),
        "",
        *pending_rows(finished, evaluating, other_k),
        "Published rows: Li et al. 2020 (Optimus), quoting He et al. 2019 and Li et al. 2019 for the same "
        "LSTM setting on PTB; a dash where the source gives no number. Their preprocessing and PPL convention may "
        "differ in detail from textvae's.",
        "",
        "Rows (overrides of the recipe):",
        "",
        *[row_origin(name, record) for name, record in records.items()],
    ]
    if plots:
        lines += ["", "Training curves (from each row's metrics.jsonl, kept in its record):", ""]
        lines += [f"![{path.stem}]({path.name})" for path in plots]
    text = "\n".join(lines) + "\n"
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text(text, encoding="utf-8")
    return text


def plot_curves(records: dict[str, dict], args: argparse.Namespace) -> list[Path]:
    """One PNG per curve (KL, MI, AU, validation NLL bound against the step), a line per row with curves in its
    record; [] without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the training-curve plots (pip install matplotlib for them)")
        return []
    if not any(record["curves"].get(key) for record in records.values() for key, _ in CURVES):
        return []  # only recovered rows (no curves): no empty plots
    table = Path(args.table)
    table.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for key, label in CURVES:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for name, record in records.items():
            if key != "nll" and name == "lm":  # the LM has no latent: no KL, MI or AU curve
                continue
            points = record["curves"].get(key)
            if points:
                axes.plot(*zip(*points), label=name, marker="" if key == "kl" else ".")
        axes.set_xlabel("training step")
        axes.set_ylabel(label)
        if key in LOG_SCALED:  # autoencoder pretraining's KL (~250) would flatten every other row's line
            axes.set_yscale("symlog", linthresh=1.0)  # logarithmic above 1, linear below: a KL of 0 stays plotted
        if axes.lines:
            axes.legend(fontsize=8)
        figure.tight_layout()
        path = table.with_name(f"{table.stem}_{key}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.status:
        print("\n".join(row_status(name, args) for name in ROWS))
        return 0
    if args.keep_unfinished_encoder:
        keep_unfinished_encoder(args.keep_unfinished_encoder, args)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("textvae").setLevel(logging.WARNING if args.quiet else logging.INFO)
    records_dir = Path(args.records)
    if args.adopt_table:
        adopt_table(Path(args.adopt_table), records_dir)
    note_rows(args.notes, records_dir)
    for name in args.rows:
        if train_row(name, args):  # False: another process holds it, so this queue goes on to its next row
            keep_encoder(name, args)  # first: the test evaluation may take longer than the session has left
            record_row(name, args, records_dir)  # now, so the record is kept before the next row's hours of training
    trained = [name for name in ROWS if (Path(args.runs_dir) / name / TRAINED).is_file()]
    evaluating = [name for name in trained if not record_row(name, args, records_dir)]
    recorded = load_records(records_dir, [name for name in ROWS if name not in evaluating])
    records = {name: record for name, record in recorded.items()
               if record["results"].get("iw_samples_asked") == args.iw_samples}
    other_k = [name for name in recorded if name not in records]
    plots = plot_curves(records, args)
    text = write_table(records, evaluating, other_k, args, plots)
    print(text)
    return 0


def record_row(name: str, args: argparse.Namespace, records_dir: Path) -> bool:
    """Evaluate a trained row and keep its record (rewritten only when its results changed); False while
    another process is evaluating it."""
    results = evaluate_row(name, args)
    if results is None:
        return False
    if load_records(records_dir, [name]).get(name, {}).get("results") != results:
        run_dir = Path(args.runs_dir) / name
        save_record(records_dir, name, record_from_run(run_dir, read_json(run_dir / TRAINED), results))
    return True


def note_rows(notes: dict[str, str], records_dir: Path) -> None:
    """Keep each --note in its row's record (an empty text removes the note); the row must be recorded."""
    for name, note in notes.items():
        record = load_records(records_dir, [name]).get(name)
        if record is None:
            raise SystemExit(f"--note {name}=...: {name} has no record in {records_dir}; a row is recorded once it "
                             "is evaluated, so note it after that")
        if note:
            record["note"] = note
        else:
            record.pop("note", None)
        save_record(records_dir, name, record)


def adopt_table(table: Path, records_dir: Path) -> None:
    """Record the measured rows of a table this script wrote, for those rows that have no record yet."""
    if not table.is_file():
        raise SystemExit(f"--adopt-table: {table} is not a file; give the path of a table ptb_table.py wrote")
    try:
        found = records_from_table(table.read_text(encoding="utf-8"), COLUMNS, ROWS)
    except ValueError as error:
        raise SystemExit(f"--adopt-table {table}: {error}") from None
    existing = load_records(records_dir, found)
    for name, record in found.items():
        if name in existing:
            logger.info(f"{name}: already recorded in {records_dir}, not taken from {table}")
            continue
        save_record(records_dir, name, record)
        logger.info(f"{name}: recorded from {table}")


if __name__ == "__main__":
    sys.exit(main())

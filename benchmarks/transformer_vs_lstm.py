"""The Transformer VAE against the LSTM VAE on PTB for the same training-time budget: each trains for
--budget-minutes of training time (validation passes not counted: train.max_minutes), then both are scored on
the validation split with textvae's own evaluation (IW-NLL with k samples, KL, MI, AU, PPL), beside their
training throughput and size. One Markdown table, written to --table with the command that made it.

Each model trains into RUNS_DIR/<name> and is resumable: a finished model is not trained again, an unfinished
one continues from its checkpoint with its clock (the budget counts across sessions). Run from the repo root:
  python benchmarks/transformer_vs_lstm.py                          # 2 x 30 min of training on 2 CPU cores
  python benchmarks/transformer_vs_lstm.py --budget-minutes 60 --iw-samples 500
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from datetime import date
from pathlib import Path

import torch
from ptb_table import (  # benchmarks/ is the script's own folder on sys.path
    add_shared_arguments,
    cell,
    command_line,
    read_json,
    write_json,
)
from ptb_table_records import training_speed

import textvae
from textvae.config import load_config
from textvae.config import resumed_config
from textvae.training.checkpoint import CHECKPOINT
from textvae.training import train

MODELS = "lstm=configs/ptb.yaml,transformer=configs/ptb_transformer.yaml"
DONE = "budget_train.json"  # written when a model's training has finished
RESULTS = "budget_results.json"  # its validation results (with their k)
COLUMNS = (("NLL", "nll", 2), ("−ELBO", "neg_elbo", 2), ("KL", "kl", 2), ("MI", "mi", 2), ("AU", "au", 0),
           ("PPL", "ppl", 2))

logger = logging.getLogger("transformer_vs_lstm")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=MODELS, help=f"name=config pairs, comma-separated (default {MODELS})")
    parser.add_argument("--budget-minutes", type=float, default=30.0, help="training time per model (default 30)")
    parser.add_argument("--iw-samples", type=int, default=50, help="importance samples per validation sentence")
    parser.add_argument("--runs-dir", default="runs/transformer_vs_lstm", help="one run dir per model under here")
    parser.add_argument("--table", default="benchmarks/transformer_vs_lstm.md", help="the Markdown table to write")
    add_shared_arguments(parser, "model")
    args = parser.parse_args(argv)
    args.command = command_line("benchmarks/transformer_vs_lstm.py", argv)
    try:
        args.models = dict(pair.split("=", 1) for pair in args.models.split(",") if pair.strip())
    except ValueError:
        parser.error(f"--models: expected name=config pairs separated by commas, got {args.models!r}")
    if args.budget_minutes <= 0 or args.iw_samples < 0:
        parser.error("--budget-minutes must be > 0 and --iw-samples >= 0")
    return args


def overrides(args: argparse.Namespace) -> list[str]:
    """What every model gets: the budget (epochs no longer limit it), --set, the progress bar."""
    extra = [f"train.max_minutes={args.budget_minutes}", "train.max_epochs=1000", "train.early_stopping_patience=0",
             *args.overrides]
    return extra + (["train.progress_bar=false"] if args.quiet else [])


def train_model(name: str, config_path: str, args: argparse.Namespace) -> None:
    """Train one model for the budget, resuming its checkpoint (and its clock) if it has one."""
    run_dir = Path(args.runs_dir) / name
    if (run_dir / DONE).is_file():
        logger.info(f"{name}: already trained, skipped")
        return
    resume = (run_dir / CHECKPOINT).is_file()
    config = resumed_config(run_dir, overrides(args)) if resume else load_config(config_path, overrides(args))
    logger.info(f"{name}: {'resuming' if resume else 'training into'} {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = train(config, run_dir, resume=resume)
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)["state"]
    write_json(run_dir / DONE, {"steps": summary["steps"], "epochs": summary["epochs"],
                                "train_seconds": state["train_seconds"]})


def evaluate_model(name: str, args: argparse.Namespace) -> dict:
    """Validation results with k = --iw-samples (cached per k), plus size and speed."""
    run_dir = Path(args.runs_dir) / name
    trained = read_json(run_dir / DONE)
    cached = read_json(run_dir / RESULTS)
    if cached and cached.get("iw_samples_asked") == args.iw_samples and cached.get("steps") == trained["steps"]:
        return cached
    logger.info(f"{name}: evaluating on valid with k = {args.iw_samples}")
    vae = textvae.load(run_dir)
    results = vae.evaluate("valid", iw_samples=args.iw_samples, samples=0, bleu=False)
    results.pop("kl_per_dim", None)
    results.update(trained, iw_samples_asked=args.iw_samples, tokens_per_s=training_speed(run_dir),
                   parameters=sum(p.numel() for p in vae.model.parameters()),
                   architecture=f"{vae.model.config.encoder_type} encoder, {vae.model.config.decoder_type} decoder "
                                f"(z: {vae.model.config.z_conditioning})")
    write_json(run_dir / RESULTS, results)
    return results


def write_table(results: dict[str, dict], args: argparse.Namespace) -> str:
    """The Markdown report: the command, the machine, the definitions, one row per model."""
    header = ("| model | architecture | parameters | steps | train time | tokens/s | "
              + " | ".join(label for label, _, _ in COLUMNS) + " |")
    rows = [f"| `{name}` ({args.models[name]}) | {r['architecture']} | {r['parameters'] / 1e6:.2f} M | {r['steps']} | "
            f"{r['train_seconds'] / 60:.1f} min | {r['tokens_per_s']:.0f} | "
            + " | ".join(cell(r.get(key), digits) for _, key, digits in COLUMNS) + " |" for name, r in results.items()]
    sentences = next(iter(results.values()), {}).get("sentences", "?")
    text = "\n".join([
        "# PTB: Transformer VAE against LSTM VAE for the same training time",
        "",
        "Made by this command, run from the repository root (the table is its output, not typed):",
        "",
        "```",
        args.command,
        "```",
        "",
        f"Date {date.today().isoformat()}; torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads; "
        f"{'CUDA: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}.",
        f"Budget: {args.budget_minutes:g} minutes of training per model (validation passes not counted). "
        f"Validation split: {sentences} sentences. NLL: importance-weighted with k = {args.iw_samples} per "
        "sentence; NLL, −ELBO, KL and MI in nats per sentence; PPL = exp(Σ NLL / Σ predicted tokens, words + "
        "`<eos>`); AU: dimensions with Cov_x(E_q[z|x]) > 0.01; tokens/s: median training throughput (target "
        "tokens) over the logged windows.",
        "",
        header,
        "| --- | --- |" + " ---: |" * (len(COLUMNS) + 4),
        *rows,
        "",
    ])
    Path(args.table).write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    start = time.perf_counter()
    for name, config_path in args.models.items():
        train_model(name, config_path, args)
    results = {name: evaluate_model(name, args) for name in args.models}
    print(write_table(results, args))
    print(f"seconds={time.perf_counter() - start:.0f} models={len(results)} " + " ".join(
        f"{name}_nll={r['nll']:.2f}" for name, r in results.items()))


if __name__ == "__main__":
    main()

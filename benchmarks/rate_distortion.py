"""The rate-distortion frontier of a sentence VAE on one corpus: a sweep over how much information z carries,
each point a run of one recipe with a different minimum rate, plus the language model (rate 0) as the yardstick.

Rate is the test KL(q(z|x) || p(z)) in nats per sentence; distortion is the reconstruction NLL −E_q log p(x|z) and,
what a homotopy needs, how well the greedy decode of each test sentence's posterior mean reproduces it (exact
matches, corpus BLEU with sacrebleu tokenize="none" on the tokenized text). Beside them: IW-NLL and PPL (words +
<eos>), MI, active units, and distinct-1/2 of prior samples (strategy "sample"). Alemi et al. 2018 (Fixing a
Broken ELBO) frame VAEs by this trade-off: the ELBO does not fix where on the frontier a model lands, the
recipe does; a homotopy between real sentences needs a point far enough along it that both ends come back.

Each point sets the minimum rate r with one lever of the recipe (--lever): free bits of r / latent_size nats per
dimension (batch_dimension mode: the KL below the floor is free, so the model may use r nats for nothing), or
the target-rate constraint KL >= r (Pelsmaeker & Aziz 2019). Points train like benchmarks/ptb_table.py's rows
(its helpers): each into RUNS_DIR/<point>, skipped once finished, resumed from its checkpoint otherwise, one
process per point at a time (a lock); each point's test results are cached in its run dir and kept as a small
committed record (benchmarks/rate_distortion_rows/<corpus>/<point>.json), from which the Markdown table and the
plot (rate on x; reconstruction BLEU and PPL on the y axes) are written. Run from the repository root:
  python benchmarks/rate_distortion.py                           # synthetic corpus, demo recipe: minutes
  python benchmarks/rate_distortion.py --corpus ptb --quiet      # PTB, configs/ptb.yaml: many CPU hours a point
  python benchmarks/rate_distortion.py --points lm,rate_80       # some points; rerun for the others
  python benchmarks/rate_distortion.py --points ''               # only rewrite the table and plot from the records
  python benchmarks/rate_distortion.py --corpus ptb --start-from runs/ptb_table --max-epochs 30 --quiet
With --start-from, every VAE point starts as the PTB table's `warm_start` row does (the `ae` row's encoder, the `lm`
row's decoder, LR 0.25), so it needs tens of epochs instead of a hundred, and the `lm` point is that language
model itself, copied rather than trained again: the frontier is then measured from one common start.
"""

from __future__ import annotations

import argparse
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path

from ptb_table import (  # benchmarks/ is the script's own folder on sys.path
    EVALUATING,
    ROWS,
    SOURCE_RUNS,
    TRAINED,
    WARM_START,
    add_shared_arguments,
    claim,
    command_line,
    duration,
    read_json,
    shared_overrides,
    train_row,
)
from ptb_table_carry import copied_run, encoder_facts
from ptb_table_records import load_records, provenance, record_from_run, save_record, write_json

import textvae
from textvae.config import load_config
from textvae.evaluation import exact_match_share, corpus_bleu
from textvae.data.tokenization import decode_ids

# corpus: (recipe, default k for the IW-NLL, default sweep of rates in nats per sentence)
CORPORA = {
    "synthetic": ("configs/demo.yaml", 50, (5, 10, 20, 40, 80)),
    "ptb": ("configs/ptb.yaml", 500, (5, 10, 20, 40, 80)),
}
LEVERS = ("free_bits", "target_rate")
RESULTS = "rate_distortion_results.json"  # a point's test results, in its run dir
# header, results key, digits
COLUMNS = (("KL (rate)", "kl", 2), ("rec", "rec", 2), ("−ELBO", "neg_elbo", 2), ("NLL (IW)", "nll", 2),
           ("PPL", "ppl", 2), ("MI", "mi", 2), ("AU", "au", 0), ("exact %", "exact_percent", 1),
           ("BLEU", "reconstruction_bleu", 2), ("distinct-1", "distinct_1", 3), ("distinct-2", "distinct_2", 3))

logger = logging.getLogger("rate_distortion")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="synthetic", choices=list(CORPORA), help="which corpus and recipe")
    parser.add_argument("--config", help="the recipe every point starts from (default: the corpus's)")
    parser.add_argument("--rates", help="minimum rates to sweep, nats per sentence, comma-separated "
                                        "(default 5,10,20,40,80)")
    parser.add_argument("--lever", default="free_bits", choices=LEVERS,
                        help="how a point sets its minimum rate (default free_bits)")
    parser.add_argument("--points", help="points to train and evaluate, comma-separated: lm and rate_R for R in "
                                         "--rates (default all; '' = none, only rewrite the table)")
    parser.add_argument("--iw-samples", type=int, help="importance samples per test sentence (default: 50 "
                                                        "synthetic, 500 PTB)")
    parser.add_argument("--samples", type=int, default=500, help="prior samples for distinct-n (default 500)")
    parser.add_argument("--test-limit", type=int, default=0,
                        help="evaluate on the first N test sentences only (default 0: all of them)")
    parser.add_argument("--max-epochs", type=int, default=None, help="train.max_epochs of every point")
    parser.add_argument("--max-steps", type=int, default=None, help="train.max_steps of every point (quick checks)")
    parser.add_argument("--start-from", metavar="RUNS_DIR",
                        help="start every VAE point from RUNS_DIR/ae_encoder's encoder and RUNS_DIR/lm_decoder's "
                             "decoder (LR 0.25), and take the lm point from RUNS_DIR/lm_decoder (benchmarks/"
                             "ptb_table.py's runs dir once its warm_start row has started)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    parser.add_argument("--runs-dir", help="one run dir per point under here (default runs/rate_distortion/CORPUS)")
    parser.add_argument("--table", help="the Markdown table to write (default benchmarks/rate_distortion_CORPUS.md; "
                                        "the plot goes next to it as .png)")
    parser.add_argument("--records", help="one committed JSON record per evaluated point "
                                          "(default benchmarks/rate_distortion_rows/CORPUS)")
    add_shared_arguments(parser, "point")
    args = parser.parse_args(argv)
    recipe, k, rates = CORPORA[args.corpus]
    args.command = command_line("benchmarks/rate_distortion.py", argv)
    args.config = args.config or recipe
    args.iw_samples = k if args.iw_samples is None else args.iw_samples
    try:
        args.rates = [float(rate) for rate in args.rates.split(",")] if args.rates else [float(r) for r in rates]
    except ValueError:
        parser.error(f"--rates {args.rates!r}: give numbers separated by commas, e.g. 5,10,20")
    if any(rate <= 0 for rate in args.rates):
        parser.error("--rates: every rate must be > 0 (the LM is the point of rate 0)")
    args.runs_dir = args.runs_dir or f"runs/rate_distortion/{args.corpus}"
    args.table = args.table or f"benchmarks/rate_distortion_{args.corpus}.md"
    args.records = args.records or f"benchmarks/rate_distortion_rows/{args.corpus}"
    names = point_overrides(args)
    args.points = list(names) if args.points is None else [p.strip() for p in args.points.split(",") if p.strip()]
    unknown = [point for point in args.points if point not in names]
    if unknown:
        parser.error(f"unknown point(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.iw_samples < 0 or args.samples < 0:
        parser.error("--iw-samples and --samples must be >= 0")
    missing = [SOURCE_RUNS[row] for row in ("ae", "lm")
               if args.start_from and not (Path(args.start_from) / SOURCE_RUNS[row] / "model.safetensors").is_file()]
    if missing:
        parser.error(f"--start-from {args.start_from}: no trained model in {', '.join(missing)}; train the PTB "
                     "table's rows first (python benchmarks/ptb_table.py --rows ae,lm,textvae)")
    return args


def point_name(rate: float) -> str:
    return f"rate_{rate:g}"


def point_overrides(args: argparse.Namespace) -> dict[str, list[str]]:
    """Each point's overrides of the recipe: the LM, then one point per rate, its lever set and the other off."""
    latent = load_config(args.config).model.get("latent_size", 32)
    # PTB's LM halves its LR on the published LM code's schedule, as in the PTB table's `lm` row
    points = {"lm": list(ROWS["lm"][1]) if args.corpus == "ptb" else ["model.model_variant=lm"]}
    for rate in args.rates:
        if args.lever == "free_bits":
            points[point_name(rate)] = [f"train.free_bits={rate / latent:g}", "train.free_bits_mode=batch_dimension",
                                        "train.target_rate=0"]
        else:
            points[point_name(rate)] = [f"train.target_rate={rate:g}", "train.free_bits=0"]
        if args.start_from:
            points[point_name(rate)] += [override.format(runs_dir=args.start_from) for override in WARM_START]
    return points


def take_language_model(args: argparse.Namespace) -> bool:
    """--start-from: the lm point is the language model the VAE points start from, copied with what trained it
    (its TRAINED facts) instead of trained again; True once it is there."""
    run_dir, source = Path(args.runs_dir) / "lm", Path(args.start_from) / SOURCE_RUNS["lm"]
    if not (run_dir / TRAINED).is_file():
        facts = {key: value for key, value in (encoder_facts(source) or {}).items() if key != "row"}
        if "steps" not in facts:
            raise SystemExit(f"rate_distortion: {source} does not say what trained it (no steps in its facts); "
                             "let benchmarks/ptb_table.py make it from a trained `lm` row")
        copied_run(source, {**facts, "copied_from": str(source)}, run_dir)
        write_json(run_dir / TRAINED, {**facts, "copied_from": str(source)})
    return True


def evaluate_point(name: str, args: argparse.Namespace) -> dict | None:
    """The point's test results (cached in its run dir for this k, number of samples and trained model); None
    while another process is evaluating it."""
    run_dir = Path(args.runs_dir) / name
    with claim(run_dir / EVALUATING) as claimed:
        if not claimed:
            logger.info(f"{name}: another process is evaluating it; left out of this table")
            return None
        trained, cached = read_json(run_dir / TRAINED), read_json(run_dir / RESULTS)
        asked = {"iw_samples_asked": args.iw_samples, "samples_asked": args.samples, "test_limit": args.test_limit,
                 "trained_steps": trained["steps"]}
        if cached is not None and all(cached.get(key) == value for key, value in asked.items()):
            return cached
        logger.info(f"{name}: evaluating on test with k = {args.iw_samples}")
        vae = textvae.load(run_dir, device=args.device)
        vae.progress = not args.quiet
        start = time.perf_counter()
        references = test_sentences(vae, args.test_limit)
        results = vae.evaluate(sentences=references, iw_samples=args.iw_samples, samples=args.samples, bleu=False)
        results.pop("kl_per_dim", None)
        results["split"] = "test" if not args.test_limit else f"test, first {len(references)} sentences"
        if vae.model.config.has_latent:
            results.update(reconstruction_scores(vae, references))
        results["eval_seconds"] = time.perf_counter() - start
        results.update(asked)
        write_json(run_dir / RESULTS, results)
        return results


def test_sentences(vae, limit: int = 0) -> list[str]:
    """The run's test split (its first `limit` sentences when limit > 0), as the model reads them: tokens
    written back, unknown words as <unk>, the length filter of training applied."""
    split = vae.corpus_split("test")
    references = [decode_ids(vae.tokenizer, ids) for ids in split.token_ids]
    return references[:limit] if limit else references


def reconstruction_scores(vae, references: list[str]) -> dict[str, float]:
    """Greedy decodes of the sentences' posterior means against the sentences (as the model reads them): the
    share reproduced exactly (as a percentage) and corpus BLEU (tokenize="none")."""
    decodes = vae.reconstruct(references)
    return {"exact_percent": 100 * exact_match_share(decodes, references),
            "reconstruction_bleu": corpus_bleu(decodes, references)}


def cell(value, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if digits else str(int(value))


def cpu_name() -> str:
    """The CPU model as lscpu names it (where lscpu exists)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")),
                platform.processor() or "unknown CPU")


def write_table(records: dict[str, dict], args: argparse.Namespace, plot: Path | None) -> str:
    """The Markdown table of the recorded points, LM first, then by rate."""
    any_results = next(iter(records.values()), {}).get("results", {})
    devices = sorted({record["trained"].get("device", "?") for record in records.values()})
    lines = [
        f"# Rate and distortion on the {args.corpus} corpus",
        "",
        "Written by this command, run from the repository root (the table is its output, not typed):",
        "",
        *provenance(args.command, [f"{', '.join(devices)} ({cpu_name()})"]),
        f"Recipe: `{args.config}` for every point; each point sets its minimum rate r (nats per sentence) with "
        + ("free bits λ = r / latent_size per dimension (batch_dimension)" if args.lever == "free_bits"
           else "the target-rate constraint KL ≥ r") + "; `lm` is the recipe's decoder with no z"
        + (f" (the language model every point starts from, copied from `{args.start_from}/{SOURCE_RUNS['lm']}`; "
           f"the points' encoders start from `{args.start_from}/{SOURCE_RUNS['ae']}`)" if args.start_from else "")
        + ". "
        f"Every point this command trained also got `{' '.join(shared_overrides(args))}`.",
        f"Test split ({any_results.get('split', 'test')}): {any_results.get('sentences', '?')} sentences, {any_results.get('tokens', '?')} predicted "
        f"tokens (words + `<eos>`). KL (the rate), rec (the distortion, one posterior sample), −ELBO and NLL in nats "
        f"per sentence; NLL importance-weighted with k = {args.iw_samples} (the LM's exact); PPL = exp(Σ NLL / Σ "
        "predicted tokens); AU: dimensions with Cov_x(E_q[z|x]) > 0.01; exact % and BLEU: greedy decodes of the "
        "posterior means against the test sentences (sacrebleu corpus BLEU, tokenize=\"none\"); distinct-n: of "
        f"{args.samples} prior samples (strategy sample); train time: the trainer's clock.",
        "",
        "| point | " + " | ".join(label for label, _, _ in COLUMNS) + " | train time |",
        "| --- |" + " ---: |" * (len(COLUMNS) + 1),
    ]
    for name, record in records.items():
        results = record["results"]
        values = [None if name == "lm" and key in ("kl", "mi", "au") else results.get(key) for _, key, _ in COLUMNS]
        lines.append(f"| `{name}` | " + " | ".join(cell(value, digits) for value, (_, _, digits) in zip(values, COLUMNS))
                     + f" | {duration(record['trained']['seconds'])} |")
    lines += ["", "Points (overrides of the recipe):", ""]
    overrides = point_overrides(args)
    lines += [f"- `{name}`: `{' '.join(overrides.get(name, ['?']))}`; training finished by "
              f"`{record['trained'].get('command')}`" for name, record in records.items()]
    if plot is not None:
        lines += ["", f"![rate against distortion]({plot.name})"]
    text = "\n".join(lines) + "\n"
    Path(args.table).parent.mkdir(parents=True, exist_ok=True)
    Path(args.table).write_text(text, encoding="utf-8")
    return text


def plot_frontier(records: dict[str, dict], args: argparse.Namespace) -> Path | None:
    """Rate on x; reconstruction BLEU (left axis) and PPL (right axis); the LM's PPL as a dashed line. None
    without matplotlib or without a VAE point."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install matplotlib for it)")
        return None
    points = sorted(((record["results"]["kl"], name) for name, record in records.items() if name != "lm"))
    if not points:
        return None
    rates = [rate for rate, _ in points]
    points = [(rate, records[name]["results"]) for rate, name in points]
    figure, bleu_axis = plt.subplots(figsize=(7, 4.5))
    bleu_axis.plot(rates, [r["reconstruction_bleu"] for _, r in points], "o-", color="tab:blue",
                   label="reconstruction BLEU")
    bleu_axis.plot(rates, [r["exact_percent"] for _, r in points], "s:", color="tab:cyan", label="exact matches, %")
    bleu_axis.set_xlabel("rate: test KL, nats per sentence")
    bleu_axis.set_ylabel("reconstruction BLEU / exact %")
    bleu_axis.set_ylim(0, 100)
    ppl_axis = bleu_axis.twinx()
    ppl_axis.plot(rates, [r["ppl"] for _, r in points], "^-", color="tab:red", label="PPL (IW)")
    if "lm" in records:
        ppl_axis.axhline(records["lm"]["results"]["ppl"], color="tab:red", linestyle="--", label="PPL of the LM")
    ppl_axis.set_ylabel("perplexity (log scale)")
    ppl_axis.set_yscale("log")  # PPL grows about exponentially with the rate once z carries more than it helps
    handles = bleu_axis.get_legend_handles_labels()[0] + ppl_axis.get_legend_handles_labels()[0]
    bleu_axis.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="center right")
    bleu_axis.set_title(f"{args.corpus}: rate against distortion")
    figure.tight_layout()
    path = Path(args.table).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("textvae").setLevel(logging.WARNING if args.quiet else logging.INFO)
    overrides, records_dir = point_overrides(args), Path(args.records)
    for name in args.points:
        taken = args.start_from and name == "lm"
        if take_language_model(args) if taken else train_row(name, args, overrides[name]):  # False: being trained
            results = evaluate_point(name, args)
            if results is not None:
                run_dir = Path(args.runs_dir) / name
                save_record(records_dir, name, record_from_run(run_dir, read_json(run_dir / TRAINED), results))
    found = load_records(records_dir, overrides)
    rated = sorted((name for name in found if name != "lm"), key=lambda name: found[name]["results"]["kl"])
    records = {name: found[name] for name in (["lm"] if "lm" in found else []) + rated}
    plot = plot_frontier(records, args)
    print(write_table(records, args, plot))
    return 0


if __name__ == "__main__":
    sys.exit(main())

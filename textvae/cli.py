"""The `textvae` command: one subcommand per use, each a thin layer over the Python API.

User mistakes (TextVAEError) are printed as one line starting with 'textvae: error:' and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .errors import TextVAEError


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run directory written by `textvae train`")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument("--precision", default="auto",
                        help="auto | fp32 | bf16 | fp16 for scoring (default auto: bf16 where the hardware is fast)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textvae", description="Sentence VAEs: train, sample, interpolate, "
                                     "reconstruct, encode and evaluate.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model and write a run dir")
    train.add_argument("--config", help="YAML config (default: the demo recipe on the embedded corpus)")
    train.add_argument("--out", help="run directory to write (default: runs/<config name>)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value, e.g. --set model.latent_size=32 (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-split log lines")

    sample = commands.add_parser("sample", help="decode sentences from the prior")
    add_run_dir(sample)
    sample.add_argument("-n", type=int, default=10, help="how many sentences (default 10)")
    add_decoding(sample)

    reconstruct = commands.add_parser("reconstruct", help="encode sentences and decode them back")
    add_run_dir(reconstruct)
    reconstruct.add_argument("sentences", nargs="+", help="sentences to reconstruct")
    add_decoding(reconstruct)

    interpolate = commands.add_parser("interpolate", help="decode points between two sentences (homotopy)")
    add_run_dir(interpolate)
    interpolate.add_argument("first")
    interpolate.add_argument("second")
    interpolate.add_argument("--steps", type=int, default=7, help="points on the path, ends included (default 7)")
    interpolate.add_argument("--max-length", type=int, default=50)

    encode = commands.add_parser("encode", help="write posterior means of a file's lines to a .npy file")
    add_run_dir(encode)
    encode.add_argument("file", help="text file, one sentence per line (blank lines are skipped)")
    encode.add_argument("--out", required=True, help="where to write the (n, latent) array, e.g. vectors.npy")
    encode.add_argument("--sample", action="store_true", help="one posterior sample per sentence, not the mean")

    evaluate = commands.add_parser("evaluate", help="IW-NLL, PPL, -ELBO, KL, MI, AU, BLEU of a split; writes results.json")
    add_run_dir(evaluate)
    evaluate.add_argument("--split", default="test", help="train | valid | test (default test)")
    evaluate.add_argument("--file", help="score this text file instead of a split of the run's corpus")
    evaluate.add_argument("--iw-samples", type=int, default=500,
                          help="importance samples per sentence for the NLL (default 500, the papers' protocol; "
                               "0 = report the ELBO bound)")
    evaluate.add_argument("--samples", type=int, default=500, help="prior samples for distinct-n/self-BLEU (0 = skip)")
    evaluate.add_argument("--no-bleu", action="store_true", help="skip reconstruction BLEU")
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--seed", type=int, default=0)

    score = commands.add_parser("score", help="per-sentence -ELBO, IW-NLL and NLL per token of a file's lines")
    add_run_dir(score)
    score.add_argument("file", help="text file, one sentence per line (blank lines are skipped)")
    score.add_argument("--out", required=True, help="scores.jsonl or scores.csv (by extension)")
    score.add_argument("--iw-samples", type=int, default=100, help="importance samples per sentence (default 100)")
    score.add_argument("--seed", type=int, default=0)

    detect = commands.add_parser("detect", help="ROC-AUC and average precision of the scores on inliers vs outliers")
    add_run_dir(detect)
    detect.add_argument("--inliers", required=True, help="text file of normal sentences")
    detect.add_argument("--outliers", required=True, help="text file of anomalous sentences")
    detect.add_argument("--iw-samples", type=int, default=100)
    detect.add_argument("--seed", type=int, default=0)

    compare = commands.add_parser("compare", help="Markdown table of the results.json of several runs")
    compare.add_argument("run_dirs", nargs="+", help="run dirs that `textvae evaluate` has scored")

    corpus = commands.add_parser("corpus", help="write the embedded synthetic corpus to a folder")
    corpus.add_argument("out_dir")
    corpus.add_argument("--seed", type=int, default=0)
    return parser


def add_decoding(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", default="greedy", help="greedy | sample (default greedy)")
    parser.add_argument("--temperature", type=float, default=1.0, help="for --strategy sample (default 1.0)")
    parser.add_argument("--max-length", type=int, default=50, help="most tokens per sentence (default 50)")
    parser.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")


def run_train(args: argparse.Namespace) -> None:
    from .config import DEMO_RECIPE, load_config
    from .training import prepare_out_dir, resumed_config, train

    if args.resume and not args.out:
        raise TextVAEError("--resume needs --out RUN_DIR, the run to continue")
    name = Path(args.config).stem if args.config else "synthetic"  # the demo recipe's run
    out = Path(args.out or Path("runs") / name)
    if args.resume:
        prepare_out_dir(out, resume=True)  # no checkpoint: say so before reading its train_config.yaml
        config = resumed_config(out, args.overrides)
    else:
        config = load_config(args.config or DEMO_RECIPE, args.overrides)
    if args.quiet:
        config.train.progress_bar = False
    summary = train(config, out, resume=args.resume)
    best = summary["best_valid"]
    print(f"run dir: {out}")
    print(f"trained {summary['steps']} steps; best valid at step {best['step']}: -ELBO {best['loss']:.3f} "
          f"= rec {best['rec']:.3f} + KL {best['kl']:.3f} nats/sentence, PPL bound {best['ppl_bound']:.2f}")


def run_evaluate(args: argparse.Namespace, vae) -> None:
    results = vae.evaluate(split=args.split, file=args.file, iw_samples=args.iw_samples, batch_size=args.batch_size,
                           seed=args.seed, bleu=not args.no_bleu, samples=args.samples)
    rows = [(key, value) for key, value in results.items() if key != "kl_per_dim"]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    target = Path(vae.run_dir) / "results.json"
    target.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"(written to {target})")


def run_score(args: argparse.Namespace, vae) -> None:
    rows = vae.score(file=args.file, iw_samples=args.iw_samples, seed=args.seed)
    out = Path(args.out)
    if out.suffix == ".csv":
        import csv

        with open(out, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"wrote {len(rows)} scored sentences to {out}")


def run_compare(args: argparse.Namespace) -> None:
    from .evaluation import compare_table

    results = {}
    for run_dir in args.run_dirs:
        path = Path(run_dir) / "results.json"
        if not path.is_file():
            raise TextVAEError(f"{run_dir} has no results.json; run: textvae evaluate {run_dir}")
        results[Path(run_dir).name] = json.loads(path.read_text(encoding="utf-8"))
    print(compare_table(results))


def run(args: argparse.Namespace) -> None:
    if args.command == "train":
        return run_train(args)
    if args.command == "compare":
        return run_compare(args)
    if args.command == "corpus":
        from .synthetic import write_corpus

        print(f"wrote {write_corpus(args.out_dir, seed=args.seed)}")
        return
    from .api import load

    vae = load(args.run_dir, device=args.device, precision=args.precision)
    if args.command == "sample":
        for line in vae.sample(args.n, args.strategy, args.temperature, args.max_length, args.seed):
            print(line)
    elif args.command == "reconstruct":
        for source, output in zip(args.sentences, vae.reconstruct(args.sentences, args.strategy, args.max_length,
                                                                  args.seed)):
            print(f"{source}\t->\t{output}")
    elif args.command == "interpolate":
        for step, line in enumerate(vae.interpolate(args.first, args.second, args.steps, args.max_length)):
            print(f"{step}\t{line}")
    elif args.command == "encode":
        import numpy as np

        from .data import check_text_file

        check_text_file(Path(args.file), "encode")
        lines = [line for line in Path(args.file).read_text(encoding="utf-8").splitlines() if line.strip()]
        vectors = vae.encode(lines, sample=args.sample)
        np.save(args.out, vectors)
        print(f"wrote {vectors.shape[0]} vectors of size {vectors.shape[1]} to {args.out}")
    elif args.command == "evaluate":
        run_evaluate(args, vae)
    elif args.command == "score":
        run_score(args, vae)
    elif args.command == "detect":
        report = vae.detect(args.inliers, args.outliers, iw_samples=args.iw_samples, seed=args.seed)
        print("| score | ROC-AUC | average precision |\n| --- | ---: | ---: |")
        for name, values in report.items():
            print(f"| {name} | {values['roc_auc']:.4f} | {values['average_precision']:.4f} |")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    quiet = getattr(args, "quiet", False) or os.environ.get("RANK", "0") != "0"  # torchrun: rank 0 speaks
    logging.getLogger("textvae").setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        run(args)
    except TextVAEError as error:
        print(f"textvae: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("textvae: interrupted; a training run continues with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

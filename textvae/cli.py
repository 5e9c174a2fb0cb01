"""The `textvae` command: one subcommand per use, each a thin layer over the Python API.

User mistakes (TextVAEError) are printed as one line starting with 'textvae: error:' and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

from .errors import TextVAEError, TrainingInterrupted


EMPTY_SENTENCE = "<empty>"  # how a decoded sentence with no words (an immediate <eos>) is printed


def shown(sentence: str) -> str:
    """A decoded sentence as printed: one line, EMPTY_SENTENCE for a sentence with no words, so that n
    sentences are always n lines that say something."""
    return sentence if sentence.strip() else EMPTY_SENTENCE


def add_run_dir(parser: argparse.ArgumentParser, precision: bool = False) -> None:
    """The run dir argument and --device (and --precision for the commands that score) of a subcommand."""
    parser.add_argument("run_dir", help="a run directory written by `textvae train`")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    if precision:  # only the commands that score sentences run under autocast
        parser.add_argument("--precision", default="auto",
                            help="auto | fp32 | bf16 | fp16: the precision of the scoring passes (default auto: bf16 "
                                 "where the hardware runs it natively, else fp32; fp16 needs a GPU)")


def build_parser() -> argparse.ArgumentParser:
    """The `textvae` argument parser: one subcommand per use, with its options and their defaults."""
    parser = argparse.ArgumentParser(prog="textvae", description="Sentence VAEs: train, sample, interpolate, "
                                     "reconstruct, encode and evaluate.")
    parser.add_argument("--version", action="version", version=f"textvae {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model and write a run dir")
    train.add_argument("--config", help="YAML config (default: the demo recipe on the embedded corpus, or the corpus "
                       "recipe, sized from the data, when --set data.source or data.train_file names your text)")
    train.add_argument("--out", help="run directory to write (default: runs/<config name>, or runs/<data folder "
                       "name> for a config that does not name its data)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config value, e.g. --set model.latent_size=32 (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-split log lines")
    train.add_argument("--tensorboard", action="store_true",
                       help="also log the metrics to RUN_DIR/tensorboard/ (needs: pip install tensorboard)")

    sample = commands.add_parser("sample", help="decode sentences from the prior")
    add_run_dir(sample)
    sample.add_argument("-n", type=int, default=10, help="how many sentences (default 10)")
    sample.add_argument("--prior", choices=("auto", "standard", "fitted"), default="auto",
                        help="where z comes from: N(0, I) (standard), the Gaussian fitted to the training codes "
                             "(fitted: runs trained with train.fit_sampling_prior), or auto (fitted when the run has it)")
    add_decoding(sample)

    reconstruct = commands.add_parser("reconstruct", help="encode sentences and decode them back")
    add_run_dir(reconstruct)
    reconstruct.add_argument("sentences", nargs="+", help="sentences to reconstruct")
    add_decoding(reconstruct)

    interpolate = commands.add_parser("interpolate", help="decode points between two sentences (homotopy)")
    add_run_dir(interpolate)
    interpolate.add_argument("first", nargs="?", help="first sentence (leave both out for two prior samples)")
    interpolate.add_argument("second", nargs="?", help="second sentence")
    interpolate.add_argument("--steps", type=int, default=7, help="points on the path, ends included (default 7)")
    interpolate.add_argument("--path", default="linear", help="linear | slerp (default linear)")
    interpolate.add_argument("--collapse", action="store_true",
                             help="print a run of equal consecutive sentences once, at its first step")
    add_decoding(interpolate)

    analogy = commands.add_parser("analogy", help="latent arithmetic: decode z_b - z_a + z_c")
    add_run_dir(analogy)
    analogy.add_argument("a", help="a, in 'a is to b as c is to ?'")
    analogy.add_argument("b")
    analogy.add_argument("c")
    add_decoding(analogy)

    traverse = commands.add_parser("traverse", help="decode a sweep of one latent dimension")
    add_run_dir(traverse)
    traverse.add_argument("sentence", nargs="?", help="start from its posterior mean (default: the prior mean 0)")
    traverse.add_argument("--dim", type=int, required=True, help="latent dimension to sweep, from 0")
    traverse.add_argument("--span", type=float, default=3.0, help="sweep from -span to +span (default 3)")
    traverse.add_argument("--steps", type=int, default=7, help="values in the sweep (default 7)")
    add_decoding(traverse)

    neighbourhood = commands.add_parser("neighbourhood", help="decode codes z + radius*eps around a sentence")
    add_run_dir(neighbourhood)
    neighbourhood.add_argument("sentence")
    neighbourhood.add_argument("-n", type=int, default=10, help="how many codes (default 10)")
    neighbourhood.add_argument("--radius", type=float, default=0.5, help="standard deviation of eps (default 0.5)")
    add_decoding(neighbourhood, seed=0)

    encode = commands.add_parser("encode", help="write posterior means of a file's lines to a .npy file")
    add_run_dir(encode)
    encode.add_argument("file", help="text file, one sentence per line (blank lines are skipped)")
    encode.add_argument("--out", required=True, help="where to write the (n, latent) array, e.g. vectors.npy "
                        "(.npy is added when missing; missing folders are created)")
    encode.add_argument("--sample", action="store_true", help="one posterior sample per sentence, not the mean")
    encode.add_argument("--seed", type=int, default=0, help="seed of the posterior samples (default 0)")

    near = commands.add_parser("nearest", help="the sentences of a file closest to a query in latent space")
    add_run_dir(near)
    near.add_argument("--query", action="append", required=True, help="query sentence (repeatable)")
    near.add_argument("--corpus", required=True, help="text file, one sentence per line, to search")
    near.add_argument("-k", type=int, default=5, help="how many neighbours (default 5)")
    near.add_argument("--metric", default="cosine", help="cosine | euclidean (default cosine)")

    evaluate = commands.add_parser("evaluate", help="IW-NLL, PPL, -ELBO, KL, MI, AU, BLEU of a split; writes results.json")
    add_run_dir(evaluate, precision=True)
    evaluate.add_argument("--split", default="test", help="train | valid (or dev) | test (default test)")
    evaluate.add_argument("--file", help="score this text file instead of a split of the run's corpus "
                          "(results.json keeps each split's and each file's results apart)")
    evaluate.add_argument("--iw-samples", type=int, default=500,
                          help="importance samples per sentence for the NLL (default 500, the papers' protocol; "
                               "0 = report the ELBO bound)")
    evaluate.add_argument("--samples", type=int, default=500, help="prior samples for distinct-n/self-BLEU (0 = skip)")
    evaluate.add_argument("--no-bleu", action="store_true", help="skip reconstruction BLEU")
    evaluate.add_argument("--beam-size", type=int, default=1,
                          help="reconstructions for BLEU and exact_match by beam search with this many hypotheses "
                               "(default 1: greedy, the papers' protocol)")
    evaluate.add_argument("--no-unigram", action="store_true",
                          help="skip unigram_nll (with --samples 0 too, the train split is not read at all)")
    evaluate.add_argument("--batch-size", type=int, default=128,
                          help="sentences scored at once (default 128); lower it if memory runs out")
    evaluate.add_argument("--seed", type=int, default=0,
                          help="seeds the posterior and importance samples and the prior samples (default 0)")
    evaluate.add_argument("--mi-draws", type=int, default=1,
                          help="draws of z for the MI estimate: more report their mean and sd (mi_sd); default 1")

    score = commands.add_parser("score", help="per-sentence -ELBO, IW-NLL and NLL per token of a file's lines")
    add_run_dir(score, precision=True)
    score.add_argument("file", help="text file, one sentence per line (blank lines are skipped)")
    score.add_argument("--out", required=True, help="scores.jsonl or scores.csv (by extension; missing folders are created)")
    score.add_argument("--iw-samples", type=int, default=100, help="importance samples per sentence (default 100)")
    score.add_argument("--seed", type=int, default=0)

    detect = commands.add_parser("detect", help="ROC-AUC and average precision of the scores on inliers vs outliers")
    add_run_dir(detect, precision=True)
    detect.add_argument("--inliers", required=True, help="text file of normal sentences")
    detect.add_argument("--outliers", required=True, help="text file of anomalous sentences")
    detect.add_argument("--iw-samples", type=int, default=100)
    detect.add_argument("--seed", type=int, default=0)

    compare = commands.add_parser("compare", help="Markdown table of the results.json of several runs")
    compare.add_argument("run_dirs", nargs="+", help="run dirs that `textvae evaluate` has scored")
    compare.add_argument("--on", metavar="SPLIT_OR_FILE",
                         help="only the evaluations of this split (test, valid, ...) or text file (default: all)")

    plot = commands.add_parser("plot", help="PNGs of the training curves and of the latent space (PCA)")
    plot.add_argument("run_dir", help="a run directory written by `textvae train`")
    plot.add_argument("--out", help="folder for curves.png and latent.png (default: the run dir)")
    plot.add_argument("--split", default="valid", help="split whose posterior means are mapped (default valid; dev = valid)")
    plot.add_argument("--label", help="label column to colour the map by, or 'length' (tokens per sentence); "
                      "default: the corpus's first label column, else length")
    plot.add_argument("--labels", metavar="FILE", help="colour the map by this file's lines: one label per line "
                      "of the split's text file, in order")
    plot.add_argument("--limit", type=int, default=2000, help="most sentences on the map (default 2000)")

    corpus = commands.add_parser("corpus", help="write the embedded synthetic corpus to a folder")
    corpus.add_argument("out_dir")
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--train-size", type=int, default=None,
                        help="sentences in train.txt (default 6,000; the demo recipe trains on 160,000: "
                             "data.synthetic_train_size)")
    parser.set_defaults(commands=commands.choices)  # each subcommand's parser, by name (scripts/ rename theirs)
    return parser


def add_decoding(parser: argparse.ArgumentParser, seed: int | None = None) -> None:
    """The decoding options every generating subcommand shares (they become `DecodingOptions`)."""
    parser.add_argument("--strategy", default="greedy", help="greedy | sample | top-k | top-p | beam (default greedy)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="divides the logits of sample, top-k and top-p (default 1.0; 0 = greedy)")
    parser.add_argument("--top-k", type=int, default=10, help="tokens kept by --strategy top-k (default 10)")
    parser.add_argument("--top-p", type=float, default=0.9,
                        help="probability mass kept by --strategy top-p (default 0.9)")
    parser.add_argument("--beam-size", type=int, default=5,
                        help="hypotheses per sentence for --strategy beam (default 5)")
    parser.add_argument("--length-penalty", type=float, default=1.0,
                        help="beam scores are log p / length**this (default 1.0; 0 = plain log p)")
    parser.add_argument("--max-length", type=int, default=50, help="most tokens per sentence (default 50)")
    parser.add_argument("--ban-unk", action="store_true", help="never emit <unk>")
    parser.add_argument("--seed", type=int, default=seed, help="makes sampling reproducible")


def version() -> str:
    """The installed package's version (the source tree's when it is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("textvae")
    except PackageNotFoundError:
        from . import __version__

        return __version__


def output_path(out: str, suffix: str | None = None) -> Path:
    """The file an --out names (with `suffix` added when it lacks it, as numpy.save does), its folder created;
    a folder that cannot be created is one line."""
    path = Path(out)
    if suffix and path.suffix != suffix:
        path = path.with_name(path.name + suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TextVAEError(f"--out {out}: cannot create the folder {path.parent} ({error.strerror}); choose "
                           "another --out") from None
    if path.is_dir():
        raise TextVAEError(f"--out {out} is a folder; give a file name, e.g. {path / ('out' + (suffix or '.jsonl'))}")
    return path


def write_output(path: Path, write) -> None:
    """Call write(path), turning an OS failure (no permission, full disk) into one line."""
    try:
        write(path)
    except OSError as error:
        raise TextVAEError(f"could not write {path} ({error.strerror or error}); choose another --out") from None


def decoding(args: argparse.Namespace) -> dict:
    """The decoding options of a parsed command line, as keyword arguments of the API."""
    return dict(strategy=args.strategy, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                beam_size=args.beam_size, length_penalty=args.length_penalty, max_length=args.max_length,
                ban_unk=args.ban_unk, seed=args.seed)


def data_source_name(data) -> str:
    """A run name from where the data comes from: the folder's name (data.source, a hub dataset's name), or
    the train file's name (its folder's name when the file is just train.txt)."""
    if data.source:
        return Path(str(data.source).rstrip("/\\")).name or "corpus"
    train_file = Path(data.train_file)
    return train_file.parent.resolve().name if train_file.stem == "train" else train_file.stem


def names_data(config_file: str | Path) -> bool:
    """True if a config file sets data.source or data.train_file itself (configs/ptb.yaml does, the demo and
    corpus recipes do not)."""
    from .config import read_yaml

    data = read_yaml(config_file).get("data") or {}
    return isinstance(data, dict) and bool(data.get("source") or data.get("train_file"))


def chosen_recipe(args: argparse.Namespace):
    """The config of a new run and its default run dir. With no --config: the demo recipe on the embedded
    corpus, or, when --set names a data source, the corpus recipe (sized from the data: recipes/corpus.yaml).
    The default run dir is runs/<config name> for a config that names its data, else runs/<data name>."""
    from .config import CORPUS_RECIPE, DEMO_RECIPE, load_config

    config = load_config(args.config or DEMO_RECIPE, args.overrides)
    own_data = config.data.source is not None or config.data.train_file is not None
    if args.config is None and own_data:
        config = load_config(CORPUS_RECIPE, args.overrides)
        logging.getLogger("textvae").info(f"no --config: training on {data_source_name(config.data)} with the corpus "
                                          f"recipe ({CORPUS_RECIPE.name}, as configs/corpus.yaml)")
    if args.config and names_data(args.config):
        name = Path(args.config).stem
    elif own_data:
        name = data_source_name(config.data)
    else:
        name = Path(args.config).stem if args.config else "synthetic"  # the demo recipe's run
    return config, Path(args.out or Path("runs") / name)


def run_train(args: argparse.Namespace) -> None:
    """`textvae train`: a new run from its recipe, or --resume from the run dir's own config; prints the summary."""
    from .config import resumed_config
    from .training.checkpoint import prepare_out_dir
    from .training import train

    if args.resume and not args.out:
        raise TextVAEError("--resume needs --out RUN_DIR, the run to continue")
    if args.resume:
        out = Path(args.out)
        prepare_out_dir(out, resume=True)  # no checkpoint: say so before reading its train_config.yaml
        config = resumed_config(out, args.overrides)
    else:
        config, out = chosen_recipe(args)
    if args.quiet:
        config.train.progress_bar = False
    if args.tensorboard:
        config.train.tensorboard = True
    summary = train(config, out, resume=args.resume)
    best = summary["best_valid"]
    print(f"run dir: {out}")
    if summary.get("already_finished"):
        reason = summary["already_finished"]
        key = re.search(r"train\.\w+", reason)
        print(f"nothing to train: the run has finished ({reason}); to train on, raise the limit: textvae train "
              f"--out {out} --resume --set {key.group(0) if key else 'train.max_epochs'}=...")
    steps, precision = summary["steps"], f" in {summary['precision']}" if summary.get("precision") else ""
    print(f"trained {steps} step{'' if steps == 1 else 's'}{precision}; best valid at step {best['step']}: -ELBO {best['loss']:.3f} "
          f"= rec {best['rec']:.3f} + KL {best['kl']:.3f} nats/sentence, PPL bound {best['ppl_bound']:.2f}")


def run_evaluate(args: argparse.Namespace, vae) -> None:
    """`textvae evaluate`: the pipeline's corpus scores, printed and added to the run dir's results.json."""
    from .runtime import describe_precision

    print(f"evaluating in {describe_precision(args.precision, vae.dtype)}", file=sys.stderr)
    results = vae.evaluate(split=args.split, file=args.file, iw_samples=args.iw_samples, batch_size=args.batch_size,
                           seed=args.seed, bleu=not args.no_bleu, samples=args.samples, mi_draws=args.mi_draws,
                           unigram=not args.no_unigram, beam_size=args.beam_size)
    rows = [(key, value) for key, value in results.items() if key != "kl_per_dim"]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    from .evaluation.reports import save_results

    target = save_results(Path(vae.run_dir), results)
    print(f"(written to {target}, under \"{results['split']}\")")


def run_score(args: argparse.Namespace, vae) -> None:
    """`textvae score`: per-sentence scores of a file, written as JSON lines or CSV by the --out extension."""
    out = output_path(args.out)  # before the scoring: a bad --out fails at once
    rows = vae.score(file=args.file, iw_samples=args.iw_samples, seed=args.seed)

    def write(path: Path) -> None:
        if path.suffix == ".csv":
            import csv

            with open(path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    write_output(out, write)
    print(f"wrote {len(rows)} scored sentences to {out}")


def run_compare(args: argparse.Namespace) -> None:
    """`textvae compare`: the Markdown table of several runs' results.json."""
    from .evaluation.reports import compare_runs

    print(compare_runs(args.run_dirs, args.on))


GENERATION_COMMANDS = ("sample", "reconstruct", "interpolate", "analogy", "traverse", "neighbourhood")


def run_generation(args: argparse.Namespace, vae) -> None:
    """The commands that decode latent codes, each printing one sentence a line (with its step or value)."""
    options = decoding(args)
    if args.command == "sample":
        for line in vae.iter_sample(args.n, prior=args.prior, **options):  # printed as decoded: any -n in bounded memory
            print(shown(line))
    elif args.command == "reconstruct":
        for fidelity in vae.fidelity(args.sentences, **options):
            print(f"{fidelity.text}\t->\t{shown(fidelity.reconstruction)}\t{fidelity.summary}")
    elif args.command == "interpolate":
        if args.first is not None and args.second is None:
            raise TextVAEError("interpolate: give two sentences, or none for two prior samples")
        path = vae.interpolate(args.first, args.second, args.steps, args.path, **options)
        for step, line, note in interpolation_rows(path, args.collapse):
            print(f"{step}\t{shown(line)}" + (f"\t{note}" if note else ""))
    elif args.command == "analogy":
        print(shown(vae.analogy(args.a, args.b, args.c, **options)))
    elif args.command == "traverse":
        from .generation.latent_space import traversal_values

        lines = vae.traverse(args.sentence, args.dim, args.span, args.steps, **options)
        for value, line in zip(traversal_values(args.span, args.steps).tolist(), lines):
            print(f"{value:+.2f}\t{shown(line)}")
    elif args.command == "neighbourhood":
        for line in vae.iter_neighbourhood(args.sentence, args.n, args.radius, **options):
            print(shown(line))


def interpolation_rows(path, collapse: bool) -> list[tuple[int, str, str]]:
    """(step, sentence, note) for each printed step of an interpolation; the first and last rows' notes say how
    faithfully they reconstruct the two sentences asked for ('first: exact', 'second: differs, BLEU 41.2'),
    so the output shows at once whether the path joins those sentences or only the model's versions of them."""
    from .generation.latent_space import collapse_repeats

    rows = [[step, line, ""] for step, line in (collapse_repeats(path) if collapse else enumerate(path))]
    if path.ends is not None:
        first, second = path.ends
        rows[0][2] = f"first: {first.summary}"
        rows[-1][2] = "; ".join(part for part in (rows[-1][2], f"second: {second.summary}") if part)
    return [tuple(row) for row in rows]


def run(args: argparse.Namespace) -> None:
    """Dispatch a parsed command line to its subcommand (the pipeline for everything but train, compare, plot, corpus)."""
    if args.command == "train":
        return run_train(args)
    if args.command == "compare":
        return run_compare(args)
    if args.command == "plot":
        from .plotting import plot_run

        report = plot_run(args.run_dir, args.out, args.split, args.label, args.limit, args.labels)
        print("wrote " + ", ".join(str(path) for path in report["files"]))
        return
    if args.command == "corpus":
        from .data.synthetic import DEFAULT_SPLIT_SIZES, write_corpus

        if args.train_size is not None and args.train_size < 1:
            raise TextVAEError(f"--train-size {args.train_size}: give a positive number of sentences")
        sizes = None if args.train_size is None else {**DEFAULT_SPLIT_SIZES, "train": args.train_size}
        print(f"wrote {write_corpus(args.out_dir, seed=args.seed, sizes=sizes)}")
        return
    from .pipeline import load

    vae = load(args.run_dir, device=args.device, precision=getattr(args, "precision", "auto"))
    vae.progress = sys.stderr.isatty()  # bars with ETA for long IW-NLL runs, not in logs or pipes
    if args.command in GENERATION_COMMANDS:
        run_generation(args, vae)
    elif args.command == "encode":
        import numpy as np

        from .pipeline import read_lines

        out = output_path(args.out, ".npy")  # numpy.save adds .npy: name the file it writes
        lines = read_lines(args.file, "encode")
        vectors = vae.encode(lines, sample=args.sample, seed=args.seed)
        write_output(out, lambda path: np.save(path, vectors))
        print(f"wrote {vectors.shape[0]} vectors of size {vectors.shape[1]} to {out}")
    elif args.command == "nearest":
        for query in args.query:
            found = vae.nearest(query, file=args.corpus, k=args.k, metric=args.metric, line_numbers=True)
            print(f"query: {query}")
            for rank, (number, sentence, score) in enumerate(found, 1):
                print(f"{rank}\t{score:.4f}\tline {number}\t{sentence}")
    elif args.command == "evaluate":
        run_evaluate(args, vae)
    elif args.command == "score":
        run_score(args, vae)
    elif args.command == "detect":
        report = vae.detect(args.inliers, args.outliers, iw_samples=args.iw_samples, seed=args.seed)
        print("| score | ROC-AUC | average precision |\n| --- | ---: | ---: |")
        for name, values in report.items():
            print(f"| {name} | {values['roc_auc']:.4f} | {values['average_precision']:.4f} |")


def main(argv: list[str] | None = None, script: str | None = None) -> int:
    """Run `textvae ARGV`; exit status 0, 2 for a mistake (one line on stderr), 128 + N after signal N.
    `script` (scripts/*.py) names the program in usage and error lines: argv then starts with its command."""
    parser = build_parser()
    program = "textvae"
    if script is not None:
        program = parser.get_default("commands")[argv[0]].prog = script
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    quiet = getattr(args, "quiet", False) or os.environ.get("RANK", "0") != "0"  # torchrun: rank 0 speaks
    logging.getLogger("textvae").setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        run(args)
    except TextVAEError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, TrainingInterrupted):
            print(f"{program}: interrupted by {interrupt}", file=sys.stderr)
            return interrupt.exit_code
        print(f"\n{program}: interrupted; a training run continues from its last checkpoint with --resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`textvae plot`: PNGs of a run's training curves and of its latent space, for diagnosing collapse.

curves.png: −ELBO (train and valid, with the train lines' β-weighted objective beside them),
reconstruction, KL with the KL weight, and MI / active units at each validation — the curves that show posterior collapse (KL and MI falling to 0). latent.png:
the posterior means of a split projected on their first two principal components, coloured by a
label column when the corpus has one (the synthetic corpus's topic, tense, number, sentiment), by a file
of labels, or else by sentence length, which any corpus has and which a sentence VAE's code always keeps.
Each function returns the numbers it drew, so they can be checked without reading pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TextVAEError

CURVE_KEYS = ("loss", "objective", "rec", "kl", "kl_weight", "grad_norm", "mi", "au")


def read_train_line(record: dict[str, Any]) -> dict[str, Any]:
    """A train line of metrics.jsonl as textvae writes it now. Lines written before `objective` existed
    logged one batch's training objective as `loss`: that becomes `objective`, and `loss` the batch's −ELBO
    (its rec + KL), so both panels mean the same thing for old and new runs."""
    if record.get("split") != "train" or "objective" in record or "loss" not in record:
        return record
    record = dict(record, objective=record["loss"])
    if "rec" in record and "kl" in record:
        record["loss"] = record["rec"] + record["kl"]
    else:
        del record["loss"]
    return record


def read_curves(run_dir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Per split ('train', 'valid'), per key of CURVE_KEYS: the (step, value) points in metrics.jsonl
    (old train lines read by `read_train_line`)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise TextVAEError(f"run dir {run_dir} has no metrics.jsonl; plot a run dir written by `textvae train`")
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {"train": {}, "valid": {}}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = read_train_line(json.loads(line))
        for key in CURVE_KEYS:
            if key in record and record.get("split") in curves:
                curves[record["split"]].setdefault(key, []).append((record["step"], float(record[key])))
    return curves


def principal_components(points: np.ndarray, count: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """`points` projected on their first `count` principal components, and each component's variance share."""
    centred = points - points.mean(axis=0)
    _, singular_values, directions = np.linalg.svd(centred, full_matrices=False)
    variance = singular_values ** 2
    return centred @ directions[:count].T, variance[:count] / variance.sum()


def pyplot():
    """matplotlib's pyplot on a file-only backend, or a one-line error saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TextVAEError("textvae plot needs matplotlib: pip install 'textvae[plot]' (or matplotlib)") from None
    return plt


def plot_curves(curves: dict, target: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = ((axes[0, 0], "loss", "−ELBO (nats/sentence)"), (axes[0, 1], "rec", "reconstruction (nats)"),
              (axes[1, 0], "kl", "KL (nats)"), (axes[1, 1], "mi", "mutual information (nats)"))
    for axis, key, title in panels:
        for split, style in (("train", "-"), ("valid", "o-")):
            points = curves[split].get(key, [])
            if points:
                axis.plot(*zip(*points), style, label=split, markersize=3)
        if not any(curves[split].get(key) for split in curves):
            axis.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=axis.transAxes)
        axis.set_title(title)
        axis.set_xlabel("step")
    weight = curves["train"].get("kl_weight", [])
    if weight:
        twin = axes[1, 0].twinx()
        twin.plot(*zip(*weight), "--", color="grey", label="KL weight")
        twin.set_ylabel("KL weight β")
    units = curves["valid"].get("au", [])
    if units:
        twin = axes[1, 1].twinx()
        twin.plot(*zip(*units), "s:", color="tab:red", label="active units", markersize=3)
        twin.set_ylabel("active units")
    objective = curves["train"].get("objective", [])
    if objective:  # what the optimizer minimised (β-weighted KL, free bits): below the −ELBO while β < 1
        axes[0, 0].plot(*zip(*objective), ":", color="grey", label="train objective")
    for axis in axes.flat:
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)


LENGTH = "length"  # --label length: colour by sentence length in tokens (the default for a corpus without labels)
CONTINUOUS_ABOVE = 12  # numeric labels with more distinct values than this get a colour scale, not a legend


def plot_latent(projected: np.ndarray, labels: list | None, label_name: str | None, shares: np.ndarray,
                target: Path) -> None:
    """The 2-D map of posterior means: numbers with many values (sentence length) on a colour scale, other
    labels as one colour each with a legend."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 6))
    if labels is None:
        axis.scatter(projected[:, 0], projected[:, 1], s=4, alpha=0.6)
    elif is_continuous(labels):
        points = axis.scatter(projected[:, 0], projected[:, 1], s=4, alpha=0.7, c=[float(v) for v in labels],
                              cmap="viridis")
        figure.colorbar(points, ax=axis, label=label_name)
    else:
        for value in sorted(set(labels), key=str):
            rows = [i for i, label in enumerate(labels) if label == value]
            axis.scatter(projected[rows, 0], projected[rows, 1], s=4, alpha=0.6, label=str(value))
        axis.legend(title=label_name, fontsize=8, markerscale=3)
    axis.set_xlabel(f"PC 1 ({shares[0]:.0%} of variance)")
    axis.set_ylabel(f"PC 2 ({shares[1]:.0%} of variance)" if len(shares) > 1 else "PC 2")
    axis.set_title("posterior means" + (f", coloured by {label_name}" if label_name else ""))
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)


def is_continuous(labels: list) -> bool:
    """True for labels that are all numbers with more than CONTINUOUS_ABOVE distinct values."""
    try:
        values = {float(label) for label in labels}
    except (TypeError, ValueError):
        return False
    return len(values) > CONTINUOUS_ABOVE


def read_label_file(path: str | Path, lines: int, split: str) -> list[str]:
    """One label per line of `path`, for the `lines` lines of the split's text file (blank lines included,
    so line i labels line i); one clear line if the counts differ."""
    from .data import check_text_file

    check_text_file(Path(path), "--labels")
    labels = [label.strip() for label in Path(path).read_text(encoding="utf-8").splitlines()]
    if len(labels) != lines:
        raise TextVAEError(f"--labels {path}: {len(labels)} lines, but split '{split}' has {lines}; give one label "
                           "per line of the split's text file, in the same order")
    return labels


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None, split: str = "valid",
             label: str | None = None, limit: int = 2000, label_file: str | Path | None = None) -> dict[str, Any]:
    """Write curves.png (and latent.png for a VAE) into `out_dir` (default: the run dir); returns the
    paths and the numbers drawn: the curves, the 2-D projection, its labels and variance shares.
    The map is coloured by `label` (a label column of the corpus, or 'length': tokens per sentence), by
    `label_file` (one label per line of the split's text file), or by default by the corpus's first label
    column, and by sentence length for a corpus without labels."""
    from .pipeline import load

    run_dir = Path(run_dir)
    target = Path(out_dir) if out_dir else run_dir
    target.mkdir(parents=True, exist_ok=True)
    curves = read_curves(run_dir)
    plot_curves(curves, target / "curves.png")
    report: dict[str, Any] = {"curves": curves, "files": [target / "curves.png"]}
    vae = load(run_dir)
    if not vae.model.config.has_latent:
        return report
    if label is not None and label_file is not None:
        raise TextVAEError("plot: give --label or --labels, not both")
    extra = None
    if label_file is not None:
        extra = read_label_file(label_file, vae.split_lines(split), split)
    sentences = vae.corpus_split(split, extra_labels={"labels": extra} if extra is not None else None)
    texts = sentences.texts[:limit]
    if len(texts) < 3:
        raise TextVAEError(f"split '{split}' has {len(texts)} sentences; the latent map needs at least 3")
    columns = {name: values for name, values in sentences.labels.items()}
    columns[LENGTH] = [len(ids) for ids in sentences.token_ids]
    if label is not None and label not in columns:
        known = ", ".join(columns)
        raise TextVAEError(f"--label {label}: the corpus has no such column (label columns: {known}); or give a "
                           "file of labels with --labels FILE")
    if label_file is not None:
        label = "labels"
    label = label or next(iter(sentences.labels), LENGTH)
    labels = columns[label][:limit]
    name = "length (tokens)" if label == LENGTH else (Path(label_file).name if label_file is not None else label)
    projected, shares = principal_components(vae.encode(texts))
    plot_latent(projected, labels, name, shares, target / "latent.png")
    report.update(projection=projected, labels=labels, label=label, variance_shares=shares)
    report["files"].append(target / "latent.png")
    return report

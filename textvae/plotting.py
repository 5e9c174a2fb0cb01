"""`textvae plot`: PNGs of a run's training curves and of its latent space, for diagnosing collapse.

curves.png: −ELBO (train and valid, with the train lines' β-weighted objective beside them),
reconstruction, KL with the KL weight, and MI / active units at each validation — the curves that show posterior collapse (KL and MI falling to 0). latent.png:
the posterior means of a split projected on their first two principal components, coloured by a
label column when the corpus has one (the synthetic corpus's topic, tense, number, sentiment).
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


def plot_latent(projected: np.ndarray, labels: list | None, label_name: str | None, shares: np.ndarray,
                target: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 6))
    if labels is None:
        axis.scatter(projected[:, 0], projected[:, 1], s=4, alpha=0.6)
    else:
        for value in sorted(set(labels), key=str):
            rows = [i for i, label in enumerate(labels) if label == value]
            axis.scatter(projected[rows, 0], projected[rows, 1], s=4, alpha=0.6, label=str(value))
        axis.legend(title=label_name, fontsize=8, markerscale=3)
    axis.set_xlabel(f"PC 1 ({shares[0]:.0%} of variance)")
    axis.set_ylabel(f"PC 2 ({shares[1]:.0%} of variance)" if len(shares) > 1 else "PC 2")
    axis.set_title("posterior means")
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None, split: str = "valid",
             label: str | None = None, limit: int = 2000) -> dict[str, Any]:
    """Write curves.png (and latent.png for a VAE) into `out_dir` (default: the run dir); returns the
    paths and the numbers drawn: the curves, the 2-D projection, its labels and variance shares."""
    from .api import load

    run_dir = Path(run_dir)
    target = Path(out_dir) if out_dir else run_dir
    target.mkdir(parents=True, exist_ok=True)
    curves = read_curves(run_dir)
    plot_curves(curves, target / "curves.png")
    report: dict[str, Any] = {"curves": curves, "files": [target / "curves.png"]}
    vae = load(run_dir)
    if not vae.model.config.has_latent:
        return report
    sentences = vae.corpus_split(split)
    texts = sentences.texts[:limit]
    if len(texts) < 3:
        raise TextVAEError(f"split '{split}' has {len(texts)} sentences; the latent map needs at least 3")
    if label is not None and label not in sentences.labels:
        known = ", ".join(sentences.labels) or "none"
        raise TextVAEError(f"--label {label}: the corpus has no such column (label columns: {known})")
    label = label or next(iter(sentences.labels), None)
    labels = sentences.labels[label][:limit] if label else None
    projected, shares = principal_components(vae.encode(texts))
    plot_latent(projected, labels, label, shares, target / "latent.png")
    report.update(projection=projected, labels=labels, label=label, variance_shares=shares)
    report["files"].append(target / "latent.png")
    return report

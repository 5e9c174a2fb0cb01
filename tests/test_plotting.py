"""`textvae plot`: valid PNGs whose data are the run's logged curves and a PCA map of posterior means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import read_metrics

from textvae.cli import main
from textvae.plotting import plot_run, principal_components
from textvae.data.synthetic import FACTORS

pytest.importorskip("matplotlib")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_writes_pngs_of_the_logged_curves_and_the_latent_map(tiny_run: Path, tmp_path: Path) -> None:
    report = plot_run(tiny_run, tmp_path, split="valid", label="topic", limit=300)
    for path in report["files"]:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    logged = read_metrics(tiny_run)
    for split in ("train", "valid"):
        for key in ("loss", "kl"):
            expected = [(r["step"], r[key]) for r in logged if r["split"] == split]
            assert report["curves"][split][key] == expected and expected
    assert [step for step, _ in report["curves"]["valid"]["au"]] == [6, 12]  # AU logged at each validation
    assert report["projection"].shape == (300, 2) and len(report["labels"]) == 300
    assert set(report["labels"]) == set(FACTORS["topic"])  # coloured by the synthetic topic of each sentence
    assert report["variance_shares"][0] >= report["variance_shares"][1] > 0


def test_principal_components_find_the_direction_of_largest_spread() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3)) * np.array([5.0, 1.0, 0.1])
    projected, shares = principal_components(points)
    assert shares[0] > 0.9 and abs(np.corrcoef(projected[:, 0], points[:, 0])[0, 1]) > 0.99


def test_plot_cli_and_its_errors(tiny_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["plot", str(tiny_run), "--out", str(tmp_path), "--limit", "50"]) == 0
    assert (tmp_path / "curves.png").exists() and (tmp_path / "latent.png").exists()
    assert main(["plot", str(tiny_run), "--out", str(tmp_path), "--label", "colour"]) == 2
    assert "--label colour: the corpus has no such column (label columns: topic" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err

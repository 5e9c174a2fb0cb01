"""benchmarks/rate_distortion.py on a tiny corpus: the LM and two rates train a few steps each, the table and plot
are written from the points' own test results, the lever reaches the config, finished points are skipped and a
stopped one resumes from its checkpoint."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark, read_metrics

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the a cat dog bird sat ran flew on under mat tree big small red blue and saw it".split()


def load_script():
    return load_benchmark("rate_distortion")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The LM and rates 2 and 6 (free bits 0.5 and 1.5 per dimension of 4), 3 steps each."""
    tmp = tmp_path_factory.mktemp("rate_distortion")
    rng = random.Random(0)
    corpus = tmp / "corpus"
    corpus.mkdir()
    for name, count in (("train", 100), ("valid", 16), ("test", 12)):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) for _ in range(count)]
        (corpus / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp / "tiny.yaml"
    config.write_text(f"""\
data: {{source: {corpus}, max_length: 20}}
tokenizer: {{vocab_size: 100}}
model: {{embedding_size: 8, encoder_hidden_size: 8, decoder_hidden_size: 8, latent_size: 4}}
train: {{batch_size: 16, eval_batch_size: 32, log_every: 1, num_threads: 1, precision: fp32}}
""", encoding="utf-8")
    script = load_script()
    common = ["--config", str(config), "--rates", "2,6", "--runs-dir", str(tmp / "runs"), "--table",
              str(tmp / "out" / "frontier.md"), "--records", str(tmp / "records"), "--iw-samples", "3",
              "--samples", "8", "--test-limit", "10", "--device", "cpu", "--quiet", "--max-steps", "3"]
    assert script.main(common) == 0
    return script, tmp, common


def test_each_point_trains_with_its_lever_and_the_table_holds_its_test_results(sweep):
    script, tmp, _ = sweep
    runs = tmp / "runs"
    assert sorted(path.name for path in runs.iterdir()) == ["lm", "rate_2", "rate_6"]
    for name, free_bits in (("rate_2", 0.5), ("rate_6", 1.5)):
        settings = (runs / name / "train_config.yaml").read_text()
        assert f"free_bits: {free_bits}" in settings and "target_rate: 0.0" in settings
    assert "model_variant: lm" in (runs / "lm" / "train_config.yaml").read_text()
    table = (tmp / "out" / "frontier.md").read_text()
    for name in ("lm", "rate_2", "rate_6"):
        results = json.loads((runs / name / script.RESULTS).read_text())
        record = json.loads((tmp / "records" / f"{name}.json").read_text())
        assert record["results"] == results and results["sentences"] == 10 and results["iw_samples"] == (
            0 if name == "lm" else 3)
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"| {results['ppl']:.2f} |" in row and f"| {results['distinct_1']:.3f} |" in row
        if name != "lm":
            assert f"| {results['kl']:.2f} |" in row and f"| {results['reconstruction_bleu']:.2f} |" in row
            assert 0 <= results["exact_percent"] <= 100
    assert (tmp / "out" / "frontier.png").stat().st_size > 0 or pytest.importorskip("matplotlib") is None
    assert "--rates 2,6" in table


def test_reconstruction_scores_are_the_share_of_exact_decodes_and_their_bleu(sweep):
    script, tmp, _ = sweep
    import textvae

    vae = textvae.load(tmp / "runs" / "rate_6", precision="fp32")
    references = (tmp / "corpus" / "test.txt").read_text().splitlines()
    assert script.test_sentences(vae) == references and script.test_sentences(vae, 5) == references[:5]
    decodes = vae.reconstruct(references)
    scores = script.reconstruction_scores(vae, references)
    exact = sum(a == b for a, b in zip(decodes, references))
    assert scores["exact_percent"] == pytest.approx(100 * exact / len(references))
    from sacrebleu.metrics import BLEU
    assert scores["reconstruction_bleu"] == pytest.approx(
        BLEU(tokenize="none").corpus_score(decodes, [references]).score)


def test_target_rate_lever_sets_the_constraint(tmp_path):
    script = load_script()
    args = script.parse_args(["--lever", "target_rate", "--rates", "5,40"])
    overrides = script.point_overrides(args)
    assert list(overrides) == ["lm", "rate_5", "rate_40"]
    assert overrides["rate_40"] == ["train.target_rate=40", "train.free_bits=0"]
    ptb = script.parse_args(["--corpus", "ptb"])
    assert ptb.config == "configs/ptb.yaml" and ptb.iw_samples == 500
    assert script.point_overrides(ptb)["lm"] == script.ROWS["lm"][1]  # the PTB table's LM schedule
    assert script.point_overrides(ptb)["rate_80"][0] == "train.free_bits=2.5"  # 80 nats over 32 dimensions


def test_finished_points_are_skipped_and_a_stopped_one_resumes(sweep):
    script, tmp, common = sweep
    lm = tmp / "runs" / "lm"
    before = (lm / "model.safetensors").stat().st_mtime_ns
    stopped = tmp / "runs" / "rate_6"
    (stopped / "ptb_table_train.json").unlink()  # as if its training had been killed after its checkpoint
    steps_before = torch.load(stopped / "checkpoint.pt", weights_only=True)["state"]["step"]
    assert script.main([*common[:-1], "5", "--points", "lm,rate_6"]) == 0
    assert (lm / "model.safetensors").stat().st_mtime_ns == before
    assert torch.load(stopped / "checkpoint.pt", weights_only=True)["state"]["step"] == 5 > steps_before
    steps = [line["step"] for line in read_metrics(stopped) if line["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 5  # continued, not started again
    assert json.loads((stopped / script.RESULTS).read_text())["trained_steps"] == 5


def test_points_can_start_from_the_ptb_tables_autoencoder_and_language_model(sweep, tmp_path, capsys):
    """--start-from: each VAE point starts from the table's `ae` encoder and `lm` decoder at LR 0.25, and the lm
    point is that language model, copied with the facts of the run that trained it, not trained again."""
    script, tmp, common = sweep
    table = load_benchmark("ptb_table")
    start = tmp_path / "table_runs"
    config = common[common.index("--config") + 1]
    assert table.main(["--config", config, "--rows", "ae,lm,warm_start", "--max-steps", "3", "--runs-dir", str(start),
                       "--records", str(tmp_path / "table_records"), "--table", str(tmp_path / "table.md"),
                       "--iw-samples", "2", "--device", "cpu", "--quiet"]) == 0
    runs = tmp_path / "runs"
    options = [*common, "--start-from", str(start), "--runs-dir", str(runs), "--records", str(tmp_path / "records"),
               "--table", str(tmp_path / "frontier.md"), "--rates", "6", "--points", "lm,rate_6"]
    assert script.main(options) == 0
    from textvae.config import load_config
    point = load_config(runs / "rate_6" / "train_config.yaml").train
    assert (point.init_from, point.decoder_from) == (str(start / "ae_encoder"), str(start / "lm_decoder"))
    assert point.lr == 0.25 and point.free_bits == 1.5 and point.reset_decoder
    lm_facts = json.loads((start / "lm" / table.TRAINED).read_text())
    copied = json.loads((runs / "lm" / script.TRAINED).read_text())
    assert copied == {**lm_facts, "copied_from": str(start / "lm_decoder")}
    assert not (runs / "lm" / "checkpoint.pt").exists()  # taken, not trained
    import textvae
    ours, theirs = textvae.load(runs / "lm").model.state_dict(), textvae.load(start / "lm").model.state_dict()
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
    assert f"copied from `{start}/lm_decoder`" in (tmp_path / "frontier.md").read_text()
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(SystemExit):
        script.parse_args(["--start-from", str(empty)])
    assert f"--start-from {empty}: no trained model in ae_encoder, lm_decoder; train the PTB table's rows first" \
        in capsys.readouterr().err

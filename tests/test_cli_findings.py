"""What a new user's trial of the CLI found (issue 23): bounded memory for huge counts, one line per sentence,
one-line errors for bad --out folders and for options a strategy ignores, line numbers from `nearest`, the
precision in use, scripts named as themselves, and the Hugging Face conventions the README promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, read_metrics

import textvae
import textvae.pipeline
from textvae.cli import main
from textvae.config import load_config
from textvae.errors import TextVAEError
from textvae.modeling.registration import after_import


def cli_output(capsys, *argv) -> tuple[int, list[str], str]:
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def cli_error(capsys, *argv) -> str:
    code, _, err = cli_output(capsys, *argv)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("textvae: error: "), err
    return err.strip()


def test_sample_decodes_in_bounded_chunks_and_prints_every_sample(tiny_run, capsys, monkeypatch):
    sizes = []
    real_decode = textvae.pipeline.decode

    def recording_decode(model, z, options, count=None, generator=None):
        sizes.append(z.size(0) if z is not None else count)
        return real_decode(model, z, options, count, generator)

    monkeypatch.setattr(textvae.pipeline, "decode", recording_decode)
    code, lines, _ = cli_output(capsys, "sample", tiny_run, "-n", 2500, "--max-length", 2, "--seed", 0)
    assert code == 0 and len(lines) == 2500 and all(line.strip() for line in lines)
    assert max(sizes) <= textvae.pipeline.DECODE_CHUNK and sum(sizes) == 2500
    vae = textvae.load(tiny_run)
    assert vae.sample(7, seed=3, strategy="sample") == vae.sample(7, seed=3, strategy="sample")


def test_paths_longer_than_the_limit_are_one_line(tiny_run, capsys):
    line = cli_error(capsys, "interpolate", tiny_run, "--steps", 100_001)
    assert "steps: at most 100,000 points, got 100,001" in line
    assert "at most 100,000 points" in cli_error(capsys, "traverse", tiny_run, "--dim", 0, "--steps", 10**8)


def test_an_empty_decode_prints_as_a_visible_marker(tiny_run, capsys, monkeypatch):
    real = textvae.pipeline.decode_ids
    calls = []

    def first_empty(tokenizer, ids):
        calls.append(ids)
        return "" if len(calls) == 1 else real(tokenizer, ids)

    monkeypatch.setattr(textvae.pipeline, "decode_ids", first_empty)
    code, lines, _ = cli_output(capsys, "sample", tiny_run, "-n", 2)
    assert code == 0 and len(lines) == 2 and lines[0] == "<empty>" and lines[1].strip()


@pytest.mark.parametrize(("options", "expected"), [
    (["--strategy", "beam", "--top-p", "0.5"], "top_p (--top-p) 0.5 does nothing with strategy 'beam': it applies to top-p"),
    (["--temperature", "5"], "temperature (--temperature) 5.0 does nothing with strategy 'greedy'"),
    (["--strategy", "sample", "--beam-size", "3"], "beam_size (--beam-size) 3 does nothing with strategy 'sample'"),
])
def test_an_option_the_strategy_ignores_is_refused(tiny_run, capsys, options, expected):
    assert expected in cli_error(capsys, "sample", tiny_run, *options)


def test_encode_and_score_create_missing_folders_and_name_the_file_written(tiny_run, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("the cat sat .\n\nthe dog ran .\n", encoding="utf-8")
    code, out, err = cli_output(capsys, "encode", tiny_run, lines, "--out", tmp_path / "new" / "vectors")
    assert code == 0, err
    written = tmp_path / "new" / "vectors.npy"
    assert np.load(written).shape[0] == 2 and out[-1].endswith(f"to {written}")
    code, out, err = cli_output(capsys, "score", tiny_run, lines, "--out", tmp_path / "other" / "deep" / "s.jsonl",
                                "--iw-samples", 2)
    assert code == 0, err
    assert len((tmp_path / "other" / "deep" / "s.jsonl").read_text().splitlines()) == 2
    blocked = tmp_path / "file"
    blocked.write_text("x")
    assert "cannot create the folder" in cli_error(capsys, "encode", tiny_run, lines, "--out", blocked / "v.npy")


def test_nearest_prints_the_line_number_of_each_neighbour(tiny_run, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat .\n\nthe dog ran .\nthe clerk wrote .\n", encoding="utf-8")
    code, lines, err = cli_output(capsys, "nearest", tiny_run, "--query", "the dog ran .", "--corpus", corpus, "-k", 3)
    assert code == 0, err
    rows = [line.split("\t") for line in lines[1:]]
    assert sorted((row[2], row[3]) for row in rows) == [("line 1", "the cat sat ."), ("line 3", "the dog ran ."),
                                                       ("line 4", "the clerk wrote .")]


def test_a_failed_new_run_leaves_no_run_dir(tmp_path, capsys):
    out = tmp_path / "runs" / "new"
    line = cli_error(capsys, "train", "--out", out, "--quiet", "--set", f"data.source={tmp_path / 'missing'}")
    assert "missing" in line and not out.exists()


def test_fp16_on_a_cpu_is_refused_before_the_run_dir_is_made(tmp_path, capsys):
    out = tmp_path / "fp16"
    line = cli_error(capsys, "train", "--out", out, "--quiet", "--set", "train.precision=fp16",
                     "--set", "train.device=cpu")
    assert "precision: fp16 is for CUDA GPUs" in line and not out.exists()


def test_the_precision_in_use_is_printed_and_stored(tmp_path, capsys):
    out = tmp_path / "run"
    code, lines, err = cli_output(capsys, "train", "--out", out, "--quiet", "--set", "train.max_steps=1",
                                  "--set", "model.embedding_size=8", "--set", "model.encoder_hidden_size=8",
                                  "--set", "model.decoder_hidden_size=8", "--set", "model.latent_size=2")
    assert code == 0, err
    picked = re.search(r"^trained 1 step in (fp32|bf16); best valid", lines[-1], re.M)
    assert picked, lines  # one step, singular, and the precision auto picked
    assert [line["precision"] for line in read_metrics(out) if line["split"] == "valid"] == [picked.group(1)]
    code, lines, err = cli_output(capsys, "evaluate", out, "--iw-samples", 0, "--samples", 0, "--no-bleu",
                                  "--precision", "fp32")
    assert code == 0 and "evaluating in fp32" in err
    assert json.loads((out / "results.json").read_text())["test"]["precision"] == "fp32"


def test_unknown_key_suggestions_prefer_a_key_the_name_contains():
    with pytest.raises(TextVAEError, match=r"unknown config key 'train.lr_rate' \(did you mean 'lr'\?\)"):
        load_config(None, ["train.lr_rate=0.1"])


def test_version_help_texts_and_precision_only_where_it_applies(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"textvae {textvae.__version__}"
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "sentences scored at once" in text and "seeds the posterior and importance samples" in text
    assert "precision of the scoring passes" in text
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    assert "--precision" not in capsys.readouterr().out


def test_script_wrappers_name_themselves(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "scripts/sample.py", "--help"], capture_output=True, text=True, cwd=REPO,
                            env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("usage: sample.py ")
    result = subprocess.run([sys.executable, "scripts/evaluate.py", str(tmp_path / "none")], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 2 and result.stderr.startswith("evaluate.py: error: run dir not found")


# ---- Hugging Face conventions --------------------------------------------------------------------------

def test_auto_classes_load_a_run_dir_and_forward_takes_a_tokenizers_batch(tiny_run):
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    assert isinstance(AutoConfig.from_pretrained(tiny_run), textvae.TextVAEConfig)
    model = AutoModel.from_pretrained(tiny_run).eval()
    assert isinstance(model, textvae.TextVAE)
    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    sentences = ["the cat sat on the mat .", "a dog ."]
    for side in ("right", "left"):
        tokenizer.padding_side = side
        given = model(**tokenizer(sentences, padding=True, return_tensors="pt"), sample_z=False)
        batch = next(textvae.load(tiny_run).batches(sentences))
        expected = model(batch.token_ids, batch.lengths, sample_z=False)  # the positional form still works
        torch.testing.assert_close(given.rec_nll, expected.rec_nll)
        torch.testing.assert_close(given.mean, expected.mean)


def test_the_loaded_pipeline_saves_model_and_tokenizer_for_load(tiny_run, tmp_path):
    vae = textvae.load(tiny_run)
    vae.save_pretrained(tmp_path / "saved")
    again = textvae.load(tmp_path / "saved")
    assert again.sample(3, seed=1) == vae.sample(3, seed=1)
    np.testing.assert_array_equal(again.encode("the cat sat ."), vae.encode("the cat sat ."))


def test_a_callback_runs_when_its_module_is_first_imported(tmp_path, monkeypatch):
    (tmp_path / "textvae_hook_probe.py").write_text("VALUE = 41\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    after_import("textvae_hook_probe", lambda module: seen.append(module.VALUE + 1))
    assert seen == []  # not imported yet: nothing ran
    import textvae_hook_probe  # noqa: F401

    assert seen == [42]
    after_import("textvae_hook_probe", lambda module: seen.append("now"))  # already imported: runs at once
    assert seen == [42, "now"]
    sys.modules.pop("textvae_hook_probe")

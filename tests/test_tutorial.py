"""docs/tutorial.md stays true: every command in it parses, and the whole walk-through runs, in order, on a
tiny model (the tutorial's own training shrunk by `--set` overrides), printing what the page shows where
the output does not depend on the model, and as many lines where it does."""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from textvae.cli import build_parser, main
from textvae.config import DEMO_RECIPE, load_config

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial.md"
SHARED_KJV = REPO.parent / "shared" / "data" / "kjv"
OWN_TEXT_LINES = 600  # part 10's "~/my_text": this many lines of each KJV split (or the embedded corpus)
SHRINK = ["--set", "model.embedding_size=16", "--set", "model.encoder_hidden_size=16", "--set",
          "model.decoder_hidden_size=16", "--set", "model.latent_size=4", "--set", "train.max_steps=20",
          "--set", "train.batch_size=64"]
MODEL_OUTPUTS = ("runs/", "vectors.npy", "scores.jsonl", "mixed.csv")  # what a command reads that a model made


@dataclass
class Step:
    """One `$ command` of the tutorial and the lines the page shows under it."""

    command: str
    shown: list[str]

    @property
    def is_textvae(self) -> bool:
        return self.command.startswith("textvae ")

    @property
    def model_independent(self) -> bool:
        return not any(name in self.command for name in MODEL_OUTPUTS)


def blocks(language: str) -> list[list[str]]:
    """The lines of each fenced block of the tutorial opened with ```language (\"\" = no language)."""
    found, current, opened = [], [], None
    for line in TUTORIAL.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if opened is None:
                opened, current = line[3:].strip(), []
            else:
                if opened == language:
                    found.append(current)
                opened = None
        elif opened is not None:
            current.append(line)
    return found


def steps() -> list[Step]:
    """Every `$ command` in the ```bash blocks, in order, with the output lines shown beneath it."""
    found: list[Step] = []
    for block in blocks("bash"):
        for line in block:
            if line.startswith("$ "):
                found.append(Step(line[2:], []))
            elif found:
                found[-1].shown.append(line)
    for step in found:
        while step.shown and not step.shown[-1].strip():
            step.shown.pop()
    return found


def test_every_textvae_command_in_the_tutorial_parses_and_its_settings_exist():
    commands = [step.command for step in steps() if step.is_textvae]
    assert len(commands) >= 12
    used = set()
    for command in commands:
        argv = shlex.split(command)[1:]
        args = build_parser().parse_args(argv)  # argparse exits on an unknown option or a missing argument
        used.add(args.command)
        if args.command == "train":
            load_config(REPO / args.config if args.config else DEMO_RECIPE, args.overrides)  # real config keys
    assert {"corpus", "train", "sample", "reconstruct", "interpolate", "encode", "nearest", "score", "detect",
            "evaluate", "plot"} <= used


def run_shell(command: str, cwd: Path) -> list[str]:
    """A non-textvae command of the tutorial through bash, with this interpreter as `python`."""
    if command.startswith("python "):
        command = shlex.quote(sys.executable) + command[len("python"):]
    done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout.rstrip("\n").splitlines()


def run_textvae(command: str, capsys) -> list[str]:
    """A textvae command in this process (fast), the tutorial's training shrunk to a tiny model."""
    argv = shlex.split(command)[1:]
    if "--config" in argv:  # configs/ of the repo, whatever the directory the tutorial runs in
        argv[argv.index("--config") + 1] = str(REPO / argv[argv.index("--config") + 1])
    if argv[0] == "train":
        argv += SHRINK
        if "--tensorboard" in argv and not has_tensorboard():
            argv.remove("--tensorboard")
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, (command, captured.err)
    return captured.out.splitlines()  # a tiny model may decode an empty last sample: its line still counts


def has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def write_own_text(folder: Path) -> None:
    """Part 10's folder of the reader's own text: the first lines of the KJV splits when ../shared is there,
    else the embedded corpus (the commands run the same; only the model's outputs differ)."""
    folder.mkdir()
    if not SHARED_KJV.is_dir():
        assert main(["corpus", str(folder)]) == 0
        return
    for name in ("train", "valid", "test"):
        lines = (SHARED_KJV / f"{name}.txt").read_text(encoding="utf-8").splitlines()[:OWN_TEXT_LINES]
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_the_tutorial_runs_end_to_end_on_a_tiny_model(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")  # `textvae plot`
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # part 10 reads ~/my_text
    write_own_text(tmp_path / "my_text")
    exact = 0
    for step in steps():
        if step.is_textvae:
            printed = run_textvae(step.command, capsys)
        else:
            printed = run_shell(step.command, tmp_path)
        if step.model_independent and not step.is_textvae or step.command.startswith("textvae corpus"):
            assert printed == step.shown, step.command
            exact += bool(printed)
        elif step.is_textvae:
            assert len(printed) == len(step.shown), (step.command, printed)
    assert exact >= 4  # the corpus, its line counts, its first lines, the shuffled lines
    (python_block,), python_output = blocks("python"), blocks("")[-1]  # the block after it shows its output
    capsys.readouterr()
    exec(compile("\n".join(python_block), str(TUTORIAL), "exec"), {})
    assert len(capsys.readouterr().out.splitlines()) == len(python_output)

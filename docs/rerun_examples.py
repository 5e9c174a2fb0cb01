"""Rerun the shell examples of a Markdown page and write their real output back under each command.

A command is a line starting with "$ " inside a ``` block; its output is every following line of the block up to
the next command. The commands run in order, in one bash session per command, in a scratch folder that holds
links to the repository's configs/ and docs/ (so `--config configs/demo.yaml` reads this checkout's recipe)
and nothing else, so a page that trains runs/demo first trains it afresh there. A command that fails keeps the
page's old output and is reported. Output that depends on the model changes with it; the prose around it is
not touched: read the diff. Run from the repository root:
  python docs/rerun_examples.py docs/cli.md                      # every command of the page
  python docs/rerun_examples.py docs/tutorial.md --stop-at my_text  # up to the first command naming my_text
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPT = "$ "


def examples(lines: list[str]) -> list[tuple[int, int]]:
    """(index of the command line, index one past its last output line) for each example of the page."""
    found, inside, command = [], False, None
    for index, line in enumerate(lines):
        if line.startswith("```"):
            if inside and command is not None:
                found.append((command, index))
            inside, command = not inside, None
        elif inside and line.startswith(PROMPT):
            if command is not None:
                found.append((command, index))
            command = index
    return found


def run(command: str, folder: Path, timeout: float) -> tuple[int, list[str]]:
    """The command's exit code and its output lines (stdout, then stderr), run by bash in `folder`."""
    done = subprocess.run(["bash", "-c", command], cwd=folder, capture_output=True, text=True, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr).splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--stop-at", help="stop before the first command that contains this text")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a command may take (default 1800)")
    args = parser.parse_args()
    lines = args.page.read_text(encoding="utf-8").splitlines()
    with tempfile.TemporaryDirectory(prefix="textvae-examples-") as scratch:
        folder = Path(scratch)
        for name in ("configs", "docs"):
            (folder / name).symlink_to(REPO / name)
        replaced: dict[int, tuple[int, list[str]]] = {}
        for start, end in examples(lines):
            command = lines[start][len(PROMPT):]
            if args.stop_at and args.stop_at in command:
                break
            code, output = run(command, folder, args.timeout)
            print(f"[{code}] {command}", file=sys.stderr)
            if code != 0:
                print("\n".join(f"    {line}" for line in output[-5:]), file=sys.stderr)
                continue
            replaced[start] = (end, output)
    for start in sorted(replaced, reverse=True):  # from the bottom, so earlier indices stay valid
        end, output = replaced[start]
        lines[start + 1:end] = output
    args.page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.page}: {len(replaced)} example(s) rerun", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

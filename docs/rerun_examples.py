"""Rerun the shell examples of a Markdown page and write their real output back under each command.

A command is a line starting with "$ " inside a ``` block; its output is every following line of the block up to
the next command (blank lines that end it stay, as separators). The commands run in order, each in its own bash,
in a work folder that holds links to the repository's configs/ and docs/ (so `--config configs/demo.yaml` reads
this checkout's recipe): a scratch folder, so a page that trains runs/demo first trains it afresh there, or
--workdir, kept between calls, so that --only can rerun some commands against what earlier calls made. A
command that fails keeps the page's old output and is reported. Output that depends on the model changes with
it; the prose around it is not touched: read the diff. Run from the repository root:
  python docs/rerun_examples.py docs/cli.md                      # every command of the page
  python docs/rerun_examples.py docs/tutorial.md --stop-at my_text  # up to the first command naming my_text
  python docs/rerun_examples.py docs/cli.md --workdir /tmp/ex --only traverse  # again, only some commands
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


def trailing_blank_lines(segment: list[str]) -> int:
    """How many blank lines end `segment` (an example's old output: they separate it from the next command)."""
    count = 0
    for line in reversed(segment):
        if line.strip():
            break
        count += 1
    return count


def run(command: str, folder: Path, timeout: float) -> tuple[int, list[str]]:
    """The command's exit code and its output lines, run by bash in `folder`: its standard output (what the pages
    show; log lines on standard error are left out), or, when it fails, its standard error."""
    done = subprocess.run(["bash", "-c", command], cwd=folder, capture_output=True, text=True, timeout=timeout)
    return done.returncode, (done.stdout if done.returncode == 0 else done.stderr).splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--stop-at", help="stop before the first command that contains this text")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a command may take (default 1800)")
    parser.add_argument("--workdir", type=Path, help="work folder kept between calls (default: a scratch folder)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="rerun only the commands that contain TEXT (repeatable)")
    args = parser.parse_args()
    lines = args.page.read_text(encoding="utf-8").splitlines()
    with tempfile.TemporaryDirectory(prefix="textvae-examples-") as scratch:
        folder = args.workdir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("configs", "docs"):
            if not (folder / name).exists():
                (folder / name).symlink_to(REPO / name)
        replaced: dict[int, tuple[int, list[str]]] = {}
        for start, end in examples(lines):
            command = lines[start][len(PROMPT):]
            if args.stop_at and args.stop_at in command:
                break
            if args.only and not any(text in command for text in args.only):
                continue
            code, output = run(command, folder, args.timeout)
            print(f"[{code}] {command}", file=sys.stderr)
            if code != 0:
                print("\n".join(f"    {line}" for line in output[-5:]), file=sys.stderr)
                continue
            replaced[start] = (end, output + [""] * trailing_blank_lines(lines[start + 1:end]))
    for start in sorted(replaced, reverse=True):  # from the bottom, so earlier indices stay valid
        end, output = replaced[start]
        lines[start + 1:end] = output
    args.page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.page}: {len(replaced)} example(s) rerun", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Thin wrapper for people who run scripts: the same as `textvae evaluate ...` (see docs/cli.md)."""

import sys
from pathlib import Path

from textvae.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]], script=Path(sys.argv[0]).name))

"""Not built yet (see the open issues)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options yet."""


def run(args: argparse.Namespace) -> int:
    """Say that this command does not exist yet and fail."""
    print(f"pvheater: '{args.command}' is not implemented yet", file=sys.stderr)
    return 1

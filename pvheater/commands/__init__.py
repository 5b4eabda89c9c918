"""Subcommands of the `pvheater` command line, one module each."""

import argparse


def positive_float(text: str) -> float:
    """Parse a number > 0 for argparse (seconds, a speed factor ...)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value

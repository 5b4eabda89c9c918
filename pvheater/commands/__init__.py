"""Subcommands of the `pvheater` command line, one module each (shared parts: common.py)."""

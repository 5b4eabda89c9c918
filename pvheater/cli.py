"""The `pvheater` command line: parses arguments and turns our errors into one-line messages."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pvheater import __version__
from pvheater.config import load_config
from pvheater.errors import ConfigError, GxError, PvHeaterError, RegisterMapError

#: Subcommand name -> module under pvheater.commands with add_arguments() and run().
COMMANDS: dict[str, str] = {
    "run": "run",
    "read-registers": "read_registers",
    "calibrate-servo": "calibrate_servo",
    "simulate": "simulate",
    "gx-sim": "gx_sim",
    "stats": "stats",
    "reload": "reload",
    "install-service": "install_service",
    "setup": "setup",
    "status": "status",
}

#: Exit codes: 0 ok, 1 the GX or hardware failed, 2 bad configuration or usage.
EXIT_RUNTIME = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="pvheater",
        description="Put solar surplus from a Victron system into a water heater.",
    )
    parser.add_argument("--version", action="version", version=f"pvheater {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"pvheater.commands.{module_name}")
        doc = (module.__doc__ or "").strip().splitlines()[0]
        cmd = sub.add_parser(name, help=doc, description=doc)
        cmd.add_argument(
            "--config",
            metavar="PATH",
            help="config file (default: ./config.yaml, else the packaged one)",
        )
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pvheater` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.cfg = load_config(args.config)
        return int(args.handler(args))
    except (ConfigError, RegisterMapError) as exc:
        print(f"pvheater: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except GxError as exc:
        print(f"pvheater: GX error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except PvHeaterError as exc:
        print(f"pvheater: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        print("pvheater: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

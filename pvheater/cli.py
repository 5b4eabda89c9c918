"""The `pvheater` command line: parses arguments and turns our errors into one-line messages."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pvheater import __version__
from pvheater.commands.common import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_RUNTIME, simulate_options_problem
from pvheater.config import Config, load_config
from pvheater.errors import ConfigError, GxError, PvHeaterError, RegisterMapError

#: Subcommand name -> module under pvheater.commands with add_arguments() and run().
COMMANDS: dict[str, str] = {
    "run": "run",
    "read-registers": "read_registers",
    "calibrate": "calibrate_servo",
    "calibrate-servo": "calibrate_servo",
    "simulate": "simulate",
    "gx-sim": "gx_sim",
    "stats": "stats",
    "reload": "reload",
    "install-service": "install_service",
    "setup": "setup",
    "status": "status",
    "mode": "mode",
    "boost": "boost",
}
#: How a command uses the config file: "needed" (a bad file stops it, exit 2), "optional" (a bad ./config.yaml
#: is reported in one line and the defaults are used; a bad --config PATH stops it), "unused" (not read at all).
#: Unlisted: "needed".
CONFIG_USE: dict[str, str] = {
    "simulate": "unused",
    "gx-sim": "optional",
    "setup": "unused",
}

def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="pvheater",
        description="Put solar surplus from a Victron system into a water heater.",
    )
    parser.add_argument("--version", action="version", version=f"pvheater {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
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


def _load_config(args: argparse.Namespace) -> Config | None:
    """The config the command reads, as CONFIG_USE says; ConfigError when a needed one is bad."""
    use = CONFIG_USE.get(args.command, "needed")
    if use == "unused":
        return None
    try:
        return load_config(args.config)
    except (ConfigError, RegisterMapError) as exc:
        if use == "needed" or args.config is not None:
            raise
        print(f"pvheater: note: config not used ({exc}); running with the defaults", file=sys.stderr)
        return Config()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pvheater` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `pvheater`: say what there is
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    problem = simulate_options_problem(args)
    if problem is not None:
        print(f"pvheater: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    #: True when this is the console script's own process (it ends when main returns), not a caller's.
    args.process_entry = argv is None
    try:
        args.cfg = _load_config(args)
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
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

"""First-run wizard: find the GX and its unit IDs, check the values, pins, a servo jog; write a commented config.yaml.

`pvheater setup` asks its questions on the terminal (works over SSH, no
full-screen UI): the GX's address (the one given with --host, else
venus.local when it answers, else asked), then it discovers the unit IDs as
`read-registers --discover` does, reads one snapshot through the real reader
and says which needed values are there and plausible, asks for the relay's
pin and active level and the servo's pin (checked by pvheater's own pin
code), offers a servo jog (+ / - or the arrow keys; the relay stays open) to
mark the knob's zero and full angles, and writes the shipped config.yaml
with those values filled in and every comment kept (--out PATH, default
./config.yaml; an existing file only after asking). The result is loaded
with pvheater's own loader before it is written. `--pin-factory NAME` sets
gpio.pin_factory in it and is the pin library the jog uses.

`--simulate` serves the built-in GX simulator on 127.0.0.1 (--port, default
5020, what `pvheater gx-sim` serves) and uses mock pins, so the whole wizard
can be tried without hardware; the config written then points at that
address (start `pvheater gx-sim` to use it). Without a terminal on stdin it
says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from pvheater.commands.read_registers import tcp_port
from pvheater.config import GpioConfig, UnitIds
from pvheater.errors import PvHeaterError
from pvheater.setup_wizard import SetupAborted, Terminal, run_wizard

#: Port of the simulator with --simulate: the one `pvheater gx-sim` uses, so the written config works with it.
SIM_PORT = 5020
PIN_FACTORIES = GpioConfig.__dataclass_fields__["pin_factory"].metadata["choices"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater setup`."""
    parser.add_argument("--host", help="the GX's address (default: try venus.local, else ask)")
    parser.add_argument("--port", type=tcp_port, help="the GX's Modbus-TCP port (default 502; --simulate: 5020)")
    parser.add_argument("--out", metavar="PATH", default="config.yaml", help="the file to write (default config.yaml)")
    parser.add_argument("--pin-factory", choices=PIN_FACTORIES, help="gpio.pin_factory to write and jog with")
    parser.add_argument("--simulate", action="store_true",
                        help="against the built-in GX simulator on 127.0.0.1, with mock pins (no hardware)")


def run(args: argparse.Namespace) -> int:
    """Run the wizard on the terminal; exit 2 without one."""
    if not sys.stdin.isatty():
        print("pvheater setup: needs an interactive terminal (stdin is not a TTY); run it in a terminal or over "
              "`ssh -t`, or copy config.yaml and edit it by hand", file=sys.stderr)
        return 2
    term = Terminal(sys.stdin, sys.stdout)
    with ExitStack() as stack:
        host, port, pin_factory, note = args.host, args.port or 502, args.pin_factory, ""
        if args.simulate:
            from pvheater.registers import load_register_map
            from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator

            port = args.port or SIM_PORT
            register_map = load_register_map()
            simulator = GxSimulator(register_map, UnitIds(), host="127.0.0.1", port=port)
            simulator.set_values({k: v for k, v in SAMPLE_VALUES.items() if k in register_map.by_name()})
            try:
                stack.enter_context(simulator)
            except PvHeaterError as exc:
                print(f"pvheater setup: --simulate: {exc}; choose another --port", file=sys.stderr)
                return 1
            host, pin_factory = "127.0.0.1", args.pin_factory or "mock"
            note = f"--simulate: the GX is pvheater's simulator (`pvheater gx-sim --port {port}` serves it)."
            term.say(f"--simulate: GX simulator on 127.0.0.1:{port}, mock pins")
        # SIGTERM and a hang-up (the SSH link drops) end the wizard through its finally blocks: pins released,
        # the terminal restored; the relay was never closed.
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return run_wizard(term, sys.stdin.fileno(), host=host, port=port, out=Path(args.out),
                              pin_factory=pin_factory, note=note)
        except (SetupAborted, KeyboardInterrupt, EOFError):
            with contextlib.suppress(OSError):  # the terminal may be gone
                term.say("\nsetup aborted: nothing written")
            return 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt

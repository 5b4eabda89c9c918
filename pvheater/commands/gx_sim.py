"""Serve a simulated Venus GX over Modbus-TCP with sample values until Ctrl-C.

The sample is a sunny noon on an ESS with a full battery: the MPPT in float
and voltage-limited (PV held back), battery and grid near 0 W. Devices are
served at the unit IDs of the config (gx.unit_ids), the system service also
at unit 0. Point `pvheater read-registers --host 127.0.0.1 --port 5020` or
any Modbus client at it.
"""

from __future__ import annotations

import argparse
import signal
import threading

from pvheater.commands.common import EXIT_OK, tcp_port
from pvheater.registers import load_register_map
from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater gx-sim`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=tcp_port, default=5020, help="TCP port to listen on (default 5020)")


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM; exit 0."""
    register_map = load_register_map()
    simulator = GxSimulator(register_map, args.cfg.gx.unit_ids, host=args.host, port=args.port)
    simulator.set_values({k: v for k, v in SAMPLE_VALUES.items() if k in register_map.by_name()})
    with simulator:
        units = ", ".join(
            f"{role} {uid}" + (" (and 0)" if role == "system" else "") for role, uid in simulator.unit_ids.items()
        )
        where = f"{args.host}:{simulator.port}"
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:  # own handlers: a shell that starts it in the background ignores SIGINT, and SIGTERM stops it cleanly too
            print(f"GX simulator listening on {where}; unit IDs: {units}; Ctrl-C stops it", flush=True)
            while not stop.wait(0.5):  # timed slices: the handler runs between them
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return EXIT_OK

"""Serve a simulated Venus GX over Modbus-TCP with sample values until Ctrl-C.

The sample is a sunny noon on an ESS with a full battery: the MPPT in float
and voltage-limited (PV held back), battery and grid near 0 W. Devices are
served at the unit IDs of the config (gx.unit_ids), the system service also
at unit 0. Point `pvheater read-registers --host 127.0.0.1 --port 5020` or
any Modbus client at it.
"""

from __future__ import annotations

import argparse
import contextlib
import threading

from pvheater.commands.common import EXIT_OK, tcp_port
from pvheater.registers import load_register_map
from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater gx-sim`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=tcp_port, default=5020, help="TCP port to listen on (default 5020)")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; exit 0 on Ctrl-C."""
    register_map = load_register_map()
    simulator = GxSimulator(register_map, args.cfg.gx.unit_ids, host=args.host, port=args.port)
    simulator.set_values({k: v for k, v in SAMPLE_VALUES.items() if k in register_map.by_name()})
    with simulator:
        units = ", ".join(
            f"{role} {uid}" + (" (and 0)" if role == "system" else "") for role, uid in simulator.unit_ids.items()
        )
        where = f"{args.host}:{simulator.port}"
        with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C right after the announcement is a clean stop too
            print(f"GX simulator listening on {where}; unit IDs: {units}; Ctrl-C stops it", flush=True)
            idle = threading.Event()
            while not idle.wait(0.5):  # timed: a signal landing just before a blocking wait is seen within 0.5 s
                pass
    return EXIT_OK

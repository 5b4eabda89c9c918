"""Set the hot-water mode of the running service: auto, solar_only or off (kept across restarts).

`pvheater mode auto|solar_only|off` asks the service running in this
directory through its local channel (`service.socket_file`, a Unix socket
only the service's user can use). `auto`: solar surplus plus the daily goal
(and its grid top-up when `hot_water.topup.enabled`); `solar_only`: surplus
only, no top-up, no forced legionella cycle; `off`: relay open, knob at
zero, the service keeps running and recording. The service applies it at
its next tick and keeps it in `hot_water.state_file`. Without a running
service, or without permission on the socket, it says so in one line
(exit 1).
"""

from __future__ import annotations

import argparse

from pvheater.control.hotwater import MODES
from pvheater.errors import PvHeaterError
from pvheater.service.channel import request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater mode`."""
    parser.add_argument("mode", choices=MODES, help="the new mode")
    parser.add_argument("--socket", metavar="PATH", help="the service's socket (default: service.socket_file)")


def send(args: argparse.Namespace, message: dict[str, object]) -> int:
    """Send one command to the running service and print its one-line answer (PvHeaterError when refused)."""
    socket_file = args.socket or args.cfg.service.socket_file
    if socket_file is None:
        raise PvHeaterError("service.socket_file is null in the config: the service has no local channel "
                            "(or pass --socket PATH)")
    answer = request(socket_file, message)
    print(answer.get("message", "ok"))
    return 0


def run(args: argparse.Namespace) -> int:
    """Set the mode."""
    return send(args, {"cmd": "mode", "mode": args.mode})

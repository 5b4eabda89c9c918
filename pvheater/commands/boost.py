"""Boost the running service's heater: full power, grid allowed, for a time or to a temperature; or cancel it.

`pvheater boost 45m` (also `1h`, `1h30m`, `90min`) heats at full power for
that long, `pvheater boost 60C` until the tank sensor reads 60 degC (needs
`tank_sensor.enabled`), never longer than `hot_water.boost_max_min`; a boost
ends earlier when the tank is full (the thermostat opened) or at
`tank_sensor.max_temp_c`. `pvheater boost cancel` ends it. The relay guard's
safety checks (fault, stale data, switch limit, min on/off times) still
apply; its policy gates (min SoC, sun, time window) do not. Refused in mode
off. It goes through the service's local channel like `pvheater mode`; a
boost does not survive a restart of the service.
"""

from __future__ import annotations

import argparse

from pvheater.commands.mode import send
from pvheater.control.hotwater import parse_boost


def _boost(text: str) -> tuple[float | None, float | None] | None:
    if text.strip().lower() == "cancel":
        return None
    try:
        return parse_boost(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or cancel)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater boost`."""
    parser.add_argument("boost", type=_boost, metavar="45m|1h30m|60C|cancel", help="how long, to what, or cancel")
    parser.add_argument("--socket", metavar="PATH", help="the service's socket (default: service.socket_file)")


def run(args: argparse.Namespace) -> int:
    """Start or cancel a boost."""
    if args.boost is None:
        return send(args, {"cmd": "boost", "cancel": True})
    minutes, temp_c = args.boost
    message: dict[str, object] = {"cmd": "boost"}
    if minutes is not None:
        message["minutes"] = minutes
    if temp_c is not None:
        message["temp_c"] = temp_c
    return send(args, message)

"""The live state of the service as a JSON-ready dict: one place for the local channel, and later MQTT or a web page.

Signs follow the GX: battery_w > 0 charges the battery, grid_w > 0 imports
from the grid. `heater_command_w` is what the guard let through to the
relay and the knob; `heater_calibrated_w` is the power the relay and the
servo angle give through the heater's calibration (an estimate: the GX
cannot measure the heater alone, its AC consumption is house plus heater).
"""

from __future__ import annotations

import math
from typing import Any

from pvheater.service.loop import HeaterPort, TickReport

#: Version of the dict's layout; a reader can refuse a newer one.
STATE_VERSION = 1


def _number(value: float | None, digits: int = 1) -> float | None:
    """A finite value rounded for JSON, else None."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def tick_state(report: TickReport, heater: HeaterPort, wall_s: float) -> dict[str, Any]:
    """The last tick as a JSON-ready dict: measurements with their signs, the command, relay, servo, reason."""
    m = report.m
    angle = heater.servo_angle_deg
    relay_on = bool(heater.relay_on)
    calibrated_w = heater.calibration.power_at(angle) if relay_on and angle is not None else 0.0
    return {
        "version": STATE_VERSION,
        "wall_s": round(wall_s, 3),
        "data_age_s": None if m is None else _number(report.now_s - m.time_s, 2),
        "pv_w": None if m is None else _number(m.pv_w),
        "battery_w": None if m is None else _number(m.battery_w),
        "soc_pct": None if m is None else _number(m.soc_pct),
        "grid_w": None if m is None else _number(m.grid_w),
        "consumption_w": None if m is None else _number(m.consumption_w),
        "absent_roles": [] if m is None else sorted(m.absent_roles),
        "want_heat": bool(report.request.want_heat),
        "heater_request_w": _number(report.request.power_w),
        "heater_command_w": _number(report.output.power_w) if report.output.relay_on else 0.0,
        "heater_calibrated_w": _number(calibrated_w),
        "relay_on": relay_on,
        "servo_deg": _number(angle),
        "reason": report.output.reason,
        "fault": report.fault,
        "failsafe": report.failsafe,
        "loop_error": report.loop_error,
    }

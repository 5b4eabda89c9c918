"""The live state of the service as a JSON-ready dict: one place for the local channel, and later MQTT or a web page.

Signs follow the GX: battery_w > 0 charges the battery, grid_w > 0 imports
from the grid. `heater_command_w` is what the guard let through to the
relay and the knob; `heater_calibrated_w` is the power the relay and the
servo angle give through the heater's calibration (an estimate: the GX
cannot measure the heater alone, its AC consumption is house plus heater).
`heater_measured_w` is what the GX's consumption says the heater draws
(pvheater.control.heater_response; null until known) and `house_w` the
consumption minus that (minus the calibrated power while it is unknown).
The hot-water keys: `mode` (auto, solar_only, off), `boost_left_s` (null:
no boost), `forced` (null, "boost", "topup", "legionella": heating with the
grid allowed this tick), `tank_temp_c` (a fresh valid sensor reading, else
null), `tank_full` (the thermostat opened), `energy_today_solar_kwh` and
`energy_today_grid_kwh` (heater energy today; grid = what the grid and the
battery supplied in forced ticks), `last_60c` (date the tank last reached
the legionella temperature, null: not seen), `last_error` (the newest GX or
loop error text, kept after its episode; null: none since the start).
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
    value = heater.input_value  # the angle, the duty or the fraction of cycles: what the calibration maps
    relay_on = bool(heater.relay_on)
    calibrated_w = heater.calibration.power_at(value) if relay_on and value is not None else 0.0
    hw = report.hot_water
    measured_w = report.measured_heater_w
    heater_w = measured_w if measured_w is not None else calibrated_w
    house_w = None if m is None or m.consumption_w is None else max(0.0, m.consumption_w - heater_w)
    return {
        "version": STATE_VERSION,
        "wall_s": round(wall_s, 3),
        "data_age_s": None if m is None else _number(max(0.0, report.now_s - m.time_s), 2),
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
        "heater_measured_w": _number(measured_w),
        "house_w": _number(house_w),
        "tank_full": bool(report.tank_full),
        "tank_temp_c": None if hw is None else _number(hw.advice.tank_temp_c, 2),
        "mode": "auto" if hw is None else hw.advice.mode,
        "boost_left_s": None if hw is None else _number(hw.boost_left_s, 0),
        "forced": None if hw is None else hw.forced,
        "energy_today_solar_kwh": 0.0 if hw is None else _number(hw.energy_today_solar_kwh, 3),
        "energy_today_grid_kwh": 0.0 if hw is None else _number(hw.energy_today_grid_kwh, 3),
        "last_60c": None if hw is None or hw.last_60c is None else hw.last_60c.isoformat(),
        "last_error": report.last_error,
    }

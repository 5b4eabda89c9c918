"""A measured calibration against the observer's online correction (issue 12: stats within 2 % with a table).

The samples are recorded from the real loop on family plant 31 (a 1037 W element on a log-taper regulator,
1 % dead zone, PV steps, a pulsing 1.96 kW hob, a 20 s GX outage), 13 simulated minutes, with the table a
calibration sweep measured on that plant (within +-3 %): per GX sample the time s, the AC consumption W, the
heater power the table expects for the command in force W, and the plant's true heater power W.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from pvheater.control import heater_response as hr

RECORDED = Path(__file__).parent / "data" / "heater_response_measured_table_seed31.csv"
MAX_POWER_W = 1037.0


def _energy_wh(s: hr.ResponseSettings) -> tuple[float, float]:
    """(measured, true) heater energy over the recording: the observer's measured power held until the next sample,
    as `stats` sums it."""
    with RECORDED.open(encoding="utf-8") as f:
        rows = [(float(r["time_s"]), float(r["consumption_w"]), float(r["expected_w"]), float(r["true_heater_w"]))
                for r in csv.DictReader(f)]
    state = hr.ResponseState()
    measured_j = true_j = 0.0
    last: tuple[float, float, float] | None = None
    for time_s, consumption_w, expected_w, true_w in rows:
        state, _ = hr.step(state, time_s, consumption_w, expected_w, s)
        if last is not None:
            measured_j += last[1] * (time_s - last[0])
            true_j += last[2] * (time_s - last[0])
        last = (time_s, hr.measured_heater_w(state, expected_w, s), true_w)
    return measured_j / 3600.0, true_j / 3600.0


def test_a_measured_table_keeps_the_energy_within_2_percent() -> None:
    measured_wh, true_wh = _energy_wh(hr.settings_for(MAX_POWER_W, measured_curve=True))
    assert true_wh > 30.0  # the recording heats: a real check, not 0 against 0
    # with the straight line's pull on the bands (the old settings) the windows read beside the hob took it -5.4 %
    assert measured_wh == pytest.approx(true_wh, rel=0.02), (measured_wh, true_wh)


def test_the_straight_lines_pull_would_not_hold_the_table() -> None:
    # the same recording with a measured curve's settings but the straight line's prior: what the table's stronger
    # pull is for (this pins the recording's point, so a change that makes the prior irrelevant shows up here)
    s = replace(hr.settings_for(MAX_POWER_W, measured_curve=True), prior_w2=hr.ResponseSettings().prior_w2)
    measured_wh, true_wh = _energy_wh(s)
    assert measured_wh < 0.96 * true_wh, (measured_wh, true_wh)


def test_a_measured_table_still_learns_a_low_mains_voltage() -> None:
    # the stronger pull must not freeze the correction: the element gives 81 % of the table (0.9 x the voltage)
    s = hr.settings_for(2000.0, measured_curve=True)
    levels = (0.0, 400.0, 900.0, 1400.0, 1900.0, 600.0, 1100.0, 1600.0, 300.0, 2000.0, 800.0, 1300.0)
    state = hr.ResponseState()
    for k in range(600):
        expected_w = levels[(k // 8) % len(levels)]
        state, _ = hr.step(state, float(k), 300.0 + 0.81 * expected_w, expected_w, s)
    assert hr.measured_heater_w(state, 1500.0, s) == pytest.approx(0.81 * 1500.0, rel=0.06)

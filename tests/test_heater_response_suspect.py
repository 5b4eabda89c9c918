"""A drop of about the heater's power while the knob moves (issue 12: a full tank found within 15 s).

Both sequences are from the real loop on `tank_small` (bench/tank.py), the 9th thermostat opening of the day,
with the limit of hidden PV lifted by house loads that end (pvheater/control/controller.py): per GX sample the
AC consumption W and the heater power the calibration expects for the command in force W. Before them the
observer has learned the curve from the day's moves (here: a few levels, the house at 310 W).
"""

from __future__ import annotations

from pvheater.control import heater_response as hr

LEVELS = (0.0, 400.0, 900.0, 1400.0, 600.0, 1100.0, 300.0, 800.0, 500.0)


def _learned(s: hr.ResponseSettings, ratio: float) -> tuple[hr.ResponseState, float]:
    """An observer that has seen 90 s of knob moves on an element giving ratio x the expected power."""
    state, t = hr.ResponseState(), 0.0
    for k in range(90):
        expected_w = LEVELS[(k // 8) % len(LEVELS)]
        state, _ = hr.step(state, t, 310.0 + ratio * expected_w, expected_w, s)
        t += 1.0
    assert state.status == hr.DRAWING
    return state, t


def _feed(state: hr.ResponseState, t: float, rows: list[tuple[int, int]], s: hr.ResponseSettings
          ) -> tuple[hr.ResponseState, list[tuple[float, str]]]:
    seen = []
    for k, (consumption_w, expected_w) in enumerate(rows):
        state, event = hr.step(state, t + k, float(consumption_w), float(expected_w), s)
        if event is not None:
            seen.append((float(k), event.status))
    return state, seen


def test_the_element_stops_as_the_probe_trims_back() -> None:
    # with the measured table: the loop raised 500 -> 605 W, the element stopped at that sample, the loop trimmed
    # back 35 W on the probe's deficit -- the command moved (not only up), yet consumption fell 605 W, far more
    # than its own moves can make; then the loop, told nothing, climbs to full on a cold element
    s = hr.settings_for(2000.0, measured_curve=True)
    state, t = _learned(s, 1.0)
    rows = [(810, 500), (810, 500), (810, 500), (805, 500), (910, 605), (305, 570), (305, 570), (305, 675),
            (316, 780), (316, 916), (316, 1095), (316, 1329), (316, 1635)] + [(322, 2000)] * 12
    state, seen = _feed(state, t, rows, s)
    opened_at = 5.0
    assert any(status == hr.NOT_DRAWING and k - opened_at <= 15.0 for k, status in seen), seen
    assert state.status == hr.NOT_DRAWING


def test_a_house_wobble_with_the_move_to_the_sense_power_is_no_response() -> None:
    # the straight-line default, the element giving 58 % of it: at 830 W asked (482 W drawn) the element stops;
    # the loop parks the knob at the sense command (636 W asked) and the house is 32 W lower at that moment --
    # 0.16 W per W asked, read as the element following the knob, cleared the suspicion before
    s = hr.settings_for(2000.0, measured_curve=False)
    state, t = _learned(s, 0.58)
    rows = [(802, 830)] * 3 + [(807, 830)] * 2 + [(319, 830)] * 3 + [(312, 830)] * 5 + [(280, 636)] * 8
    state, seen = _feed(state, t, rows, s)
    opened_at = 5.0
    assert any(status == hr.NOT_DRAWING and k - opened_at <= 15.0 for k, status in seen), seen
    assert state.status == hr.NOT_DRAWING

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


def test_a_trim_at_the_dead_zones_edge_is_not_a_thermostat_opening() -> None:
    # the straight-line default on `tank_shower_cloud` (bench/tank.py) with the relay just closed: the knob works
    # at the regulator's dead-zone edge (500-700 W asked, 80-300 W given), where the curve learned so far is
    # steep (1.3 W per W asked, 0.25 of the straight line on average). A back-off trim 639 -> 557 W (13 %, a
    # trim) drops consumption 82 W -- 60 % of what the heater draws there, but no more than the trim's own move
    # by that curve -- and the GX's averaging makes the rise after it look weak: read as the thermostat opening,
    # the knob sat at the sense power all day (`stats` -32.5 %)
    s = hr.settings_for(2000.0, measured_curve=False)
    rows = [(213, 0)] * 2 + [(229, 0)] * 4 + [
        (229, 179), (261, 413), (535, 719), (358, 568), (311, 508), (311, 508), (365, 588), (468, 679), (413, 634),
        (341, 562), (310, 524), (412, 604), (449, 639), (449, 639), (367, 557), (322, 496), (352, 576),
    ] + [(373, 599)] * 4 + [(379, 599)] * 5 + [(381, 599)] * 15
    state, seen = _feed(hr.ResponseState(), 32779.0, rows, s)
    assert seen == [(8.0, hr.DRAWING)], seen
    assert not state.suspect


def test_a_house_drop_at_the_bottom_of_the_knob_before_the_element_was_seen_is_no_thermostat() -> None:
    # the forecast's early heating on `morning60_forecast_good` (tests/test_forecast.py), the straight-line
    # default: the knob sits at 72 W expected in the regulator's dead zone (the element gives nothing), the house
    # falls 311 -> 195 W over two samples, and the knob climbs through the dead zone with nothing to show for it
    s = hr.settings_for(2000.0, measured_curve=False)
    rows = [(311, 72)] * 10 + [(285, 72), (195, 72), (195, 113), (195, 147), (195, 181), (234, 212), (235, 232)]
    state, seen = _feed(hr.ResponseState(), 25321.0, rows, s)
    assert hr.NOT_DRAWING not in [status for _, status in seen], seen
    assert state.status != hr.NOT_DRAWING

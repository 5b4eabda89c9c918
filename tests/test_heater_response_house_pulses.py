"""Windows that pair the knob's step with a house load's, and the last level near its command (issue 12).

The table is recorded from the real loop on family plant 49 (1.2 kW element on a log-taper regulator with an 8 %
dead zone): a pulsing induction hob (1.3 kW, ~5 s on every 13 s). The loop cuts the knob as each pulse starts and
climbs back after it; the element gives only ~40 W at these commands. Per GX sample: time s, AC consumption W,
expected heater power of the command in force W.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pvheater.control import heater_response as hr

S = hr.settings_for(1201.0, measured_curve=False)

HOB_PULSES = [
    (392.5, 225, 0), (393.8, 225, 0), (395.1, 224, 291), (396.5, 226, 291), (397.9, 251, 589), (399.6, 282, 589),
    (401.2, 1590, 0), (402.6, 1531, 0), (404.2, 1533, 0), (405.7, 225, 0), (407.3, 224, 0), (408.8, 223, 402),
    (410.4, 231, 402), (411.9, 264, 549), (413.3, 1572, 549), (414.6, 1532, 0), (416.2, 1532, 0),
    (417.9, 1531, 0), (419.3, 225, 0), (420.7, 225, 185), (422.1, 231, 549), (423.8, 263, 549),
    (425.5, 263, 549), (427.1, 1574, 0), (428.3, 1531, 0), (429.7, 1533, 0), (431.0, 1532, 0), (432.3, 225, 0),
    (433.8, 225, 384), (435.3, 231, 384), (437.0, 250, 509), (438.3, 252, 509), (439.7, 1558, 0),
    (441.3, 1532, 0), (442.7, 1531, 0), (444.3, 224, 0), (445.7, 225, 204), (447.2, 231, 469), (448.5, 242, 469),
    (449.9, 240, 469), (451.5, 241, 469), (452.9, 1543, 469), (454.3, 1532, 0), (455.8, 1531, 0),
    (457.2, 1531, 0), (458.6, 224, 0), (460.0, 224, 174), (461.4, 229, 362), (462.8, 234, 429),
    (464.2, 235, 429), (465.6, 1543, 429), (467.0, 1532, 0),
]


def _feed(state: hr.ResponseState, table: list[tuple[float, int, int]]) -> hr.ResponseState:
    for time_s, consumption_w, expected_w in table:
        state, _ = hr.step(state, time_s, float(consumption_w), float(expected_w), S)
    return state


def test_a_hob_pulse_is_not_learned_as_the_element() -> None:
    # the GX's lag has been one sample-free (lag 0) for a while: a fit two samples late lines the knob's cut up
    # with the hob's end (1.3 kW for a command the element gives ~40 W at); a bent climb ends in the hob's start
    state = _feed(hr.ResponseState(lag_votes=(6.9, 0.0, 0.0)), HOB_PULSES)
    for expected_w in (300.0, 469.0, 549.0):
        # the straight line (nothing learned) reads the command itself; what the hob would teach reads far more
        assert hr.measured_heater_w(state, expected_w, S) <= expected_w, (expected_w, state.ratios)


def test_one_big_step_in_a_bent_climb_is_the_house() -> None:
    # the lag not settled yet, so every lag is fitted: two samples late, the climb 0 -> 429 W ends in the hob's
    # start (+1308 W in one sample, more than the bands' steepest slope over the whole climb could make)
    climb = [(450.0 + 1.4 * k, 224, 0) for k in range(7)] + [
        (460.0, 224, 174), (461.4, 229, 362), (462.8, 234, 429), (464.2, 235, 429), (465.6, 1543, 429),
        (467.0, 1543, 429)]
    state = _feed(hr.ResponseState(), climb)
    assert state.observations == 0, state.ratios
    assert hr.ratio_at(state, 300.0, S) == pytest.approx(1.0)  # still the straight line


def test_the_relays_close_keeps_its_level() -> None:
    table = [(float(k), 300, 0) for k in range(5)] + [(5.0 + k, 550, 600) for k in range(8)]
    state = _feed(hr.ResponseState(), table)
    assert state.last_level is not None
    assert state.last_level[1:] == pytest.approx((600.0, 250.0))


def test_the_last_level_corrects_the_measured_power_near_its_command() -> None:
    # the windows taught a curve that reads twice the element; the relay's close showed 250 W at 600 W
    state = replace(hr.ResponseState(), ratios=(2.0,) * S.bands, status=hr.DRAWING,
                    samples=((12.0, 550.0, 600.0),), last_level=(12.0, 600.0, 250.0))
    assert hr.measured_heater_w(state, 600.0, S) == pytest.approx(250.0)
    # a little above it, most of the correction; away from the level's command the curve alone
    assert hr.measured_heater_w(state, 650.0, S) < 0.5 * 2.0 * 650.0
    far_w = 600.0 + S.level_near_frac * S.max_power_w + 1.0
    assert hr.measured_heater_w(state, far_w, S) == pytest.approx(2.0 * far_w)
    # and long after it
    later = replace(state, samples=((12.0 + S.level_memory_s, 550.0, 600.0),))
    assert hr.measured_heater_w(later, 600.0, S) == pytest.approx(1200.0)
    assert hr.measured_heater_w(replace(state, status=hr.NOT_DRAWING), 600.0, S) == 0.0

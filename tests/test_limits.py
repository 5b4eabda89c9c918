"""The off-grid cap with the user's reserve (gx.off_grid_reserve_w), pure: a table of samples and command histories.

The cap keeps heater + house on the heater's phase below rating - margin - reserve. Each row is one tick: the
heater's recent commands (time, W, relay), the consumption the GX sample shows, and the cap expected.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pvheater.config import Config
from pvheater.control import limits
from pvheater.control.measurements import Measurements

RATING_W = 2400.0
MARGIN_W = limits.MARGIN_W
SHARE = limits.RISE_SHARE

#: A heater held at 1000 W for the last three ticks (the sample at t = 10 shows it).
HELD_1000 = ((7.0, 1000.0, True), (8.0, 1000.0, True), (9.0, 1000.0, True))


def sample(consumption_w: float, time_s: float = 10.0) -> Measurements:
    return Measurements(time_s=time_s, values={"ac_consumption_l1_w": consumption_w,
                                                "vebus_nominal_power_w": RATING_W, "vebus_phases": 1})


@pytest.mark.parametrize(
    ("reserve_w", "commands", "consumption_w", "expected_w"),
    [
        # held at 1000 W beside a 250 W house: headroom 1000 W without a reserve, the heater rises by its share
        (0.0, HELD_1000, 1250.0, 1000.0 + SHARE * (RATING_W - MARGIN_W - 1250.0)),
        # a 1000 W reserve takes exactly that headroom: the heater holds
        (1000.0, HELD_1000, 1250.0, 1000.0),
        # 1500 W: 500 W short, given up at once
        (1500.0, HELD_1000, 1250.0, 500.0),
        # 2000 W: the shortfall is the whole heater and more
        (2000.0, HELD_1000, 1250.0, 0.0),
        # a reserve as large as the rating (possible with the rating from the VE.Bus register): never any heat
        (RATING_W, HELD_1000, 1250.0, 0.0),
        # relay open, house 250 W, reserve 500 W: from 0 by the share of 1500 W
        (500.0, ((8.0, 800.0, False), (9.0, 800.0, False)), 250.0, SHARE * 1500.0),
        # a rise to 1200 W the sample may not show yet (it shows 600 W): the step starts from 600 W, and the
        # reserve pulls the unshown command back
        (500.0, ((8.0, 600.0, True), (9.0, 1200.0, True)), 850.0, 600.0 + SHARE * 900.0),
        # the same with the sample above the limit (a kettle came on): all the shortfall from the least command
        (500.0, ((8.0, 600.0, True), (9.0, 1200.0, True)), 2850.0, 0.0),
        (500.0, ((8.0, 600.0, True), (9.0, 1200.0, True)), 2000.0, 600.0 - 250.0),
    ],
)
def test_the_cap_keeps_the_reserve_free(
    reserve_w: float, commands: tuple[tuple[float, float, bool], ...], consumption_w: float, expected_w: float
) -> None:
    settings = limits.CapSettings(reserve_w=reserve_w)
    cap, why = limits.cap_w(limits.CapState(commands), sample(consumption_w), settings)
    assert cap == pytest.approx(expected_w)
    assert ("reserved" in why) == (reserve_w > 0.0)


def test_the_reserve_comes_from_the_config() -> None:
    cfg = Config()
    assert cfg.gx.off_grid_reserve_w == 0.0
    cfg = replace(cfg, gx=replace(cfg.gx, off_grid=True, inverter_rating_w=3000.0, off_grid_reserve_w=700.0))
    assert limits.CapSettings.from_config(cfg) == limits.CapSettings(rating_w=3000.0, reserve_w=700.0)


@pytest.mark.parametrize(("slope", "offset_w"), [(1.0, 0.0), (2.0, 0.0), (2.0, -1150.0)],
                         ids=["as calibrated", "twice as steep", "twice as steep after a dead zone"])
@pytest.mark.parametrize("reserve_w", [0.0, 1000.0])
def test_the_cap_settles_below_the_limit_with_a_heater_steeper_than_its_calibration(
    slope: float, offset_w: float, reserve_w: float
) -> None:
    """A heater drawing offset + slope x the commanded W (its knob against the calibration), shown a tick late.

    The cap settles where heater + house = rating - margin - reserve, never above it, and does not keep
    swinging: with a rise share of 0.5 the dead-zone heater swung between 0 and the limit every tick for good
    (what the offgrid scenario's knob did whenever the cap bound: BENCHMARKS.md, "Off-grid").
    """
    house_w = 250.0
    limit_w = RATING_W - MARGIN_W - reserve_w
    settings = limits.CapSettings(reserve_w=reserve_w)
    state = limits.CapState()
    command_w = 0.0
    drawn_w = []
    for k in range(80):
        heater_w = min(max(0.0, offset_w + slope * command_w), 2000.0) if command_w > 0.0 else 0.0
        drawn_w.append(heater_w)
        cap, _ = limits.cap_w(state, sample(house_w + heater_w, time_s=float(k)), settings)
        command_w = min(cap, 2000.0)  # the controller asks for all the heater has: the cap decides
        state = limits.CapState((*[c for c in state.commands if c[0] >= k - 4.0], (float(k), command_w, True)))
    assert max(drawn_w) <= limit_w - house_w + 1e-6
    assert drawn_w[-1] == pytest.approx(min(limit_w - house_w, 2000.0), abs=10.0)
    assert max(drawn_w[-10:]) - min(drawn_w[-10:]) < 20.0

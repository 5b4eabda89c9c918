"""The controller's two rules for an actuator that gives the commanded power exactly and at once (pwm_0_10v)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_controller import C, full, settled

from pvheater.config import Config
from pvheater.control.controller import EXACT_ACTUATORS, ControllerSettings, step

PLAIN = ControllerSettings(C, 3000.0)
EXACT = ControllerSettings(C, 3000.0, exact_actuator=True)


@pytest.mark.parametrize(
    ("sample", "plain_w", "exact_w"),
    [
        # the battery gives 200 W beyond the heater's 1000 W: the plain rule lands at the 30 W allowance
        ({"battery": -200.0}, 830.0, 800.0),
        # grid import 200 W: the same with the import allowance
        ({"grid": 200.0}, 830.0, 800.0),
        # both at once: both allowances
        ({"battery": -100.0, "grid": 100.0}, 860.0, 800.0),
    ],
)
def test_an_exact_actuators_cut_lands_at_no_deficit(sample: dict, plain_w: float, exact_w: float) -> None:
    for settings, expected in ((PLAIN, plain_w), (EXACT, exact_w)):
        _, r = step(settled(1000.0, 300.0), full(11.0, consumption=1300.0, mode=2, **sample), settings, 11.0, True)
        assert r.power_w == pytest.approx(expected), (settings.exact_actuator, r.reason)
        assert r.reason.startswith("backing off")


@pytest.mark.parametrize(("battery_w", "power_w"), [(-15.0, 1000.0), (-25.0, 975.0)])
def test_below_the_allowances_an_exact_actuator_cuts_as_the_plain_rule(battery_w: float, power_w: float) -> None:
    # within the deficit tolerance (20 W): hold; beyond it but within the discharge allowance (30 W): the deficit
    for settings in (PLAIN, EXACT):
        sample = full(11.0, consumption=1300.0, battery=battery_w, mode=2)
        _, r = step(settled(1000.0, 300.0), sample, settings, 11.0, True)
        assert r.power_w == pytest.approx(power_w), (settings.exact_actuator, r.reason)


def test_an_exact_actuators_rise_keeps_its_proportional_part() -> None:
    # DC feed-in export of 150 W (100 W beyond the export margin) at 1000 W: a rise; the next sample shows the
    # rise taken from the export and the rest within the deadband: hold
    for settings, held_w in ((PLAIN, 1035.0), (EXACT, 1065.0)):
        state, r = step(settled(1000.0, 300.0), full(11.0, consumption=1300.0, grid=-150.0, mode=2), settings,
                        11.0, True)
        assert r.power_w == pytest.approx(1065.0) and r.reason == "surplus 100 W"
        rise = r.power_w - 1000.0
        state, r = step(state, full(12.0, consumption=1300.0 + rise, grid=-150.0 + rise, mode=2), settings, 12.0,
                        True)
        assert r.reason == "holding"
        # the plain rule hands the proportional part (0.3 x 100 W) back; the exact one keeps the whole rise
        assert r.power_w == pytest.approx(held_w), settings.exact_actuator


@pytest.mark.parametrize(
    ("actuator", "exact", "tolerance_w"),
    [("servo", False, 20.0), ("pwm_0_10v", True, 15.0), ("ssr_burst", False, 20.0)],
)
def test_only_the_0_10v_input_counts_as_exact_and_holds_less_of_a_deficit(
    actuator: str, exact: bool, tolerance_w: float
) -> None:
    cfg = Config()
    cfg = replace(cfg, heater=replace(cfg.heater, actuator=actuator))
    settings = ControllerSettings.from_config(cfg)
    assert settings.exact_actuator is exact and (actuator in EXACT_ACTUATORS) is exact
    assert settings.control.deficit_tolerance_w == pytest.approx(tolerance_w)
    assert settings == ControllerSettings.for_actuator(cfg.control, cfg.heater.max_power_w, actuator)
    # a 17 W deficit: within the servo's tolerance (held), beyond the 0-10 V input's (cut by it)
    sample = full(11.0, consumption=1300.0, battery=-17.0, mode=2)
    _, r = step(settled(1000.0, 300.0), sample, replace(settings, max_power_w=3000.0), 11.0, True)
    assert r.power_w == pytest.approx(983.0 if exact else 1000.0), r.reason

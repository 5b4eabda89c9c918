"""The hot-water part wired into the control loop: the guard's `forced`, the old path unchanged, energy split."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest

from pvheater.config import Config
from pvheater.control import guard
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeatRequest
from pvheater.sim.controller_strategy import ControllerStrategy
from pvheater.sim.plant import Plant
from pvheater.sim.scenarios import build_day

NOON = datetime.time(12, 0)


def snapshot(t_s: float, soc_pct: float = 50.0) -> Measurements:
    return gx(t_s, pv_w=0.0, grid_w=300.0, soc_pct=soc_pct)


def gx(t_s: float, pv_w: float, grid_w: float | None, soc_pct: float = 50.0, battery_w: float = 0.0) -> Measurements:
    return Measurements(time_s=t_s, values={"pv_dc_w": pv_w, "battery_power_w": battery_w, "grid_l1_w": grid_w,
                                            "battery_soc_pct": soc_pct, "ac_consumption_l1_w": 300.0})


def run_guard(settings: guard.GuardSettings, forced: bool, local_time: datetime.time | None = NOON,
              utc_s: float | None = None, fault: str | None = None, stale_s: float = 0.0,
              state: guard.GuardState | None = None, ticks: int = 5) -> tuple[guard.GuardState, list[str], bool]:
    state = state or guard.GuardState()
    reasons = []
    out = None
    for k in range(ticks):
        t = 1000.0 + k
        state, out = guard.step(state, HeatRequest(True, 2000.0, "boost"), snapshot(t - stale_s), settings, t,
                                local_time, fault, utc_s=utc_s, forced=forced)
        reasons.append(out.reason)
    assert out is not None
    return state, reasons, out.relay_on


WINDOW = guard.GuardSettings(window_start=datetime.time(10), window_end=datetime.time(11))
SUN = guard.GuardSettings(latitude_deg=48.0, longitude_deg=11.0)
MIDNIGHT_UTC = datetime.datetime(2024, 6, 21, 23, 0, tzinfo=datetime.UTC).timestamp()


@pytest.mark.parametrize(("settings", "kwargs", "gate"), [
    (guard.GuardSettings(), {}, "SoC 50 % below"),  # min SoC 95 %
    (WINDOW, {}, "outside time window"),
    (WINDOW, {"local_time": None}, "clock not trusted"),
    (SUN, {"utc_s": MIDNIGHT_UTC}, "sun below"),
])
def test_forced_skips_each_policy_gate_and_only_those(settings: guard.GuardSettings, kwargs: dict[str, object],
                                                      gate: str) -> None:
    _, reasons, on = run_guard(settings, False, **kwargs)  # type: ignore[arg-type]
    assert not on and gate in reasons[-1]
    _, reasons, on = run_guard(settings, True, **kwargs)  # type: ignore[arg-type]
    assert on, reasons
    assert reasons[:3] == ["waiting 1/3 samples", "waiting 2/3 samples", "on: boost"]


def test_forced_never_skips_a_safety_check() -> None:
    s = guard.GuardSettings(min_soc_pct=0.0)
    _, reasons, on = run_guard(s, True, fault="GX unavailable")
    assert not on and reasons[-1].startswith("fault: GX unavailable")
    _, reasons, on = run_guard(s, True, stale_s=10.0)
    assert not on and reasons[-1].startswith("stale data")
    # the switch limit: 6 edges in the last hour leave no room
    full = guard.GuardState(switch_times_s=(400.0, 500.0, 600.0, 700.0, 800.0, 850.0), changed_s=850.0)
    _, reasons, on = run_guard(s, True, state=full)
    assert not on and reasons[-1].startswith("switch limit 6/h reached")
    # min off time after an off that broke current
    after_off = guard.GuardState(changed_s=990.0, switch_times_s=(980.0, 990.0))
    _, reasons, on = run_guard(s, True, state=after_off)
    assert not on and reasons[-1].startswith("min off time")
    # min on time: forced or not, the relay stays closed at 0 W when heat is no longer wanted
    on_state = guard.GuardState(relay_on=True, changed_s=995.0, switch_times_s=(995.0,), soc_ok=True)
    _, out = guard.step(on_state, HeatRequest(False, 0.0, "mode off"), snapshot(1000.0), s, 1000.0, NOON,
                            forced=True)
    assert out.relay_on and out.power_w == 0.0 and out.reason.startswith("min on time")
    # implausible data
    bad = gx(1000.0, 0.0, None)
    _, out = guard.step(guard.GuardState(), HeatRequest(True, 2000.0, "boost"), bad, s, 1000.0, NOON, forced=True)
    assert not out.relay_on and out.failsafe and "grid power missing" in out.reason


def _day_outputs(hot_water: bool, start_s: int, end_s: int) -> list[tuple[object, ...]]:
    day = build_day("tank_shower_cloud")
    plant = Plant(day, start_s=start_s)
    strategy = ControllerStrategy(day)
    if not hot_water:
        strategy.loop.hot_water = None  # the path before the hot-water part existed
    out = []
    for s in range(start_s, end_s):
        act = strategy.decide(float(s), plant.measurements(), None)
        r = strategy.loop.last
        assert r is not None
        out.append((s, r.request, r.output, act, r.tank_full, r.measured_heater_w))
        plant.step(1.0, act)
    return out


def test_defaults_leave_every_tick_exactly_as_the_old_path() -> None:
    """topup/legionella off, no sensor, mode auto: 09:00-17:00 of the tank day with a shower under a cloud,
    tick by tick -- the request, the guard's output, the actuation, tank full and the measured power."""
    with_hw = _day_outputs(True, 9 * 3600, 17 * 3600)
    without = _day_outputs(False, 9 * 3600, 17 * 3600)
    assert sum(1 for row in with_hw if row[2].relay_on) > 3600  # the day heats (it is not trivially equal)
    assert any(row[4] for row in with_hw)  # and the thermostat opens
    diffs = [(a, b) for a, b in zip(with_hw, without, strict=True) if a != b]
    assert not diffs, diffs[:3]


def test_energy_today_splits_forced_grid_from_solar_and_starts_over_at_midnight() -> None:
    from pvheater.service.hot_water import HotWater

    hw = HotWater(Config(), local_tz=datetime.UTC)
    day0 = datetime.datetime(2024, 6, 21, tzinfo=datetime.UTC).timestamp()
    sunny = gx(0.0, 3000.0, 0.0, 99.0)
    night = gx(0.0, 0.0, 2300.0, 99.0)
    t = 0.0
    for _ in range(3600):  # an hour of surplus heating at 2000 W
        hw.account(t, sunny, 2000.0, False, datetime.time(12), day0 + 43200 + t)
        t += 1.0
    for _ in range(1800):  # half an hour forced from the grid (house 300 W + heater 2000 W)
        hw.account(t, night, 2000.0, True, datetime.time(13), day0 + 43200 + t)
        t += 1.0
    assert hw.heater_today_kwh == pytest.approx(3.0, abs=0.01)
    assert hw.grid_today_kwh == pytest.approx(1.0, abs=0.01)
    assert hw.pv_today_kwh == pytest.approx(3.0, abs=0.01)
    hw.account(t, night, 0.0, False, datetime.time(0, 0, 1), day0 + 86401)
    # the new day holds only the last second (2000 W from the grid)
    assert hw.heater_today_kwh == hw.grid_today_kwh == pytest.approx(2000.0 / 3.6e6)
    assert hw.pv_today_kwh == 0.0


def test_a_reload_keeps_the_hot_water_state() -> None:
    from pvheater.service.hot_water import HotWater

    hw = HotWater(Config())
    hw.set_mode("solar_only")
    hw.advise(HeatRequest(False, 0.0, "x"), None, 1.0, None, None, False, None)
    cfg = Config()
    hw.apply_config(replace(cfg, hot_water=replace(cfg.hot_water, boost_max_min=30.0)))
    assert hw.state.mode == "solar_only" and hw.settings.boost_max_s == 1800.0


def test_hub_commands_validate_queue_and_apply_at_the_next_tick() -> None:
    from pvheater.service.hot_water import HotWater, register
    from pvheater.service.hub import Hub

    hub = Hub()
    hw = HotWater(Config())
    register(hub, hw)
    tick = [100.0]

    def advise() -> tuple[HeatRequest, bool]:
        tick[0] += 1.0
        return hw.advise(HeatRequest(True, 500.0, "surplus"), None, tick[0], None, None, False, None)

    assert hub.dispatch({"cmd": "mode", "mode": "turbo"}) == {
        "ok": False, "error": "unknown mode 'turbo': expected one of auto, solar_only, off"}
    assert hub.dispatch({"cmd": "mode"})["error"] == "mode: expected one of auto, solar_only, off"
    assert hub.dispatch({"cmd": "boost", "minutes": "45"})["error"] == "boost: minutes must be a number, got '45'"
    assert hub.dispatch({"cmd": "boost", "minutes": -5})["error"] == (
        "boost refused: boost minutes must be positive, got -5.0")
    assert hub.dispatch({"cmd": "boost", "temp_c": 55})["error"] == (
        "boost refused: a boost to a temperature needs tank_sensor.enabled")
    assert hub.dispatch({"cmd": "boost"})["error"] == 'boost: expected "minutes", "temp_c" or "cancel": true'
    assert hub.dispatch({"cmd": "boost", "cancel": True}) == {"ok": True, "message": "no boost running"}

    assert hub.dispatch({"cmd": "boost", "minutes": 45}) == {
        "ok": True, "message": "boost at full power for 45 min (from the next tick)"}
    assert hw.state.boost is None  # queued, not applied
    request, forced = advise()
    assert forced and request.want_heat and request.power_w == 2000.0
    assert hw.last is not None and hw.last.forced == "boost" and hw.last.boost_left_s == 45 * 60.0
    hub.dispatch({"cmd": "mode", "mode": "off"})
    request, forced = advise()
    assert not forced and not request.want_heat and request.power_w == 0.0
    assert hw.state.mode == "off" and hw.state.boost is None  # mode off ends the boost
    assert hub.dispatch({"cmd": "boost", "minutes": 10})["error"].startswith("boost refused: mode is off")


def test_a_command_right_after_a_mode_change_is_checked_against_the_new_mode() -> None:
    from pvheater.errors import PvHeaterError
    from pvheater.service.hot_water import HotWater

    hw = HotWater(Config())
    hw.set_mode("off")
    hw.advise(HeatRequest(False, 0.0, "x"), None, 1.0, None, None, False, None)
    assert hw.state.mode == "off"
    with pytest.raises(PvHeaterError, match="boost refused: mode is off"):
        hw.boost(45.0)
    # `pvheater mode auto && pvheater boost 45m`: both answered before the service's next tick
    hw.set_mode("auto")
    assert hw.boost(45.0).endswith("(from the next tick)")
    assert hw.cancel_boost() == "boost cancelled (from the next tick)"
    hw.advise(HeatRequest(False, 0.0, "x"), None, 2.0, None, None, False, None)
    assert hw.state.mode == "auto" and hw.state.boost is None
    assert hw.cancel_boost() == "no boost running"
    hw.set_mode("off")  # queued: a boost asked now meets the mode it will find
    with pytest.raises(PvHeaterError, match="boost refused: mode is off"):
        hw.boost(45.0)

"""The pure hot-water logic: tank limit, modes, boost, daily goal and top-up, legionella (table-driven + 3 weeks).

The multi-day tests run the logic against a small tank of their own (volume,
element, standing losses, a thermostat, draw-offs morning and evening) and a
PV surplus per day, in simulated time at 60 s steps; the real tank model
comes with the heater-observed issue.
"""

from __future__ import annotations

import datetime
import math
import random
from dataclasses import dataclass, field, replace

import pytest

from pvheater.config import config_from_dict
from pvheater.control.hotwater import (
    WATER_KWH_PER_L_K,
    HotWaterAdvice,
    HotWaterInputs,
    HotWaterSettings,
    HotWaterState,
    TankReading,
    cancel_boost,
    combine,
    cycle_at,
    decide_topup,
    estimate_pv_for_heater,
    legionella_due,
    parse_boost,
    set_mode,
    start_boost,
    step,
    sun_still_to_come,
)
from pvheater.control.messages import HeatRequest
from pvheater.control.reserve import Forecast
from pvheater.errors import ConfigError

DAY0 = datetime.datetime(2026, 6, 1)
T = datetime.time
SENSOR = dict(sensor_enabled=True, max_temp_c=70.0, hysteresis_k=5.0, sensor_stale_after_s=30.0)


def dt(day: int, hhmm: str) -> datetime.datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return DAY0 + datetime.timedelta(days=day, hours=h, minutes=m)


def utc(local: datetime.datetime) -> float:
    """The tests' place keeps UTC as its local time (longitude 0)."""
    return local.replace(tzinfo=datetime.UTC).timestamp()


def ok(temp_c: float, time_s: float) -> TankReading:
    return TankReading(temp_c, time_s, True)


def bad(time_s: float, problem: str = "CRC error") -> TankReading:
    return TankReading(None, time_s, False, problem)


def heats(advice: HotWaterAdvice) -> bool:
    return advice.allow_heat or advice.force_power_w is not None


# --- tank limit --------------------------------------------------------------------------------

LIMIT_CASES = [
    # (name, [(reading or None, seconds since it was read)], allowed after each)
    ("no sensor reading: allowed", [(None, 0)], [True]),
    ("below max", [(ok(50, 0), 0)], [True]),
    ("at max stops", [(ok(70, 0), 0)], [False]),
    ("hysteresis: 66 after a stop stays stopped, 64.9 resumes",
     [(ok(70.2, 0), 0), (ok(66, 0), 0), (ok(65.0, 0), 0), (ok(64.9, 0), 0)], [False, False, False, True]),
    ("invalid reading below the limit: as without a sensor", [(ok(50, 0), 0), (bad(0), 0)], [True, True]),
    ("stale reading below the limit: as without a sensor", [(ok(50, 0), 0), (ok(50, 0), 31)], [True, True]),
    ("stale reading above the limit never heats", [(ok(71, 0), 0), (ok(71, 0), 500)], [False, False]),
    ("invalid after a stop: stays stopped", [(ok(71, 0), 0), (bad(0), 0), (None, 0)], [False, False, False]),
    ("stale low reading after a stop does not release", [(ok(71, 0), 0), (ok(40, 0), 31)], [False, False]),
    ("fresh low reading after a stop releases", [(ok(71, 0), 0), (bad(0), 0), (ok(40, 0), 0)], [False, False, True]),
    ("reading from the future is not fresh", [(ok(71, 0), 0), (ok(40, 0), -5)], [False, False]),
]


@pytest.mark.parametrize(("name", "ticks", "allowed"), LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_tank_limit_with_hysteresis_and_stale_readings(name: str, ticks: list, allowed: list[bool]) -> None:
    settings = HotWaterSettings(**SENSOR)
    state = HotWaterState()
    got = []
    for i, (reading, age_s) in enumerate(ticks):
        now_s = 100.0 * i
        if reading is not None:
            reading = replace(reading, time_s=now_s - age_s)
        state, advice = step(state, settings, HotWaterInputs(tank=reading), now_s, None)
        got.append(advice.allow_heat)
        if not advice.allow_heat:
            assert advice.max_power_w == 0.0 and advice.force_power_w is None
    assert got == allowed


def test_limit_logs_one_event_each_way() -> None:
    settings = HotWaterSettings(**SENSOR)
    state, a1 = step(HotWaterState(), settings, HotWaterInputs(tank=ok(70.5, 0)), 0.0, None)
    state, a2 = step(state, settings, HotWaterInputs(tank=ok(70.5, 1)), 1.0, None)
    state, a3 = step(state, settings, HotWaterInputs(tank=ok(60, 2)), 2.0, None)
    assert len(a1.events) == 1 and "heating stopped" in a1.events[0]
    assert a2.events == ()
    assert len(a3.events) == 1 and "allowed again" in a3.events[0]
    assert "tank 70.5 degC" in a2.reason


def test_never_heats_above_max_temp_in_any_mode_or_forcing() -> None:
    """Seeded random walk over readings (valid, invalid, stale), boosts, modes and top-up windows."""
    rng = random.Random(13)
    settings = HotWaterSettings(**SENSOR, daily_kwh=5.0, topup_enabled=True, legionella_every_days=1,
                                legionella_temp_c=60.0, boost_max_s=3600.0)
    state = HotWaterState()
    last_fresh_valid: float | None = None
    released = True
    checked = 0
    for i in range(20_000):
        now_s = 60.0 * i
        local = DAY0 + datetime.timedelta(seconds=now_s)
        kind = rng.random()
        if kind < 0.7:
            reading = ok(rng.uniform(55.0, 75.0), now_s)
        elif kind < 0.85:
            reading = bad(now_s, rng.choice(["CRC error", "85.0 degC", "-127 degC", "missing"]))
        else:
            reading = ok(rng.uniform(20.0, 80.0), now_s - rng.uniform(31.0, 3600.0))  # stale
        if rng.random() < 0.01:
            state, _ = set_mode(state, rng.choice(["auto", "solar_only", "off"]))
        if rng.random() < 0.01 and state.mode != "off":
            state, _ = start_boost(state, settings, now_s, minutes=rng.choice([10, 45, None]) or 30)
        inputs = HotWaterInputs(tank=reading, heater_energy_today_kwh=rng.uniform(0, 1) * (i % 1440) / 300,
                                grid_available=True)
        state, advice = step(state, settings, inputs, now_s, local, utc(local))
        fresh = reading.valid and 0 <= now_s - reading.time_s <= 30.0
        if fresh:
            last_fresh_valid = reading.temp_c
            if reading.temp_c >= 70.0:
                released = False
            elif reading.temp_c < 65.0:
                released = True
        if last_fresh_valid is not None and not released:
            checked += 1
            assert not heats(advice) and advice.max_power_w == 0.0, (i, reading, advice)
    assert checked > 3000  # the property was exercised


@pytest.mark.parametrize(
    ("request_", "advice", "expected", "forced"),
    [
        # solar surplus passes unchanged
        (HeatRequest(True, 800.0, "surplus"), HotWaterAdvice(True, None, 2000.0, "solar surplus", "auto"),
         HeatRequest(True, 800.0, "surplus"), False),
        (HeatRequest(False, 0.0, "no surplus"), HotWaterAdvice(True, None, 2000.0, "solar surplus", "auto"),
         HeatRequest(False, 0.0, "no surplus"), False),
        # mode off / tank limit: nothing, whatever the controller wants
        (HeatRequest(True, 1500.0, "surplus"), HotWaterAdvice(False, None, 0.0, "mode off", "off"),
         HeatRequest(False, 0.0, "hot water: mode off"), False),
        # forced: the larger of the force and the surplus, capped
        (HeatRequest(False, 0.0, "night"), HotWaterAdvice(True, 1500.0, 2000.0, "top-up", "auto", "topup"),
         HeatRequest(True, 1500.0, "hot water: top-up"), True),
        (HeatRequest(True, 1800.0, "surplus"), HotWaterAdvice(True, 1500.0, 2000.0, "top-up", "auto", "topup"),
         HeatRequest(True, 1800.0, "hot water: top-up"), True),
        (HeatRequest(True, 2500.0, "surplus"), HotWaterAdvice(True, 2000.0, 2000.0, "boost", "auto", "boost"),
         HeatRequest(True, 2000.0, "hot water: boost"), True),
        # a cap below the request
        (HeatRequest(True, 2500.0, "surplus"), HotWaterAdvice(True, None, 2000.0, "solar surplus", "auto"),
         HeatRequest(True, 2000.0, "surplus; hot water cap 2000 W"), False),
    ],
)
def test_combine_request_and_advice(request_, advice, expected, forced) -> None:
    assert combine(request_, advice) == (expected, forced)


# --- modes and boost ---------------------------------------------------------------------------


def test_off_mode_opens_everything_even_in_a_planned_topup() -> None:
    settings = HotWaterSettings(daily_kwh=5.0, topup_enabled=True)
    state = HotWaterState(mode="off")
    for hhmm in ("12:00", "15:00", "22:30", "03:00"):
        local = dt(0, hhmm) if hhmm > "06:00" else dt(1, hhmm)
        state, advice = step(state, settings, HotWaterInputs(pv_energy_today_kwh=0.0), 0.0, local, utc(local))
        assert (advice.allow_heat, advice.force_power_w, advice.max_power_w, advice.mode) == (False, None, 0.0, "off")
        assert advice.reason == "mode off"


def test_modes_and_their_advice() -> None:
    settings = HotWaterSettings()
    for mode, allow, reason in (("auto", True, "solar surplus"), ("solar_only", True, "solar only"),
                                ("off", False, "mode off")):
        state, text = set_mode(HotWaterState(), mode)
        assert text == f"mode {mode}"
        _, advice = step(state, settings, HotWaterInputs(), 0.0, dt(0, "12:00"))
        assert (advice.allow_heat, advice.force_power_w, advice.reason, advice.mode) == (allow, None, reason, mode)
    with pytest.raises(ValueError, match="unknown mode 'turbo'"):
        set_mode(HotWaterState(), "turbo")


BOOST_CASES = [
    # (name, start_boost kwargs, per-tick (inputs, seconds since start), expected forced after each tick, end reason)
    ("45 min ends by time", {"minutes": 45}, [(HotWaterInputs(), 60), (HotWaterInputs(), 2699),
                                              (HotWaterInputs(), 2700)], [True, True, False], "time up"),
    ("to 55 degC ends at the temperature", {"until_temp_c": 55.0},
     [(HotWaterInputs(tank=ok(50, 10)), 10), (HotWaterInputs(tank=ok(55.1, 20)), 20)], [True, False],
     "tank at 55.1 degC"),
    ("ends at tank full", {"minutes": 60}, [(HotWaterInputs(), 10), (HotWaterInputs(tank_full=True), 20),
                                           (HotWaterInputs(), 30)], [True, False, False], "tank full"),
    ("ends at the tank limit", {"minutes": 60}, [(HotWaterInputs(tank=ok(60, 10)), 10),
                                                 (HotWaterInputs(tank=ok(70.5, 20)), 20)], [True, False],
     "tank at max_temp_c"),
    ("to a temperature with a dead sensor: ends at boost_max", {"until_temp_c": 60.0},
     [(HotWaterInputs(tank=bad(10)), 10), (HotWaterInputs(tank=bad(3599)), 3599), (HotWaterInputs(), 3600)],
     [True, True, False], "time up"),
    ("minutes capped at boost_max", {"minutes": 600}, [(HotWaterInputs(), 3599), (HotWaterInputs(), 3600)],
     [True, False], "time up"),
]


@pytest.mark.parametrize(("name", "kwargs", "ticks", "forced", "end"), BOOST_CASES, ids=[c[0] for c in BOOST_CASES])
def test_boost_is_full_power_and_ends_by_itself(name: str, kwargs: dict, ticks: list, forced: list[bool],
                                                 end: str) -> None:
    settings = HotWaterSettings(**SENSOR, element_power_w=3000.0, boost_max_s=3600.0)
    start_s = 1000.0
    state, text = start_boost(HotWaterState(mode="solar_only"), settings, start_s, **kwargs)
    assert text.startswith("boost at full power")
    got, events = [], []
    for inputs, after_s in ticks:
        if inputs.tank is not None:  # reading times count from the boost's start, like after_s
            inputs = replace(inputs, tank=replace(inputs.tank, time_s=start_s + inputs.tank.time_s))
        state, advice = step(state, settings, inputs, start_s + after_s, None)
        got.append(advice.forced == "boost")
        if advice.forced == "boost":
            assert advice.force_power_w == 3000.0 and advice.allow_heat and "boost" in advice.reason
        events += advice.events
    assert got == forced
    assert state.boost is None
    assert [e for e in events if e.startswith("boost ended")] == [f"boost ended: {end}"]


def test_boost_refusals_and_cancel() -> None:
    settings = HotWaterSettings()
    with pytest.raises(ValueError, match="mode is off"):
        start_boost(HotWaterState(mode="off"), settings, 0.0, minutes=30)
    with pytest.raises(ValueError, match=r"needs tank_sensor\.enabled"):
        start_boost(HotWaterState(), settings, 0.0, until_temp_c=55.0)
    with pytest.raises(ValueError, match=r"above tank_sensor\.max_temp_c"):
        start_boost(HotWaterState(), HotWaterSettings(**SENSOR), 0.0, until_temp_c=75.0)
    with pytest.raises(ValueError, match="positive"):
        start_boost(HotWaterState(), settings, 0.0, minutes=0)
    state, _ = start_boost(HotWaterState(), settings, 0.0, minutes=30)
    off, text = set_mode(state, "off")
    assert off.boost is None and text == "mode off (boost cancelled)"
    cancelled, text = cancel_boost(state)
    assert cancelled.boost is None and text == "boost cancelled"
    assert cancel_boost(cancelled)[1] == "no boost running"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("45m", (45.0, None)), ("90min", (90.0, None)), ("1h", (60.0, None)), ("1h30m", (90.0, None)),
     (" 2H ", (120.0, None)), ("55C", (None, 55.0)), ("55 degC", (None, 55.0)), ("52.5c", (None, 52.5))],
)
def test_parse_boost(text: str, expected: tuple) -> None:
    assert parse_boost(text) == expected


@pytest.mark.parametrize("text", ["", "45", "m", "0m", "1h-5m", "hot", "55F", "-5m"])
def test_parse_boost_refuses_with_one_line(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_boost(text)
    assert "\n" not in str(err.value) and repr(text) in str(err.value)


# --- the goal cycle --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("goal", "window", "decision", "now", "expected"),
    [
        # no goal time: the deadline is the window's end
        (None, (T(22), T(6)), T(15), dt(0, "12:00"), ("0:06:00", "1:06:00", "0:15:00", "0:22:00", "1:06:00")),
        (None, (T(22), T(6)), T(15), dt(0, "05:59"), ("-1:06:00", "0:06:00", "-1:15:00", "-1:22:00", "0:06:00")),
        (None, (T(22), T(6)), T(15), dt(0, "06:00"), ("0:06:00", "1:06:00", "0:15:00", "0:22:00", "1:06:00")),
        # hot by 18:00 with a window just before it
        (T(18), (T(16), T(18)), T(15), dt(0, "17:00"), ("-1:18:00", "0:18:00", "0:15:00", "0:16:00", "0:18:00")),
        # hot by 07:00 with the night tariff
        (T(7), (T(22), T(6)), T(15), dt(0, "23:00"), ("0:07:00", "1:07:00", "0:15:00", "0:22:00", "1:06:00")),
    ],
)
def test_cycle_geometry(goal, window, decision, now, expected) -> None:
    settings = HotWaterSettings(goal_time=goal, topup_start=window[0], topup_end=window[1], decision_time=decision)
    c = cycle_at(settings, now)

    def show(x: datetime.datetime) -> str:
        return f"{(x.date() - now.date()).days}:{x:%H:%M}"

    assert tuple(map(show, (c.start, c.deadline, c.decision, c.window_start, c.window_end))) == expected


def run_day(settings: HotWaterSettings, day: int, inputs_at, state: HotWaterState | None = None,
            start: str = "06:00", hours: float = 24.0, step_s: float = 60.0):
    """Tick from `start` of `day` for `hours` (both ends included); inputs_at(local, state) -> HotWaterInputs."""
    state = state or HotWaterState()
    log = []
    t0 = dt(day, start)
    for i in range(int(hours * 3600 / step_s) + 1):
        local = t0 + datetime.timedelta(seconds=i * step_s)
        now_s = (local - DAY0).total_seconds()
        state, advice = step(state, settings, inputs_at(local, state), now_s, local, utc(local))
        log.append((local, advice, state))
    return state, log


@pytest.mark.parametrize(
    ("name", "settings", "inputs", "met_by"),
    [
        ("a tank-full event", HotWaterSettings(goal_time=T(18)),
         lambda local, s: HotWaterInputs(tank_full=local >= dt(0, "13:42")), "tank full at 13:42"),
        ("a temperature", HotWaterSettings(**SENSOR, goal_time=T(18), goal_temp_c=55.0),
         lambda local, s: HotWaterInputs(tank=ok(40 + (local - dt(0, "06:00")).total_seconds() / 1800,
                                                 (local - DAY0).total_seconds())), "tank at 55.0 degC at 13:30"),
        ("daily_kwh delivered", HotWaterSettings(goal_time=T(18), daily_kwh=4.0),
         lambda local, s: HotWaterInputs(heater_energy_today_kwh=max(0.0, (local - dt(0, "10:00")).total_seconds())
                                         / 3600.0), "4.0 kWh delivered by 14:00"),
    ],
)
def test_goal_met_by_each_criterion(name, settings, inputs, met_by) -> None:
    state, log = run_day(settings, 0, inputs, hours=11.0)
    events = [e for _, a, _ in log for e in a.events]
    assert events.count(f"hot-water goal met: {met_by}") == 1
    assert state.goal_met == met_by
    assert all("goal met" in a.reason for local, a, _ in log if local > dt(0, "14:00"))


def test_energy_counter_reset_at_midnight_keeps_counting_the_cycle() -> None:
    settings = HotWaterSettings(daily_kwh=5.0)  # deadline 06:00 (window end)

    def inputs(local: datetime.datetime, state: HotWaterState) -> HotWaterInputs:
        today_start = datetime.datetime.combine(local.date(), T(0))
        hours_today = (local - max(today_start, dt(0, "20:00"))).total_seconds() / 3600.0
        return HotWaterInputs(heater_energy_today_kwh=max(0.0, hours_today))  # 1 kW from 20:00 on

    state, _ = run_day(settings, 0, inputs, start="20:00", hours=6.0)
    # 20:00-00:00 counted (less the minute the counter never reported before its reset), the counter reset
    # at midnight, 00:00-02:00 counted on: 6 kWh, met at 01:00
    assert math.isclose(state.cycle_kwh, 6.0 - 1 / 60, abs_tol=1e-6)
    assert state.goal_met in ("5.0 kWh delivered by 01:01", "5.0 kWh delivered by 01:02")  # float sums


def flat_forecast(day: int, pv_w: float) -> Forecast:
    """A forecast of pv_w from 06:00 to 18:00 of the day."""
    return Forecast(((utc(dt(day, "06:00")), pv_w), (utc(dt(day, "18:00")), pv_w),
                     (utc(dt(day, "18:01")), 0.0)), utc(dt(day, "05:20")))


@pytest.mark.parametrize(
    ("name", "inputs", "topup", "kwh", "says"),
    [
        ("forecast closes the gap", HotWaterInputs(forecast=flat_forecast(0, 3000.0), soc_pct=100.0),
         False, 0.0, "PV should make it"),
        ("grey forecast: gap minus PV", HotWaterInputs(forecast=flat_forecast(0, 1000.0), soc_pct=100.0),
         True, 4.0 - (0.7 * 3.0 - 0.75), "forecast 3.0 kWh"),
        ("battery still needs the PV", HotWaterInputs(forecast=flat_forecast(0, 3000.0), soc_pct=50.0),
         True, 4.0 - (0.7 * 9.0 - 0.75 - 2.4), "battery 2.4 kWh"),
        ("no forecast: the morning scaled by the sun", HotWaterInputs(pv_energy_today_kwh=2.0, soc_pct=100.0),
         True, None, "of the day's sun still to come"),
    ],
)
def test_decision_estimates_pv_and_plans_kwh(name, inputs, topup, kwh, says) -> None:
    settings = HotWaterSettings(daily_kwh=4.0, topup_enabled=True, latitude_deg=48.0, longitude_deg=0.0)
    local = dt(0, "15:00")
    state = HotWaterState(cycle=cycle_at(settings, local))
    plan = decide_topup(settings, state, inputs, None, cycle_at(settings, local), local, utc(local))
    assert plan.topup is topup
    assert says in plan.reason and "gap 4.0 kWh" in plan.reason
    if kwh is not None:
        assert plan.kwh == pytest.approx(kwh, abs=0.05)
        assert f"top-up {plan.kwh:.1f} kWh" in plan.reason or not topup


def test_sun_estimate_is_plausible_for_a_june_afternoon() -> None:
    share, hours_left = sun_still_to_come(utc(dt(0, "15:00")), 48.0, 0.0)
    # 15:00 solar time in June at 48 N: roughly a quarter of the day's sun is still to come, ~5 h of it
    assert 0.15 < share < 0.35 and 4.0 < hours_left < 6.0
    assert sun_still_to_come(utc(dt(0, "23:00")), 48.0, 0.0) is None
    kwh, how = estimate_pv_for_heater(HotWaterSettings(), HotWaterInputs(pv_energy_today_kwh=10.0), utc(dt(0, "15:00")))
    assert kwh == 0.0 and "no site location" in how


def gap_day_inputs(pv_today_kwh: float, tank_full_at: str | None = None, energy: float = 0.0):
    def inputs(local: datetime.datetime, state: HotWaterState) -> HotWaterInputs:
        full = tank_full_at is not None and local >= dt(0, tank_full_at)
        return HotWaterInputs(pv_energy_today_kwh=pv_today_kwh, soc_pct=100.0, tank_full=full,
                              heater_energy_today_kwh=energy)
    return inputs


def forced_minutes(log) -> list[datetime.datetime]:
    return [local for local, advice, _ in log if advice.forced == "topup"]


def test_topup_off_by_default_never_forces_but_says_so() -> None:
    settings = HotWaterSettings(daily_kwh=4.0, latitude_deg=48.0, longitude_deg=0.0)
    _, log = run_day(settings, 0, gap_day_inputs(1.0))
    assert forced_minutes(log) == [] and all(a.force_power_w is None for _, a, _ in log)
    decisions = [e for _, a, _ in log for e in a.events if e.startswith("hot-water decision")]
    assert len(decisions) == 2 and all("top-up off, so nothing is done" in d for d in decisions)
    assert [e for _, a, _ in log for e in a.events if "goal missed" in e] == [
        "hot-water goal missed by 2026-06-02 06:00 (0.0 kWh delivered)"]


def test_topup_runs_in_the_window_when_pv_cannot_make_it_and_stops_at_window_end() -> None:
    settings = HotWaterSettings(daily_kwh=40.0, topup_enabled=True, topup_power_w=1500.0,
                                latitude_deg=48.0, longitude_deg=0.0)
    _, log = run_day(settings, 0, gap_day_inputs(1.0))
    minutes = forced_minutes(log)
    assert minutes[0] == dt(0, "22:00") and minutes[-1] == dt(1, "05:59") and len(minutes) == 8 * 60
    assert all(a.force_power_w == 1500.0 for local, a, _ in log if local in minutes)
    events = [e for _, a, _ in log for e in a.events]
    assert any(e.startswith("hot-water decision 15:00: gap 40.0 kWh") and "top-up 12.0 kWh at 1500 W in "
               "22:00-06:00" in e for e in events)
    assert "top-up started at 22:00: 12.0 kWh planned at 1500 W" in events
    assert any(e.startswith("top-up ended: the cycle ended") for e in events)


def test_topup_stops_at_the_goal() -> None:
    settings = HotWaterSettings(daily_kwh=3.0, topup_enabled=True, latitude_deg=48.0, longitude_deg=0.0)

    def inputs(local: datetime.datetime, state: HotWaterState) -> HotWaterInputs:
        # the heater delivers 2 kW while forced; a day counter that resets at midnight
        return HotWaterInputs(pv_energy_today_kwh=1.0, soc_pct=100.0,
                              heater_energy_today_kwh=_minutes.get(local.date(), 0) * 2000.0 / 60000.0)

    _minutes: dict[datetime.date, int] = {}
    state = HotWaterState()
    t0 = dt(0, "06:00")
    log = []
    for i in range(24 * 60):
        local = t0 + datetime.timedelta(minutes=i)
        state, advice = step(state, settings, inputs(local, state), i * 60.0, local, utc(local))
        log.append((local, advice, state))
        if advice.force_power_w:
            assert advice.force_power_w == 2000.0
            _minutes[local.date()] = _minutes.get(local.date(), 0) + 1
    minutes = forced_minutes(log)
    assert minutes[0] == dt(0, "22:00") and len(minutes) == 90  # 3 kWh at 2 kW
    events = [e for _, a, _ in log for e in a.events]
    assert "hot-water goal met: 3.0 kWh delivered by 23:30" in events
    assert "top-up ended: goal met, 3.0 kWh delivered" in events


def test_topup_stops_at_tank_full_and_does_not_restart() -> None:
    settings = HotWaterSettings(daily_kwh=40.0, topup_enabled=True, latitude_deg=48.0, longitude_deg=0.0)

    def inputs(local: datetime.datetime, state: HotWaterState) -> HotWaterInputs:
        full = dt(0, "23:10") <= local < dt(0, "23:20")  # the thermostat opens for 10 minutes
        return HotWaterInputs(pv_energy_today_kwh=1.0, soc_pct=100.0, tank_full=full)

    _, log = run_day(settings, 0, inputs)
    minutes = forced_minutes(log)
    assert minutes[0] == dt(0, "22:00") and minutes[-1] == dt(0, "23:09")
    events = [e for _, a, _ in log for e in a.events]
    # tank full is the goal met: the top-up ends and does not come back when the thermostat closes
    assert "hot-water goal met: tank full at 23:10" in events
    assert "top-up ended: goal met, 0.0 kWh delivered" in events


def test_topup_ends_when_the_clock_is_no_longer_trusted() -> None:
    settings = HotWaterSettings(daily_kwh=40.0, topup_enabled=True, latitude_deg=48.0, longitude_deg=0.0)
    state, log = run_day(settings, 0, gap_day_inputs(1.0), hours=17.0)  # to 23:00, in the top-up
    assert log[-1][1].forced == "topup"
    state, advice = step(state, settings, HotWaterInputs(), 1e6, None, None)
    assert advice.force_power_w is None and advice.forced is None
    assert advice.events == ("top-up ended: the clock is not trusted, 0.0 kWh delivered",)


def test_topup_needs_auto_mode_and_a_grid() -> None:
    settings = HotWaterSettings(daily_kwh=40.0, topup_enabled=True, latitude_deg=48.0, longitude_deg=0.0)
    _, log = run_day(settings, 0, gap_day_inputs(1.0), state=HotWaterState(mode="solar_only"))
    assert forced_minutes(log) == []
    assert any("mode solar_only, so no top-up" in e for _, a, _ in log for e in a.events)

    def no_grid(local: datetime.datetime, state: HotWaterState) -> HotWaterInputs:
        return replace(gap_day_inputs(1.0)(local, state), grid_available=local < dt(0, "23:00"))

    _, log = run_day(settings, 0, no_grid)
    minutes = forced_minutes(log)
    assert minutes[-1] == dt(0, "22:59")
    assert any("no grid (it would drain the battery)" in e for _, a, _ in log for e in a.events)


def test_topup_just_before_the_goal_time() -> None:
    settings = HotWaterSettings(goal_time=T(18), daily_kwh=5.0, topup_enabled=True, topup_start=T(16),
                                topup_end=T(18), latitude_deg=48.0, longitude_deg=0.0)
    _, log = run_day(settings, 0, gap_day_inputs(0.5, energy=1.0), start="00:00")
    minutes = forced_minutes(log)
    assert minutes[0] == dt(0, "16:00") and minutes[-1] == dt(0, "17:59")
    events = [e for _, a, _ in log for e in a.events]
    assert any(e.startswith("top-up ended: the cycle ended") for e in events)


def test_no_topup_when_pv_already_met_the_goal() -> None:
    settings = HotWaterSettings(daily_kwh=4.0, topup_enabled=True, latitude_deg=48.0, longitude_deg=0.0)
    _, log = run_day(settings, 0, gap_day_inputs(20.0, tank_full_at="13:00"))
    assert forced_minutes(log) == []
    decisions = [e for _, a, _ in log for e in a.events if e.startswith("hot-water decision")]
    assert decisions and all("goal met (tank full at 13:00): no top-up" in d for d in decisions)


def test_everything_off_is_exactly_the_surplus_controller() -> None:
    """With the defaults the advice is always allow, no force, full power: today's behaviour."""
    settings = HotWaterSettings.from_config(config_from_dict({}))
    _, log = run_day(settings, 0, lambda local, s: HotWaterInputs(tank_full=local.hour == 14,
                                                                  heater_energy_today_kwh=local.hour / 2))
    assert {(a.allow_heat, a.force_power_w, a.max_power_w, a.events) for _, a, _ in log} == {(True, None, 2000.0, ())}


# --- three weeks in simulated time -----------------------------------------------------------------


@dataclass
class Tank:
    """A well-mixed tank with an element, standing losses, a thermostat and draw-offs (tests only)."""

    volume_l: float = 150.0
    temp_c: float = 45.0
    thermostat_c: float = 65.0
    thermostat_hyst_k: float = 7.0
    open_: bool = False
    energy_today_kwh: float = 0.0
    grid_kwh: float = 0.0
    log: list = field(default_factory=list)

    def step(self, heater_w: float, forced: bool, dt_s: float, draw_l: float) -> None:
        if self.temp_c >= self.thermostat_c:
            self.open_ = True
        elif self.temp_c <= self.thermostat_c - self.thermostat_hyst_k:
            self.open_ = False
        power_w = 0.0 if self.open_ else heater_w
        kwh = power_w * dt_s / 3.6e6
        self.energy_today_kwh += kwh
        if forced:
            self.grid_kwh += kwh
        loss_kwh = 2.0 * (self.temp_c - 20.0) * dt_s / 3.6e6
        self.temp_c += (kwh - loss_kwh) / (self.volume_l * WATER_KWH_PER_L_K)
        if draw_l:
            self.temp_c = (self.temp_c * (self.volume_l - draw_l) + 12.0 * draw_l) / self.volume_l


def surplus_w(local: datetime.datetime, peak_w: float) -> float:
    """PV left after house and battery: a sine from 08:00 to 18:00."""
    hours = local.hour + local.minute / 60.0
    if not 8.0 <= hours <= 18.0:
        return 0.0
    return peak_w * math.sin(math.pi * (hours - 8.0) / 10.0)


def run_weeks(settings: HotWaterSettings, peaks_w: list[float], step_s: float = 60.0) -> dict:
    """Simulate len(peaks_w) days; returns per-day facts and the event log."""
    tank = Tank()
    state = HotWaterState()
    days: dict[int, dict] = {d: {"forced": [], "max_c": 0.0, "topup_kwh": 0.0} for d in range(len(peaks_w))}
    events: list[tuple[datetime.datetime, str]] = []
    pv_today = 0.0
    for i in range(int(len(peaks_w) * 86400 / step_s)):
        now_s = i * step_s
        local = DAY0 + datetime.timedelta(seconds=now_s)
        day = (local - DAY0).days
        if local.hour == 0 and local.minute == 0:
            tank.energy_today_kwh = 0.0
            pv_today = 0.0
        surplus = surplus_w(local, peaks_w[day])
        pv_today += (surplus + 300.0 if surplus else 0.0) * step_s / 3.6e6
        inputs = HotWaterInputs(
            tank=ok(round(tank.temp_c, 1), now_s), tank_full=tank.open_,
            heater_energy_today_kwh=tank.energy_today_kwh, pv_energy_today_kwh=pv_today, soc_pct=100.0,
        )
        state, advice = step(state, settings, inputs, now_s, local, utc(local))
        events += [(local, e) for e in advice.events]
        if advice.force_power_w is not None:
            power = min(max(advice.force_power_w, surplus), advice.max_power_w)
            days[day]["forced"].append((local, advice.forced))
        elif advice.allow_heat:
            power = min(surplus, advice.max_power_w)
        else:
            power = 0.0
        before = tank.grid_kwh
        draw = 40.0 if (local.hour, local.minute) in ((7, 0), (19, 0)) else 0.0
        tank.step(power, advice.force_power_w is not None, step_s, draw)
        days[day]["topup_kwh"] += tank.grid_kwh - before
        days[day]["max_c"] = max(days[day]["max_c"], tank.temp_c)
        assert tank.temp_c < settings.max_temp_c + 0.5 if settings.sensor_enabled else True
    return {"days": days, "events": events, "state": state}


SUNNY, GREY = 2600.0, 150.0
LEGIONELLA = HotWaterSettings(**SENSOR, legionella_every_days=7, legionella_temp_c=60.0,
                              latitude_deg=48.0, longitude_deg=0.0)


def check_legionella(result: dict, every_days: int, n_days: int) -> tuple[list[int], list[datetime.date]]:
    """Forced exactly on the windows that had no hot day in every_days; returns (forced window days, hot dates)."""
    events = result["events"]
    hot = sorted({local.date() for local, line in events if line.startswith("legionella: tank hot")})
    starts = [local for local, line in events if line.startswith("legionella cycle forced")]
    assert all(local.time() == T(22) for local in starts)  # in the window, at its start
    forced = [(local.date() - DAY0.date()).days for local in starts]
    for d in range(n_days):
        window_date = DAY0.date() + datetime.timedelta(days=d)
        last = max([h for h in hot if h <= window_date] or [DAY0.date()])
        needed = (window_date - last).days >= every_days and last != window_date
        assert (d in forced) == needed, (d, last, forced)
    for local, why in ((lo, w) for f in result["days"].values() for lo, w in f["forced"]):
        assert why == "legionella" and (local.time() >= T(22) or local.time() < T(6))
    gaps = [(b - a).days for a, b in zip([DAY0.date(), *hot], hot, strict=False)]
    assert max(gaps) <= every_days + 1, gaps  # + the night a forced cycle runs into
    return forced, hot


def test_legionella_forced_only_when_no_natural_cycle_in_n_days_over_three_weeks() -> None:
    # 3 sunny days, 17 grey ones, 1 sunny: the sun heats past 60 degC on the sunny days only.
    peaks = [SUNNY] * 3 + [GREY] * 17 + [SUNNY]
    result = run_weeks(LEGIONELLA, peaks)
    forced, hot = check_legionella(result, 7, len(peaks))
    # last natural cycle on day 2 -> forced in the window of day 9, then 7 days after that one reached 60
    assert forced[0] == 9 and len(forced) == 2 and forced[1] in (16, 17)
    sunny_dates = {DAY0.date() + datetime.timedelta(days=d) for d in (0, 1, 2, 20)}
    assert sunny_dates <= set(hot)  # every sunny day counted as a natural cycle
    assert result["state"].last_60c == DAY0.date() + datetime.timedelta(days=20)
    assert not legionella_due(LEGIONELLA, result["state"], result["state"].last_60c + datetime.timedelta(days=6))


def test_legionella_never_forced_when_the_sun_does_it() -> None:
    result = run_weeks(LEGIONELLA, [SUNNY, GREY, GREY, GREY, GREY, GREY, SUNNY] * 3, step_s=120.0)
    assert all(not facts["forced"] for facts in result["days"].values())
    assert not any("legionella cycle forced" in line for _, line in result["events"])


def test_forced_legionella_ends_at_tank_full_below_60_and_says_why() -> None:
    """A thermostat set below 60 degC: the forced cycle stops at tank full and is not retried that night."""
    settings = HotWaterSettings(**SENSOR, legionella_every_days=7)
    state = HotWaterState(legionella_since=DAY0.date() - datetime.timedelta(days=10))

    def inputs(local: datetime.datetime, state: HotWaterState) -> HotWaterInputs:
        now_s = (local - DAY0).total_seconds()
        full = dt(0, "23:00") <= local < dt(0, "23:30")
        return HotWaterInputs(tank=ok(55.0 if full else 50.0, now_s), tank_full=full)

    _, log = run_day(settings, 0, inputs, state=state, start="21:00", hours=9.0)
    forced = [local for local, a, _ in log if a.forced == "legionella"]
    assert forced[0] == dt(0, "22:00") and forced[-1] == dt(0, "22:59")
    events = [e for _, a, _ in log for e in a.events]
    assert ("legionella cycle ended: tank full at 55.0 degC (is the thermostat set below 60?), 0.0 kWh delivered"
            in events)
    assert all(a.force_power_w == 2000.0 for _, a, _ in log if a.forced)


def test_legionella_with_a_thermostat_at_60_and_no_sensor_counts_tank_full() -> None:
    settings = HotWaterSettings(legionella_every_days=3, thermostat_at_least_60=True)
    peaks = [SUNNY] + [GREY] * 9
    result = run_weeks(settings, peaks)
    forced, _ = check_legionella(result, 3, len(peaks))
    assert len(forced) >= 2 and forced[0] == 3
    ends = [line for _, line in result["events"] if line.startswith("legionella cycle ended")]
    assert len(ends) == len(forced) and all("reached the legionella temperature" in line for line in ends)


def test_daily_goal_with_topup_over_three_weeks_hot_every_morning() -> None:
    """daily_kwh with a night top-up: met every cycle; grid only after days PV could not do it."""
    settings = HotWaterSettings(**SENSOR, daily_kwh=3.0, topup_enabled=True, latitude_deg=48.0,
                                longitude_deg=0.0)
    peaks = ([SUNNY] * 3 + [GREY] * 2 + [1200.0] * 2) * 3
    result = run_weeks(settings, peaks, step_s=120.0)
    events = [line for _, line in result["events"]]
    assert not any("goal missed" in line for line in events[1:])  # the first, partial cycle may miss
    for d, facts in result["days"].items():
        grid = facts["topup_kwh"]
        if peaks[d] == SUNNY and d > 0:  # day 0 starts at midnight in a cycle with nothing counted yet
            assert grid == 0.0, d
        if peaks[d] == GREY and d > 0:
            assert grid > 1.0, d
    # the same weeks with the top-up off: never a kWh from the grid, and the grey days are reported
    off = run_weeks(replace(settings, topup_enabled=False), peaks, step_s=120.0)
    assert all(f["topup_kwh"] == 0.0 and not f["forced"] for f in off["days"].values())
    assert sum("goal missed" in line for _, line in off["events"]) >= 6


# --- config ----------------------------------------------------------------------------------------


def test_settings_from_the_shipped_defaults_are_all_off() -> None:
    s = HotWaterSettings.from_config(config_from_dict({}))
    assert (s.topup_enabled, s.legionella_every_days, s.sensor_enabled, s.goal_configured) == (
        False, None, False, False)
    assert (s.topup_start, s.topup_end, s.decision_time) == (T(22), T(6), T(15))


def test_settings_from_config() -> None:
    cfg = config_from_dict({
        "heater": {"max_power_w": 3000},
        "tank_sensor": {"enabled": True, "max_temp_c": 62, "read_interval_s": 20},
        "hot_water": {"goal_time": "07:00", "daily_kwh": 4, "topup": {"enabled": True, "power_w": 1500},
                      "legionella": {"every_days": 7}},
    })
    s = HotWaterSettings.from_config(cfg)
    assert (s.element_power_w, s.max_temp_c, s.sensor_stale_after_s, s.goal_time, s.topup_w,
            s.legionella_every_days) == (3000.0, 62.0, 60.0, T(7), 1500.0, 7)
    assert HotWaterSettings.from_config(config_from_dict({"hot_water": {"legionella": {"every_days": 0}}})) \
        .legionella_every_days is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hot_water": {"goal_time": "25:00"}}, "hot_water.goal_time: expected a time HH:MM"),
        ({"hot_water": {"topup": {"window": "22-06"}}}, "hot_water.topup.window: expected a window HH:MM-HH:MM"),
        ({"hot_water": {"topup": {"window": "22:00-22:00"}}}, "different start and end"),
        ({"hot_water": {"goal_time": "18:00", "topup": {"enabled": True}}},
         "hot_water.topup.window: must lie between hot_water.decision_time and the goal's deadline "
         "(15:00 .. 18:00), got 22:00-06:00"),
        ({"hot_water": {"decision_time": "06:00", "topup": {"enabled": True}}},
         "hot_water.decision_time: must differ from the goal's deadline 06:00"),
        ({"hot_water": {"mode": "boost"}}, "hot_water.mode: expected one of auto, solar_only, off"),
        ({"hot_water": {"legionella": {"every_days": 7}}}, "hot_water.legionella.every_days: needs tank_sensor"),
        ({"hot_water": {"goal_temp_c": 50}}, "hot_water.goal_temp_c: needs tank_sensor.enabled"),
        ({"tank_sensor": {"enabled": True, "max_temp_c": 55}, "hot_water": {"legionella": {"every_days": 7}}},
         "hot_water.legionella.temp_c: must not exceed tank_sensor.max_temp_c"),
        ({"tank_sensor": {"id": "28-xyz"}}, "tank_sensor.id: expected a 1-wire id"),
        ({"tank_sensor": {"max_temp_c": 99}}, "tank_sensor.max_temp_c: expected a number from 30.0 to 95.0"),
    ],
)
def test_config_errors_are_one_line_naming_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_good_hot_water_configs_load() -> None:
    for data in (
        {"hot_water": {"goal_time": "18:00", "topup": {"enabled": True, "window": "16:00-18:00"}}},
        {"hot_water": {"goal_time": "07:00", "daily_kwh": 5, "topup": {"enabled": True}}},
        {"tank_sensor": {"enabled": True, "id": "28-0000061a2b3c"},
         "hot_water": {"legionella": {"every_days": 7}, "goal_temp_c": 55}},
        {"hot_water": {"legionella": {"every_days": 7, "thermostat_at_least_60": True}}},
    ):
        config_from_dict(data)


def test_a_tank_already_full_when_the_cycle_begins_is_not_its_goal_until_it_closes_and_opens_again() -> None:
    """Full at 17:00 across the 18:00 deadline: the ending cycle is not missed, the new one is not met by that level;
    the thermostat closes at 20:00 (showers) and opens again at 13:00 the next day: met then."""
    settings = HotWaterSettings(goal_time=T(18))

    def inputs(local: datetime.datetime, state: HotWaterState) -> HotWaterInputs:
        full = dt(0, "17:00") <= local < dt(0, "20:00") or local >= dt(1, "13:00")
        return HotWaterInputs(tank_full=full)

    _, log = run_day(settings, 0, inputs, start="16:00", hours=22.0)
    events = [(local, e) for local, a, _ in log for e in a.events]
    assert [e for _, e in events if "missed" in e] == []
    met = [(local, e) for local, e in events if e.startswith("hot-water goal met")]
    assert met == [(dt(0, "17:00"), "hot-water goal met: tank full at 17:00"),
                   (dt(1, "13:00"), "hot-water goal met: tank full at 13:00")]


def test_a_tank_full_last_evening_does_not_meet_todays_goal() -> None:
    """Full at 18:21 just after yesterday's deadline, then the showers: today's decision still plans a top-up."""
    settings = HotWaterSettings(goal_time=T(18), topup_enabled=True, topup_start=T(14), topup_end=T(18),
                                decision_time=T(14))

    def inputs(local: datetime.datetime, state: HotWaterState) -> HotWaterInputs:
        full = dt(0, "18:21") <= local < dt(0, "19:30")  # the evening shower closes the thermostat again
        return HotWaterInputs(pv_energy_today_kwh=1.0, soc_pct=100.0, tank_full=full)

    _, log = run_day(settings, 0, inputs, start="18:01", hours=23.0)
    events = [e for _, a, _ in log for e in a.events]
    assert not any(e.startswith("hot-water goal met") for e in events), events
    assert forced_minutes(log) and forced_minutes(log)[0] == dt(1, "14:00")

"""The relay guard, table-driven and in simulated time: confirmation, min on/off, switch limit, safety."""

from __future__ import annotations

import datetime
import math
import random
from collections.abc import Callable
from dataclasses import FrozenInstanceError, replace

import pytest

from pvheater.config import Config, ControlConfig, RelayConfig
from pvheater.control.guard import (
    SWITCH_WINDOW_S,
    GuardSettings,
    GuardState,
    force_off,
    in_window,
    recent_edges,
    step,
)
from pvheater.control.measurements import Measurements
from pvheater.control.messages import SAFE_OFF, HeaterOutput, HeatRequest

S = GuardSettings(
    stale_after_s=5.0,
    confirm_samples=3,
    min_on_s=60.0,
    min_off_s=120.0,
    max_switches_per_hour=6,
    min_soc_pct=95.0,
    soc_hysteresis_pct=2.0,
)
NOON = datetime.time(12, 0)
WANT = HeatRequest(True, 800.0, "surplus")
IDLE = HeatRequest(False, 0.0, "no surplus")


def meas(t: float, *, soc: float | None = 98.0, grid: float | None = 0.0, battery: float | None = 0.0) -> Measurements:
    return Measurements(time_s=t, values={"battery_soc_pct": soc, "grid_l1_w": grid, "battery_power_w": battery})


def switch_on(settings: GuardSettings = S, t0: float = 0.0, state: GuardState | None = None) -> GuardState:
    """Feed confirm_samples wanting samples one second apart; return the state with the relay on."""
    state = GuardState() if state is None else state
    out = SAFE_OFF
    for i in range(settings.confirm_samples):
        state, out = step(state, WANT, meas(t0 + i), settings, t0 + i, NOON)
    assert out.relay_on, out.reason
    return state


# --- start, shutdown -----------------------------------------------------------


def test_start_state_is_off() -> None:
    assert GuardState().relay_on is False
    assert GuardState.start(10.0).relay_on is False
    assert HeaterOutput(relay_on=False, power_w=0.0, reason="safe off") == SAFE_OFF
    with pytest.raises(FrozenInstanceError):
        GuardState().relay_on = True  # type: ignore[misc]


def test_force_off_records_the_edge() -> None:
    state = force_off(switch_on(), 10.0)
    assert state.relay_on is False and state.switch_times_s == (2.0, 10.0) and state.changed_s == 10.0
    assert force_off(state, 11.0) == state  # already off: nothing to record
    state, out = step(state, WANT, meas(20.0), S, 20.0, NOON)
    assert not out.relay_on  # min_off_s counts from the forced off


def test_settings_from_config() -> None:
    config = Config(
        relay=RelayConfig(min_on_s=30.0, confirm_samples=4, window_start="22:30", window_end="06:00"),
        control=ControlConfig(min_soc_pct=90.0, soc_hysteresis_pct=3.0),
    )
    settings = GuardSettings.from_config(config)
    assert settings.min_on_s == 30.0
    assert settings.confirm_samples == 4
    assert settings.window_start == datetime.time(22, 30)
    assert settings.window_end == datetime.time(6, 0)
    assert (settings.min_soc_pct, settings.soc_hysteresis_pct) == (90.0, 3.0)
    assert GuardSettings.from_config(Config()).has_window is False


# --- confirmation ----------------------------------------------------------------


def test_needs_confirm_samples_distinct_samples() -> None:
    state = GuardState()
    reasons = []
    for t in (0.0, 1.0, 2.0):
        state, out = step(state, WANT, meas(t), S, t, NOON)
        reasons.append(out.reason)
    assert reasons[:2] == ["waiting 1/3 samples", "waiting 2/3 samples"]
    assert out.relay_on and out.power_w == 800.0
    assert state.switch_times_s == (2.0,)


def test_repeated_identical_sample_does_not_count() -> None:
    state = GuardState()
    m = meas(0.0)
    for now in (0.0, 1.0, 2.0, 3.0, 4.0):  # the same sample, still fresh, seen five times
        state, out = step(state, WANT, m, S, now, NOON)
        assert not out.relay_on
        assert out.reason == "waiting 1/3 samples"
    state, out = step(state, WANT, meas(4.5), S, 4.5, NOON)
    assert out.reason == "waiting 2/3 samples"


def test_older_sample_does_not_count() -> None:
    state = GuardState()
    state, _ = step(state, WANT, meas(5.0), S, 5.0, NOON)
    state, out = step(state, WANT, meas(4.0), S, 6.0, NOON)  # out of order
    assert out.reason == "waiting 1/3 samples"


@pytest.mark.parametrize(
    ("interruption", "now_offset"),
    [
        ((IDLE, meas(2.0)), 0.0),  # the controller did not want heat once
        ((WANT, meas(2.0, soc=80.0)), 0.0),  # SoC too low once
        ((WANT, None), 0.0),  # no data once
        ((WANT, meas(-10.0)), 0.0),  # stale once
    ],
)
def test_any_failing_sample_restarts_the_count(interruption: tuple, now_offset: float) -> None:
    state = GuardState()
    for t in (0.0, 1.0):
        state, _ = step(state, WANT, meas(t), S, t, NOON)
    request, m = interruption
    state, out = step(state, request, m, S, 2.0 + now_offset, NOON)
    assert not out.relay_on
    for t in (3.0, 4.0):
        state, out = step(state, WANT, meas(t), S, t, NOON)
        assert not out.relay_on
    state, out = step(state, WANT, meas(5.0), S, 5.0, NOON)
    assert out.relay_on


# --- power -------------------------------------------------------------------------


@pytest.mark.parametrize(("requested_w", "expected_w"), [(800.0, 800.0), (0.0, 0.0), (-150.0, 0.0)])
def test_power_clipped_at_zero_when_on(requested_w: float, expected_w: float) -> None:
    state = switch_on()
    _, out = step(state, HeatRequest(True, requested_w), meas(3.0), S, 3.0, NOON)
    assert out.relay_on and out.power_w == expected_w


def test_power_zero_whenever_relay_off() -> None:
    state = GuardState()
    for t in (0.0, 1.0):
        state, out = step(state, HeatRequest(True, 1500.0), meas(t), S, t, NOON)
        assert out == HeaterOutput(False, 0.0, out.reason)


# --- min on / min off ----------------------------------------------------------------


def test_min_on_keeps_relay_closed_with_zero_power() -> None:
    state = switch_on()  # on at t=2
    state, out = step(state, IDLE, meas(12.0), S, 12.0, NOON)
    assert out.relay_on and out.power_w == 0.0
    assert out.reason == "min on time: 50 s left"
    state, out = step(state, WANT, meas(13.0), S, 13.0, NOON)  # the cloud passed: no switch cycle spent
    assert out.relay_on and out.power_w == 800.0
    assert state.switch_times_s == (2.0,)
    state, out = step(state, IDLE, meas(62.0), S, 62.0, NOON)  # min_on_s over: the knob goes to zero first
    assert out.relay_on and out.power_w == 0.0 and out.reason == "knob to zero before the relay opens"
    state, out = step(state, IDLE, meas(62.5), S, 62.5, NOON)  # not settled yet
    assert out.relay_on and out.power_w == 0.0
    state, out = step(state, IDLE, meas(63.0), S, 63.0, NOON)  # zero_settle_s at zero: opens at no current
    assert not out.relay_on and out.power_w == 0.0
    assert out.reason == "off: no surplus"
    assert state.switch_times_s == (2.0, 63.0) and not state.opened_loaded


def _off_at_zero() -> GuardState:
    """Relay on at 2 s, heating, then knob to zero and open at no current (63 s)."""
    state = switch_on()
    state, _ = step(state, IDLE, meas(62.0), S, 62.0, NOON)
    state, out = step(state, IDLE, meas(63.0), S, 63.0, NOON)
    assert not out.relay_on and not state.opened_loaded
    return state


def test_off_at_zero_current_needs_no_min_off() -> None:
    state = _off_at_zero()
    outs = []
    for t in range(64, 70):
        state, out = step(state, WANT, meas(float(t)), S, float(t), NOON)
        outs.append((t, out.relay_on))
    assert dict(outs)[64 + S.confirm_samples - 1]  # on as soon as confirm_samples samples want heat
    assert not dict(outs)[64 + S.confirm_samples - 2]


def test_min_off_delays_switching_on_again_after_an_off_under_load() -> None:
    state = switch_on()
    state, out = step(state, WANT, meas(62.0), S, 62.0, NOON, "GX unreachable")  # heating at 800 W: under load
    assert not out.relay_on and state.opened_loaded
    outs = []
    for t in range(63, 200):
        state, out = step(state, WANT, meas(float(t)), S, float(t), NOON)
        outs.append((t, out))
    first_on = next(t for t, out in outs if out.relay_on)
    assert first_on == 62 + 120
    assert dict(outs)[100].reason == "min off time: 82 s left"


def test_aging_data_turn_the_knob_to_zero_so_the_stale_off_breaks_no_current() -> None:
    state = switch_on()  # last sample at 2.0
    threshold = S.stale_after_s - S.zero_settle_s - S.poll_interval_s
    state, out = step(state, WANT, meas(2.0), S, 2.0 + threshold, NOON)  # exactly at the threshold: heating
    assert out.relay_on and out.power_w == 800.0
    state, out = step(state, WANT, meas(2.0), S, 3.0 + threshold, NOON)  # older: knob to zero, relay on
    assert out.relay_on and out.power_w == 0.0 and "knob to zero before the stale off" in out.reason
    state, out = step(state, WANT, meas(2.0), S, 2.0 + S.stale_after_s + 0.5, NOON)  # stale: off at once
    assert not out.relay_on and out.reason.startswith("stale data")
    assert not state.opened_loaded  # the knob sat at zero: heating resumes without min_off_s
    t0 = 30.0
    for i in range(S.confirm_samples):
        state, out = step(state, WANT, meas(t0 + i), S, t0 + i, NOON)
    assert out.relay_on and out.power_w == 800.0


def test_start_with_now_applies_min_off_from_start() -> None:
    state = GuardState.start(0.0)
    for t in range(0, 121):
        state, out = step(state, WANT, meas(float(t)), S, float(t), NOON)
        assert out.relay_on is (t >= 120)
    assert state.switch_times_s == (120.0,)  # the start is no switching


# --- safety: off at once, whatever min_on_s says ----------------------------------------


@pytest.mark.parametrize(
    ("request_", "m", "local_time", "fault", "reason"),
    [
        (WANT, meas(-4.2), NOON, None, "stale data (7.2 s old)"),
        (WANT, None, NOON, None, "no data"),
        (WANT, meas(3.0), NOON, "GX unreachable: timeout", "fault: GX unreachable: timeout"),
        (WANT, meas(3.0), NOON, "loop error: KeyError", "fault: loop error: KeyError"),
        (WANT, meas(3.0, soc=None), NOON, None, "implausible data: SoC missing"),
        (WANT, meas(3.0, soc=140.0), NOON, None, "implausible data: SoC 140.0"),
        (WANT, meas(3.0, soc=math.nan), NOON, None, "implausible data: SoC nan"),
        (WANT, meas(3.0, grid=None, battery=None), NOON, None, "implausible data: grid and battery power missing"),
        (WANT, meas(3.0, soc=94.0), NOON, None, "SoC 94 % below 95 %"),
        (HeatRequest(True, math.nan), meas(3.0), NOON, None, "invalid power request (nan)"),
        (WANT, meas(20.0), NOON, None, "data time 17.0 s in the future"),
    ],
)
def test_safety_switches_off_at_once(
    request_: HeatRequest, m: Measurements | None, local_time: datetime.time, fault: str | None, reason: str
) -> None:
    state = switch_on()  # on at t=2; min_on_s runs until 62
    state, out = step(state, request_, m, S, 3.0, local_time, fault)
    assert out == HeaterOutput(relay_on=False, power_w=0.0, reason=reason, failsafe=out.failsafe)
    assert state.switch_times_s == (2.0, 3.0)  # a safety off still counts as a switching
    assert state.relay_on is False


@pytest.mark.parametrize("missing", ["grid", "battery"])
def test_grid_or_battery_alone_is_not_enough(missing: str) -> None:
    """Issue 18: with every 32-bit register at 0x7FFFFFFF the grid was unknown and the relay stayed closed."""
    state = switch_on()
    _, out = step(state, WANT, meas(3.0, **{missing: None}), S, 3.0, NOON)
    assert not out.relay_on
    assert out.reason == f"implausible data: {missing} power missing"


def test_safety_off_is_not_blocked_by_the_switch_limit() -> None:
    settings = replace(S, max_switches_per_hour=2)
    state = switch_on(settings)  # 1 edge
    state, out = step(state, WANT, meas(3.0), settings, 10.0, NOON)  # 7 s old: stale
    assert not out.relay_on
    assert len(recent_edges(state, 10.0)) == 2
    # the hour is full now: no on until the first edge leaves it
    for t in (1000.0, 1001.0, 1002.0):
        state, out = step(state, WANT, meas(t), settings, t, NOON)
    assert not out.relay_on
    assert out.reason.startswith("switch limit 2/h reached")


def test_data_exactly_stale_after_s_old_is_fresh() -> None:
    state = switch_on()
    _, out = step(state, WANT, meas(0.0), S, 5.0, NOON)
    assert out.relay_on
    _, out = step(state, WANT, meas(0.0), S, 5.01, NOON)
    assert not out.relay_on and out.reason == "stale data (5.0 s old)"


# --- switch limit over a sliding hour ------------------------------------------------------


def simulate(
    settings: GuardSettings,
    wants: Callable[[float], bool],
    duration_s: int,
    soc: Callable[[float], float] = lambda t: 98.0,
) -> tuple[list[tuple[float, bool]], list[tuple[float, HeaterOutput]]]:
    """Step once a second with a fresh sample; return the relay edges and every output."""
    state = GuardState()
    edges: list[tuple[float, bool]] = []
    outs: list[tuple[float, HeaterOutput]] = []
    for t in range(duration_s):
        now = float(t)
        request = WANT if wants(now) else IDLE
        was_on = state.relay_on
        state, out = step(state, request, meas(now, soc=soc(now)), settings, now, NOON)
        if out.relay_on != was_on:
            edges.append((now, out.relay_on))
        if not out.relay_on:
            assert out.power_w == 0.0
        outs.append((now, out))
    return edges, outs


def max_edges_in_any_hour(edges: list[tuple[float, bool]]) -> int:
    times = [t for t, _ in edges]
    return max((sum(1 for u in times if t - SWITCH_WINDOW_S < u <= t) for t in times), default=0)


def test_switch_limit_over_a_sliding_hour() -> None:
    # The controller flaps: wants heat 2 minutes, then not for 2 minutes, forever.
    edges, outs = simulate(S, lambda t: (t // 120) % 2 == 0, 3 * 3600)
    assert max_edges_in_any_hour(edges) <= 6
    assert any(out.reason.startswith("switch limit 6/h reached") for _, out in outs)
    # On and off alternate, starting with on; six edges in the first hour, then it waits.
    assert [on for _, on in edges] == [True, False] * (len(edges) // 2) + [True] * (len(edges) % 2)
    first_hour = [t for t, _ in edges if t < 3600]
    assert len(first_hour) == 6
    # The seventh edge (an on) comes once the first edge has left the hour, and only then.
    seventh = edges[6][0]
    assert seventh >= edges[0][0] + 3600
    assert seventh <= edges[0][0] + 3600 + 240  # at the next moment the controller wants heat again


def test_switch_limit_reason_says_when_there_is_room() -> None:
    settings = replace(S, min_on_s=0.0, min_off_s=0.0, confirm_samples=2, max_switches_per_hour=4)
    state = GuardState(switch_times_s=(100.0, 200.0, 300.0))  # 3 edges: on, off, on ... now off
    state, out = step(state, WANT, meas(400.0), settings, 400.0, NOON)
    state, out = step(state, WANT, meas(401.0), settings, 401.0, NOON)
    assert not out.relay_on
    assert out.reason == "switch limit 4/h reached (room again in 3299 s)"  # when the edge at 100 leaves
    state, out = step(state, WANT, meas(3700.5), settings, 3700.5, NOON)
    assert out.relay_on


def test_switch_limit_of_one_never_closes() -> None:
    settings = replace(S, max_switches_per_hour=1)
    edges, outs = simulate(settings, lambda t: True, 600)
    assert edges == []
    assert outs[-1][1].reason == "switch limit 1/h leaves no room for an on and its off"


# --- SoC hysteresis ------------------------------------------------------------------------


def test_soc_hysteresis() -> None:
    # SoC at start 96 (>= min 95 but < 97), then 97, then dips, then recovers.
    timeline = [(0, 96.0), (10, 97.0), (100, 95.5), (200, 94.9), (300, 96.0), (400, 97.0)]

    def soc(t: float) -> float:
        return [s for start, s in timeline if start <= t][-1]

    edges, outs = simulate(S, lambda t: True, 600, soc)
    reasons = dict(outs)
    assert reasons[5.0].reason == "SoC 96 % below 97 %"  # the gate starts closed: needs min + hysteresis
    assert edges[0] == (12.0, True)  # 97 % at 10, 11, 12: three samples
    assert reasons[150.0].relay_on  # 95.5 % is still >= 95 once heating
    assert edges[1] == (200.0, False)  # 94.9 %: off at once
    assert reasons[200.0].reason == "SoC 94.9 % below 95 %"
    assert reasons[350.0].reason == "SoC 96 % below 97 %"  # after a low-SoC stop only above min + hysteresis
    assert edges[2] == (402.0, True)


def test_soc_drop_during_min_on_switches_off_at_once() -> None:
    state = switch_on()
    state, out = step(state, WANT, meas(5.0, soc=90.0), S, 5.0, NOON)
    assert not out.relay_on and state.switch_times_s == (2.0, 5.0)


# --- time window -----------------------------------------------------------------------------


def hm(text: str) -> datetime.time:
    return datetime.time.fromisoformat(text)


@pytest.mark.parametrize(
    ("start", "end", "now", "inside"),
    [
        ("09:00", "17:00", "08:59", False),
        ("09:00", "17:00", "09:00", True),
        ("09:00", "17:00", "16:59", True),
        ("09:00", "17:00", "17:00", False),
        ("22:00", "06:00", "23:30", True),  # across midnight
        ("22:00", "06:00", "00:00", True),
        ("22:00", "06:00", "05:59", True),
        ("22:00", "06:00", "06:00", False),
        ("22:00", "06:00", "12:00", False),
        ("22:00", "06:00", "21:59", False),
        ("10:00", None, "09:59", False),  # only a start
        ("10:00", None, "23:59", True),
        (None, "15:00", "00:00", True),  # only an end
        (None, "15:00", "15:00", False),
        ("12:00", "12:00", "12:00", False),  # empty window
    ],
)
def test_in_window(start: str | None, end: str | None, now: str, inside: bool) -> None:
    assert in_window(hm(now), start and hm(start), end and hm(end)) is inside


def test_leaving_the_window_switches_off_at_once() -> None:
    settings = replace(S, window_start=hm("09:00"), window_end=hm("17:00"))
    state = GuardState()
    for t in (0.0, 1.0, 2.0):
        state, out = step(state, WANT, meas(t), settings, t, hm("16:59"))
    assert out.relay_on
    state, out = step(state, WANT, meas(3.0), settings, 3.0, hm("17:00"))
    assert out == HeaterOutput(False, 0.0, "outside time window 09:00-17:00")


def test_window_across_midnight_heats_at_night() -> None:
    settings = replace(S, window_start=hm("22:00"), window_end=hm("06:00"))
    state = GuardState()
    for t in (0.0, 1.0, 2.0):
        state, out = step(state, WANT, meas(t), settings, t, hm("00:30"))
    assert out.relay_on
    state, out = step(state, WANT, meas(3.0), settings, 3.0, hm("12:00"))
    assert not out.relay_on


def test_untrusted_clock_with_a_window_means_no_heating() -> None:
    settings = replace(S, window_start=hm("09:00"), window_end=hm("17:00"))
    state = GuardState()
    for t in (0.0, 1.0, 2.0, 3.0):
        state, out = step(state, WANT, meas(t), settings, t, None)
        assert out == HeaterOutput(False, 0.0, "clock not trusted: time window cannot be checked")


def test_untrusted_clock_without_a_window_is_fine() -> None:
    state = GuardState()
    for t in (0.0, 1.0, 2.0):
        state, out = step(state, WANT, meas(t), S, t, None)
    assert out.relay_on


# --- random sequences: the rules hold whatever happens ---------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_invariants_under_random_inputs(seed: int) -> None:
    rng = random.Random(seed)
    settings = replace(S, min_on_s=30.0, min_off_s=45.0, max_switches_per_hour=8)
    state = GuardState()
    on_since = off_since = None
    off_loaded = True
    zero_since: float | None = None
    aging_s = max(settings.stale_after_s - settings.zero_settle_s - settings.poll_interval_s,
                  settings.stale_after_s / 2)
    edges: list[float] = []
    passing_run = 0
    last_counted: float | None = None
    wants = True
    t = 0.0
    sample_t = 0.0
    for _ in range(4 * 3600):
        t += 1.0
        if rng.random() < 0.05:
            wants = not wants
        if rng.random() < 0.9:
            sample_t = t  # a new sample; otherwise the old one is seen again
        fault = "GX unreachable" if rng.random() < 0.01 else None
        soc = 50.0 if rng.random() < 0.01 else 99.0
        m = meas(sample_t, soc=soc)
        request = HeatRequest(wants, rng.uniform(-100.0, 2500.0))
        safe = fault is None and t - sample_t <= settings.stale_after_s and soc >= settings.min_soc_pct
        # the test's own count of distinct passing samples while off
        if safe and wants:
            if last_counted is None or sample_t > last_counted:
                passing_run += 1
                last_counted = sample_t
        else:
            passing_run, last_counted = 0, None

        was_on = state.relay_on
        state, out = step(state, request, m, settings, t, NOON, fault)

        assert out.relay_on is state.relay_on
        if not out.relay_on:
            assert out.power_w == 0.0
        else:
            heating = wants and t - sample_t <= aging_s
            assert out.power_w == (max(0.0, request.power_w) if heating else 0.0)
            assert safe  # never on with unsafe inputs
        if out.relay_on and not was_on:
            assert passing_run >= settings.confirm_samples
            if off_loaded:  # min_off_s after an off that broke current
                assert off_since is None or t - off_since >= settings.min_off_s
            on_since, edges = t, [*edges, t]
            passing_run, last_counted = 0, None
        elif was_on and not out.relay_on:
            if safe:  # a normal off waits for min_on_s, and for the knob to sit at zero
                assert t - on_since >= settings.min_on_s  # type: ignore[operator]
                assert zero_since is not None and t - zero_since >= settings.zero_settle_s
            off_loaded = not (zero_since is not None and t - zero_since >= settings.zero_settle_s)
            off_since, edges = t, [*edges, t]
            passing_run, last_counted = 0, None
        if out.relay_on and out.power_w == 0.0:
            zero_since = t if zero_since is None or not was_on else zero_since
        else:
            zero_since = None
        assert sum(1 for u in edges if u > t - SWITCH_WINDOW_S) <= settings.max_switches_per_hour
    assert len(edges) > 10  # the run did exercise the relay

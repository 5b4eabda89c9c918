"""The frozen-data detector (pure)."""

from __future__ import annotations

from pvheater.control.freshness import FreshnessSettings, FreshnessState, step
from pvheater.control.measurements import Measurements

S = FreshnessSettings(frozen_after_s=20.0)


def snap(t: float, grid_w: float = -3.0, battery_a: float = 0.4, **more: float | None) -> Measurements:
    return Measurements(t, {"grid_l1_w": grid_w, "battery_current_a": battery_a, "pv_dc_w": 480.0, **more})


def run(samples: list[Measurements]) -> list[str | None]:
    state, out = FreshnessState(), []
    for m in samples:
        state, problem = step(state, m, S)
        out.append(problem)
    return out


def test_a_picture_unchanged_for_longer_than_the_bound_is_frozen() -> None:
    problems = run([snap(float(t)) for t in range(0, 25)])
    assert problems[:21] == [None] * 21  # 0..20 s unchanged: not yet
    assert all(p is not None and p.startswith("values frozen for") for p in problems[21:])


def test_any_change_of_any_fast_value_restarts_the_clock() -> None:
    samples = [snap(float(t), grid_w=-3.0 if t != 15 else -2.0) for t in range(0, 40)]
    problems = run(samples)
    assert problems[:37] == [None] * 37  # changed at 15 and back at 16: frozen only after 36 s
    assert problems[37] is not None


def test_it_recovers_when_values_move_again() -> None:
    samples = [snap(float(t)) for t in range(0, 30)] + [snap(30.0, battery_a=0.5)]
    problems = run(samples)
    assert problems[-2] is not None and problems[-1] is None


def test_the_same_snapshot_handed_in_again_is_not_a_freeze() -> None:
    """No new read (an outage): the stale check opens the relay; the detector judges only new samples."""
    assert run([snap(5.0)] * 100) == [None] * 100


def test_nothing_known_is_not_judged_and_time_going_back_restarts() -> None:
    empty = [Measurements(float(t), {"grid_l1_w": None}) for t in range(0, 40)]
    assert run(empty) == [None] * 40
    state, _ = step(FreshnessState(), snap(100.0), S)
    state, problem = step(state, snap(50.0), S)  # monotonic clock reset (tests, a restart)
    assert problem is None and state.since_s == 50.0

"""In-process runner: a strategy drives the plant through a simulated day (or a window of it).

Timing per step of ``dt_s`` (1 s for whole days), at ``now_s`` = seconds since
local midnight:

1. **GX publish** at ``start + gx_phase_s + k * gx_period_s`` (every second): the
   runner snapshots :meth:`Plant.gx_values` as a :class:`Measurements` stamped with
   ``now_s``. During a scenario's GX outage nothing is published.
2. **Decide** every ``strategy.interval_s``: the strategy gets the last published
   snapshot (``None`` before the first publish; during an outage the same,
   aging snapshot -- strategies judge staleness from ``now_s - m.time_s``), and
   the plant's truth.
3. **Step** the plant by ``dt_s`` with the actuation held.

So a strategy never sees data newer than the last publish; their age is in
[0, gx_period_s) while the GX publishes. The heater-off *baseline* is the same
day with the relay held open (no strategy, no publishing).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

from pvheater.control.measurements import Measurements
from pvheater.sim.metrics import compute_metrics
from pvheater.sim.params import Actuation
from pvheater.sim.plant import Plant
from pvheater.sim.recording import RunRecorder
from pvheater.sim.results import RunMetrics, RunResult
from pvheater.sim.scenarios import ScenarioDay, build_day
from pvheater.sim.strategy import Strategy, make_strategy

_EPS_S = 1e-6


def run_day(
    day: ScenarioDay,
    strategy: Strategy | None,
    *,
    dt_s: float = 1.0,
    start_s: float = 0.0,
    end_s: float | None = None,
    soc_pct: float | None = None,
    gx_period_s: float = 1.0,
    gx_phase_s: float = 0.0,
) -> RunResult:
    """Run a strategy (None: heater off) over [start_s, end_s) of a day; see the module doc for timing."""
    end = float(day.seconds if end_s is None else end_s)
    if not end > start_s:
        raise ValueError(f"end_s must be after start_s (got {start_s} .. {end})")
    if not 0.0 < dt_s <= 1.0:
        raise ValueError(f"dt_s must be in (0, 1] s for a run, got {dt_s}")
    plant = Plant(day, start_s=start_s, soc_pct=soc_pct)
    recorder = RunRecorder(plant)
    steps = round((end - start_s) / dt_s)
    outages = day.scenario.gx_outages_s
    wall0 = time.perf_counter()
    if strategy is None:
        _hold_heater_off(plant, recorder, steps, dt_s)
        decisions = publishes = 0
    else:
        gx = _GxClock(start_s + (gx_phase_s if gx_phase_s > 0 else gx_period_s), gx_period_s, outages)
        decisions, publishes = _drive(plant, recorder, strategy, gx, steps, start_s, dt_s)
    wall = time.perf_counter() - wall0
    return recorder.result(
        day, None if strategy is None else strategy.name, start_s=float(start_s), end_s=end, dt_s=dt_s,
        decisions=decisions, publishes=publishes, wall_s=wall, outages_s=outages,
    )


def _hold_heater_off(plant: Plant, recorder: RunRecorder, steps: int, dt_s: float) -> None:
    """The heater-off baseline: relay open, servo where it is, every step recorded."""
    off = Actuation(False, plant.servo_deg)
    step, record = plant.step, recorder.record
    for _ in range(steps):
        step(dt_s, off)
        record()


@dataclass
class _GxClock:
    """When the simulated GX publishes: every period_s from next_s, except in the outage windows."""

    next_s: float
    period_s: float
    outages_s: tuple[tuple[float, float], ...]

    def due(self, now_s: float) -> bool:
        """True when a publish falls at now_s and the GX is not out; moves on to the next publish."""
        if now_s < self.next_s - _EPS_S:
            return False
        while self.next_s <= now_s + _EPS_S:
            self.next_s += self.period_s
        outages = self.outages_s
        return not outages or not any(a <= now_s < b for a, b in outages)


def _drive(
    plant: Plant, recorder: RunRecorder, strategy: Strategy, gx: _GxClock, steps: int, start_s: float, dt_s: float,
) -> tuple[int, int]:
    """Publish, decide every strategy.interval_s on the last publish, step and record; (decisions, publishes)."""
    act = Actuation(False, plant.servo_deg)
    m: Measurements | None = None
    next_dec = start_s
    interval = strategy.interval_s
    decisions = publishes = 0
    step, record = plant.step, recorder.record
    for k in range(steps):
        now = start_s + k * dt_s
        if gx.due(now):
            m = Measurements(time_s=now, values=plant.gx_values())
            publishes += 1
        if now >= next_dec - _EPS_S:
            act = strategy.decide(now, m, plant.truth())
            decisions += 1
            while next_dec <= now + _EPS_S:
                next_dec += interval
        step(dt_s, act)
        record()
    return decisions, publishes


# --- scenario x strategy matrix ----------------------------------------------------


@functools.lru_cache(maxsize=2)  # a baseline costs ~0.1 s; keep memory small on a Pi
def _cached_baseline(scenario: str, seed: int | None, dt_s: float) -> RunResult:
    return run_day(build_day(scenario, seed), None, dt_s=dt_s)


#: One matrix cell: the metrics, and the plot drawn of the run (if any).
MatrixCell = tuple[RunMetrics, Path | None]


def _run_pair(task: tuple[str, str, int | None, float, str | None]) -> MatrixCell:
    """Worker: one scenario x strategy over a whole day against its (per-process cached) baseline; plot it."""
    scenario, strategy_name, seed, dt_s, plot_pattern = task
    day = build_day(scenario, seed)
    baseline = _cached_baseline(scenario, seed, dt_s)
    run = run_day(day, make_strategy(strategy_name, day), dt_s=dt_s)
    metrics = compute_metrics(run, baseline)
    if plot_pattern is None:
        return metrics, None
    from pvheater.sim.plot import plot_run

    path = plot_run(run, plot_pattern.format(scenario=scenario, strategy=strategy_name), metrics)
    return metrics, path


def default_jobs() -> int:
    """Worker processes for a matrix: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_matrix(
    scenarios: list[str],
    strategies: list[str],
    *,
    seed: int | None = None,
    dt_s: float = 1.0,
    jobs: int | None = None,
    plot_pattern: str | None = None,
) -> list[MatrixCell]:
    """Whole days for every scenario x strategy, in that order: (RunMetrics, plot path or None) each.

    Runs are spread over ``jobs`` processes (default: every CPU); a process reuses
    a scenario's heater-off baseline for consecutive strategies. With
    ``plot_pattern`` (e.g. ``"day-{scenario}-{strategy}.png"``) each run is drawn
    where it ran (needs matplotlib).
    """
    tasks = [(sc, st, seed, dt_s, plot_pattern) for sc in scenarios for st in strategies]
    workers = min(jobs or default_jobs(), len(tasks))
    if workers <= 1:
        return [_run_pair(t) for t in tasks]
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(workers) as pool:
        return pool.map(_run_pair, tasks, chunksize=1)

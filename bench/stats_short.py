"""Short runs of the real loop (issue 12): measured heater energy against the plant's truth in the first minutes.

Each run starts the loop fresh (no learned curve, the straight-line default calibration) at a time of day and
runs 8 simulated minutes, 1 s steps; the loop's measured heater power (pvheater.control.heater_response, the
calibration's expected power until it has one) is summed and set against the plant's heater energy.

    nice -n 10 python bench/stats_short.py
"""

from __future__ import annotations

import sys

from pvheater.sim.controller_strategy import ControllerStrategy
from pvheater.sim.day import run_day
from pvheater.sim.scenarios import build_day

SCENARIOS = ("house_steps", "clear", "clouds")
STARTS_H = (10.0, 11.0, 12.08, 13.0, 14.5)
RUN_S = 480


def one_run(scenario: str, start_h: float) -> tuple[float, float]:
    """(measured Wh, truth Wh) of one short run."""
    day = build_day(scenario)
    strategy = ControllerStrategy(day)
    loop = strategy.loop
    tick = loop.tick
    measured_wh = [0.0]

    def counting(now_s, local_time, utc_s=None):  # type: ignore[no-untyped-def]
        report = tick(now_s, local_time, utc_s)
        w = report.measured_heater_w
        if w is None:
            w = loop._expected_heater_w() if report.output.relay_on else 0.0
        measured_wh[0] += w / 3600.0
        return report

    loop.tick = counting  # type: ignore[method-assign]
    start_s = start_h * 3600.0
    run = run_day(day, strategy, start_s=start_s, end_s=start_s + RUN_S)
    return measured_wh[0], sum(run.series.heater_w) / 3600.0


def main() -> int:
    """Print one line per run and the count beyond 5 %."""
    over = 0
    for scenario in SCENARIOS:
        for start_h in STARTS_H:
            measured, truth = one_run(scenario, start_h)
            err = 100.0 * (measured - truth) / truth if truth > 1.0 else 0.0
            over += abs(err) > 5.0
            print(f"| {scenario} | {start_h:05.2f} h | {measured:.1f} | {truth:.1f} | {err:+.1f} % |", flush=True)
    print(f"{over} of {len(SCENARIOS) * len(STARTS_H)} runs beyond 5 %", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

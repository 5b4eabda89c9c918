"""Short runs of the real loop (issue 12): measured heater energy against the plant's truth in the first minutes.

Each run starts the loop fresh (no learned curve, the straight-line default calibration) at a time of day and
runs 8 simulated minutes, 1 s steps; the loop's measured heater power (pvheater.control.heater_response, the
calibration's expected power until it has one) is summed and set against the plant's heater energy. A run in
which the heater took less than 5 Wh (the battery below the SoC gate, no surplus) is listed, not judged. Then
the same on the random plants of pvheater.sim.family (5-15 minutes each, their own curves, dead zones, heater
sizes, lags and house steps), once without a calibration file and once with the table measured on the plant.

    nice -n 10 .venv/bin/python bench/stats_short.py [--out BENCHMARKS.md] [--family 100] [--jobs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import sys
import time
from pathlib import Path

from report import write_section

from pvheater.sim import family
from pvheater.sim.controller_strategy import ControllerStrategy
from pvheater.sim.day import run_day
from pvheater.sim.scenarios import build_day

SCENARIOS = ("house_steps", "clear", "clouds", "multi_mppt", "dc_feedin", "three_phase", "ac_coupled")
STARTS_H = (9.25, 10.0, 10.5, 11.0, 11.75, 12.08, 13.0, 13.5, 14.5, 15.0)
RUN_S = 480
LIMIT_PCT = 5.0
#: The limit with a calibration file (issue 12: within 2 %).
CAL_LIMIT_PCT = 2.0
MIN_TRUTH_WH = 5.0
BEGIN = "<!-- stats-short:begin (bench/stats_short.py writes this section) -->"
END = "<!-- stats-short:end -->"


def count_measured(loop, total_wh: list[float], step_s: float) -> None:  # type: ignore[no-untyped-def]
    """Wrap loop.tick so that each tick adds the loop's measured heater energy (the asked power through the
    calibration until anything is measured) over step_s to total_wh[0] -- what `stats` sums."""
    tick = loop.tick

    def counting(now_s, local_time, utc_s=None):  # type: ignore[no-untyped-def]
        report = tick(now_s, local_time, utc_s)
        w = report.measured_heater_w
        if w is None:
            w = loop._expected_heater_w() if report.output.relay_on else 0.0
        total_wh[0] += w * step_s / 3600.0
        return report

    loop.tick = counting


def one_run(scenario: str, start_h: float) -> tuple[float, float]:
    """(measured Wh, truth Wh) of one short run."""
    day = build_day(scenario)
    strategy = ControllerStrategy(day)
    measured_wh = [0.0]
    count_measured(strategy.loop, measured_wh, 1.0)
    start_s = start_h * 3600.0
    run = run_day(day, strategy, start_s=start_s, end_s=start_s + RUN_S)
    return measured_wh[0], sum(run.series.heater_w) / 3600.0


#: The family's own loop factory, wrapped per run by family_run (never the wrapped one: no nesting).
_FAMILY_LOOP = family.controller_loop


def family_run(task: tuple[int, bool]) -> tuple[int, bool, float, float, str]:
    """(seed, calibrated, measured Wh, truth Wh, the plant in a few words) of one family plant."""
    seed, calibrated = task
    spec = family.random_spec(seed)
    if not calibrated:
        spec = dataclasses.replace(spec, calibration_points=())
    total_wh = [0.0]

    def counted_loop(spec_, config=None):  # type: ignore[no-untyped-def]
        loop, source, heater = _FAMILY_LOOP(spec_, config)
        count_measured(loop, total_wh, loop.poll_interval_s)
        return loop, source, heater

    family.controller_loop = counted_loop  # this worker's own module
    run = family.run_spec(spec, "pvheater").run
    truth_wh = sum(run.series.heater_w) * family.DT_S / 3600.0
    what = f"{spec.heater_max_w:.0f} W, {spec.curve}, dead zone {spec.dead_zone_frac:.0%}, {spec.kind}"
    return seed, calibrated, total_wh[0], truth_wh, what


def family_lines(results: list[tuple[int, bool, float, float, str]], seeds: int) -> list[str]:
    """The family part of the section: per calibration the count beyond its limit, median, 90th pct, worst."""
    lines = ["", f"Family plants (seeds 0..{seeds - 1}, `pvheater.sim.family`), the same fresh start:", "",
             "| calibration | judged | beyond the limit | median error | 90th pct error | worst |",
             "|---|---:|---:|---:|---:|---|"]
    beyond: list[str] = []
    for calibrated in (False, True):
        limit = CAL_LIMIT_PCT if calibrated else LIMIT_PCT
        rows = [r for r in results if r[1] == calibrated and r[3] >= MIN_TRUTH_WH]
        errs = sorted(((100.0 * (r[2] - r[3]) / r[3], r) for r in rows), key=lambda x: abs(x[0]))
        if not errs:
            continue
        size = [abs(e) for e, _ in errs]
        worst_err, worst = errs[-1]
        name = "measured table" if calibrated else "none (straight line)"
        over = [(e, r) for e, r in errs if abs(e) > limit]
        p90 = size[min(len(size) - 1, int(0.9 * len(size)))]
        lines.append(f"| {name} | {len(errs)} | {len(over)} (> {limit:.0f} %) | {size[len(size) // 2]:.1f} % "
                     f"| {p90:.1f} % | {worst_err:+.1f} % (seed {worst[0]}) |")
        beyond += [f"seed {r[0]} ({name}) {e:+.1f} % ({r[4]})" for e, r in sorted(over)]
    if beyond:
        lines += ["", "Beyond the limit: " + "; ".join(beyond) + "."]
    return lines


def render(rows: list[tuple[str, float, float, float]], wall_s: float, command: str,
           family_results: list[tuple[int, bool, float, float, str]] | None = None, seeds: int = 0) -> str:
    """The BENCHMARKS.md section: one row per run, the count beyond the limit and the worst."""
    judged = [r for r in rows if r[3] >= MIN_TRUTH_WH]
    errors = [(r, 100.0 * (r[2] - r[3]) / r[3]) for r in judged]
    over = [e for e in errors if abs(e[1]) > LIMIT_PCT]
    worst = max(errors, key=lambda e: abs(e[1]), default=None)
    lines = [
        BEGIN, "## Measured heater energy in short runs (issue 12)", "",
        f"`{command}` ({wall_s:.0f} s): the real loop started fresh (no learned curve, the straight-line default "
        f"calibration) at each time of day, {RUN_S // 60} simulated minutes, 1 s steps; the loop's measured heater "
        "energy (what `stats` sums) against the plant's truth. Runs with less than "
        f"{MIN_TRUTH_WH:.0f} Wh of heating (the SoC gate closed) are not judged.", "",
        "| scenario | start | measured Wh | truth Wh | error |", "|---|---|---:|---:|---:|",
    ]
    for scenario, start_h, measured, truth in rows:
        err = f"{100.0 * (measured - truth) / truth:+.1f} %" if truth >= MIN_TRUTH_WH else "not judged"
        lines.append(f"| {scenario} | {start_h:05.2f} h | {measured:.1f} | {truth:.1f} | {err} |")
    lines.append("")
    if worst is not None:
        (scenario, start_h, _, _), err = worst
        lines.append(f"**{len(over)} of {len(judged)} judged runs beyond {LIMIT_PCT:.0f} %**; the worst "
                     f"{err:+.1f} % ({scenario}, {start_h:05.2f} h).")
    if family_results:
        lines += family_lines(family_results, seeds)
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every scenario at every start; print the section and write it into the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--family", type=int, default=100, help="family plants (seeds 0..N-1), each with and without "
                    "a calibration; 0: none")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    for scenario in SCENARIOS:
        for start_h in STARTS_H:
            measured, truth = one_run(scenario, start_h)
            rows.append((scenario, start_h, measured, truth))
            print(f"{scenario} {start_h:05.2f} h: {measured:.1f} / {truth:.1f} Wh", flush=True)
    tasks = [(seed, calibrated) for seed in range(args.family) for calibrated in (False, True)]
    with multiprocessing.Pool(args.jobs) as pool:
        family_results = pool.map(family_run, tasks)
    command = " ".join(["nice -n 10 .venv/bin/python bench/stats_short.py", *(sys.argv[1:] if argv is None else argv)])
    section = render(rows, time.perf_counter() - t0, command, family_results, args.family)
    print(section)
    write_section(Path(args.out), section, BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())

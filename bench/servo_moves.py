#!/usr/bin/env python3
"""Where the servo's moves go on a whole simulated day: each move with the controller's reason.

Usage (from the checkout, with pvheater installed):

    nice -n 10 python bench/servo_moves.py --scenario clouds
    python bench/servo_moves.py --scenario clouds --scenario house_steps

Runs the real loop (`pvheater` strategy, default config) over the day and
counts the commanded knob changes the way the plant counts servo moves (a
change of the commanded angle that moves the servo), then breaks them down:
by the reason of the controller's request at that tick and direction; moves
smaller than 2 degrees; reversals (direction changed) within 5 s; cuts
within 3 s of a cut (a deficit the inverter was still shedding); runs of
moves in one direction (a probe cycle is an up-run followed by a down-run).
Prints the table; writes nothing.
"""

from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import dataclass

from pvheater.sim.controller_strategy import ControllerStrategy
from pvheater.sim.day import run_day
from pvheater.sim.metrics import compute_metrics
from pvheater.sim.scenarios import build_day, scenario_names

#: Reasons grouped by their first words (the rest carries numbers).
_GROUPS = ("backing off", "house load", "PV held back again", "PV held back by the MPPT", "surplus", "holding",
           "tank full", "heater stopped drawing")


@dataclass(frozen=True)
class Move:
    """One commanded knob change: when, by how many degrees (signed), and why."""

    time_s: float
    delta_deg: float
    reason: str


def _group(reason: str) -> str:
    for g in _GROUPS:
        if reason.startswith(g):
            return g
    return reason.split(":")[0][:40] or "(none)"


def day_moves(scenario: str) -> tuple[list[Move], float, float, int]:
    """The moves of the loop on a whole day, with its capture %, draw kWh and the plant's move count."""
    day = build_day(scenario)
    strategy = ControllerStrategy(day)
    reasons: dict[str, str] = {}
    tick = strategy.loop.tick

    def recording_tick(now_s, *args, **kwargs):  # type: ignore[no-untyped-def]
        report = tick(now_s, *args, **kwargs)
        reasons["last"] = report.request.reason
        return report

    strategy.loop.tick = recording_tick  # type: ignore[method-assign]
    moves: list[Move] = []
    last_deg: list[float | None] = [None]
    decide = strategy.decide

    def recording_decide(now_s, m, truth):  # type: ignore[no-untyped-def]
        act = decide(now_s, m, truth)
        deg = act.servo_angle_deg
        if last_deg[0] is not None and abs(deg - last_deg[0]) > 1e-9:
            moves.append(Move(now_s, deg - last_deg[0], reasons.get("last", "")))
        last_deg[0] = deg
        return act

    strategy.decide = recording_decide  # type: ignore[method-assign]
    base = run_day(day, None)
    metrics = compute_metrics(run_day(day, strategy), base)
    return moves, 100 * (metrics.capture or 0.0), metrics.draw_kwh, metrics.servo_moves


def breakdown(moves: list[Move]) -> list[str]:
    """Lines of the breakdown."""
    by_reason = collections.Counter((_group(mv.reason), "up" if mv.delta_deg > 0 else "down") for mv in moves)
    small = sum(abs(mv.delta_deg) < 2.0 for mv in moves)
    reversals = trailing_cuts = trailing_small = 0
    runs: collections.Counter[tuple[str, int]] = collections.Counter()
    run_dir, run_len = "", 0
    for i, mv in enumerate(moves):
        direction = "up" if mv.delta_deg > 0 else "down"
        if i:
            prev = moves[i - 1]
            if (prev.delta_deg > 0) != (mv.delta_deg > 0) and mv.time_s - prev.time_s < 5.0:
                reversals += 1
            if mv.delta_deg < 0 and prev.delta_deg < 0 and mv.time_s - prev.time_s <= 3.0:
                trailing_cuts += 1
                trailing_small += abs(mv.delta_deg) < 3.0
        if direction != run_dir:
            if run_dir:
                runs[(run_dir, min(run_len, 6))] += 1
            run_dir, run_len = direction, 0
        run_len += 1
    if run_dir:
        runs[(run_dir, min(run_len, 6))] += 1
    lines = [f"moves smaller than 2 deg: {small}", f"reversals within 5 s: {reversals}",
             f"cuts within 3 s of a cut: {trailing_cuts} ({trailing_small} of them < 3 deg)",
             "runs of moves in one direction (direction, moves; 6 = 6 or more): "
             + ", ".join(f"{d} {n}: {c}" for (d, n), c in sorted(runs.items())),
             "by the controller's reason:"]
    lines += [f"  {group} ({direction}): {count}" for (group, direction), count in by_reason.most_common()]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the days asked for and print the breakdowns."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=scenario_names(),
                        help="scenario (repeatable; default clouds)")
    args = parser.parse_args(argv)
    for name in args.scenario or ["clouds"]:
        moves, capture, draw, counted = day_moves(name)
        print(f"{name}: capture {capture:.1f} %, draw {draw:.3f} kWh, servo moves {counted} "
              f"(knob changes seen here: {len(moves)})")
        for line in breakdown(moves):
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

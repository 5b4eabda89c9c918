#!/usr/bin/env python3
"""Issue 18 numbers: frozen-data false trips on whole simulated days, and the reader's memory under a flood.

Usage (from the checkout, with pvheater installed):

    python bench/gx_safety.py days [--jobs 2]      # every scenario, whole day, the real ControlLoop
    python bench/gx_safety.py flood --timeout 3 [--seconds 20]
    python bench/gx_safety.py report               # both (timeouts 3, 4.9, 20 s), section of BENCHMARKS.md

`days` runs each scenario's whole day in simulated time with the `pvheater`
strategy (the real ControlLoop, frozen detection on) and counts the frozen
episodes it logs (must be 0), with the longest stretch in which the
fast-moving values did not change at all (the margin to the 20 s bound).

`flood` runs a GX simulator behind the hostile proxy (pvheater/sim/hostile_gx.py),
reads normally, then floods frames with protocol ID 1 at each request for
`--seconds`, and prints the process RSS (VmRSS) before, at its peak during
the flood, and after the GX behaves again, plus whether reads recovered.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from report import write_section


def _day(name: str) -> tuple[str, int, float, int]:
    from pvheater.control import freshness
    from pvheater.sim import controller_strategy
    from pvheater.sim.day import run_day
    from pvheater.sim.scenarios import build_day
    from pvheater.sim.strategy import make_strategy

    episodes: list[str] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("GX data frozen"):
                episodes.append(record.getMessage())

    handler = Count()
    controller_strategy._QUIET.addHandler(handler)
    day = build_day(name)
    strategy = make_strategy("pvheater", day)
    longest = [0.0, None, None]  # seconds, picture, since
    decide = strategy.decide

    def watched(now_s, m, truth):  # type: ignore[no-untyped-def]
        if m is not None:
            pic = freshness.picture(m)
            if pic != longest[1]:
                longest[1], longest[2] = pic, m.time_s
            elif longest[2] is not None:
                longest[0] = max(longest[0], m.time_s - longest[2])
        return decide(now_s, m, truth)

    strategy.decide = watched  # type: ignore[method-assign]
    run = run_day(day, strategy)
    controller_strategy._QUIET.removeHandler(handler)
    return name, len(episodes), longest[0], run.relay_toggles


def days(jobs: int) -> list[str]:
    """The frozen-detection table of every scenario's whole day."""
    from pvheater.sim.scenarios import scenario_names

    names = scenario_names()
    with ProcessPoolExecutor(jobs) as pool:
        rows = list(pool.map(_day, names))
    lines = ["| scenario | frozen episodes | longest unchanged picture (s) | relay switchings |",
             "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {count} | {longest_s:.0f} | {toggles} |" for name, count, longest_s, toggles in rows]
    lines.append(f"Frozen episodes on whole days (false trips): **{sum(r[1] for r in rows)}**.")
    return lines


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def flood(timeout_s: float, seconds: float) -> str:
    """One line: RSS before, at the peak of and after a protocol-ID flood, and the recovery."""
    from pvheater.config import GxConfig, UnitIds
    from pvheater.errors import GxError
    from pvheater.reader import GxReader
    from pvheater.registers import load_register_map
    from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator
    from pvheater.sim.hostile_gx import HostileGx

    register_map = load_register_map()
    with GxSimulator(register_map, UnitIds()) as sim:
        sim.set_values(SAMPLE_VALUES)
        with HostileGx(sim.port, register_map, flood_s=timeout_s + 1.0) as gx:
            cfg = replace(GxConfig(), host="127.0.0.1", port=gx.port, timeout_s=timeout_s,
                          reconnect_min_s=0.5, reconnect_max_s=1.0)
            reader = GxReader(cfg, register_map)
            for _ in range(5):
                reader.read()
            before = _rss_kib()
            peak = [before]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.05):
                    peak[0] = max(peak[0], _rss_kib())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            gx.mode = "pid_flood"
            failed = 0
            took = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                started = time.monotonic()
                try:
                    reader.read()
                except GxError:
                    failed += 1
                took.append(time.monotonic() - started)
                time.sleep(0.5)
            gx.mode = "pass"
            recovered_after = None
            started = time.monotonic()
            while time.monotonic() - started < 30:
                try:
                    reader.read()
                    recovered_after = time.monotonic() - started
                    break
                except GxError:
                    time.sleep(0.2)
            stop.set()
            sampler.join()
            after = _rss_kib()
            reader.close()
    return (f"timeout {timeout_s:g} s: RSS before {before / 1024:.1f} MiB, peak {peak[0] / 1024:.1f} MiB "
          f"(+{(peak[0] - before) / 1024:.1f}), after {after / 1024:.1f} MiB; {failed} failed reads, "
          f"longest read {max(took):.2f} s, flood sent {gx.flooded_bytes / 1e6:.1f} MB; "
          f"recovered after {'never' if recovered_after is None else f'{recovered_after:.1f} s'}")


BEGIN, END = "<!-- gx-safety -->", "<!-- /gx-safety -->"


def report(jobs: int, out: Path) -> None:
    """Run both measurements and write them as the gx-safety section of BENCHMARKS.md."""
    lines = [BEGIN, "## A frozen or flooding GX (bench/gx_safety.py)", "",
             "Frozen-data detection (pvheater/control/freshness.py: grid, battery, consumption and PV all unchanged "
             "for more than 20 s) on each scenario's whole simulated day with the real ControlLoop, values exactly "
             "as the plant publishes them (no meter flicker added):", ""]
    lines += days(jobs)
    lines += ["", "The reader's memory under a flood of frames with protocol ID 1 (pvheater/sim/hostile_gx.py) at "
              "each request for 25 s, then the GX behaves again:", ""]
    lines += [f"- {flood(t, 25.0)}" for t in (3.0, 4.9, 20.0)]
    lines.append(END)
    section = "\n".join(lines)
    write_section(out, section, BEGIN, END)
    print(section)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    d = sub.add_parser("days")
    d.add_argument("--jobs", type=int, default=2)
    f = sub.add_parser("flood")
    f.add_argument("--timeout", type=float, default=3.0)
    f.add_argument("--seconds", type=float, default=20.0)
    r = sub.add_parser("report")
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "BENCHMARKS.md"))
    args = parser.parse_args()
    if args.what == "days":
        print("\n".join(days(args.jobs)))
    elif args.what == "flood":
        print(flood(args.timeout, args.seconds))
    else:
        report(args.jobs, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Run every scenario x strategy over a whole simulated day and write BENCHMARKS.md.

Usage (from the checkout, with pvheater installed):

    python bench/run_bench.py                 # writes ./BENCHMARKS.md
    python bench/run_bench.py --out FILE.md --jobs 2

The numbers are deterministic (seeded scenarios); only the timings depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from pvheater.sim.day import default_jobs, run_day, run_matrix
from pvheater.sim.metrics import RunMetrics, compute_metrics, format_table
from pvheater.sim.plant import PlantParams
from pvheater.sim.scenarios import SCENARIOS, build_day, scenario_names
from pvheater.sim.strategy import make_strategy, strategy_names

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    """One line about the CPU, cores and Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = os.cpu_count() or 1
    return f"{cpu}, {cores} CPU(s) ({default_jobs()} usable), {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def time_one_day(strategies: list[str], scenario: str = "clear") -> list[tuple[str, float]]:
    """Wall seconds of one 24 h day at 1 s steps, in this process: the heater-off baseline and each strategy."""
    day = build_day(scenario)
    out = [("heater off (baseline)", run_day(day, None).wall_s)]
    for name in strategies:
        out.append((name, run_day(day, make_strategy(name, day)).wall_s))
    return out


def lag_sensitivity(taus_s: tuple[float, ...] = (0.5, 1.0, 1.5)) -> list[tuple[float, RunMetrics, RunMetrics]]:
    """The original and oracle_late_1s on the clear day with other inverter lags."""
    base_day = build_day("clear")
    rows = []
    for tau in taus_s:
        params: PlantParams = replace(base_day.params, inverter=replace(base_day.params.inverter, tau_s=tau))
        day = replace(base_day, params=params)
        baseline = run_day(day, None)
        results = [compute_metrics(run_day(day, make_strategy(n, day)), baseline)
                   for n in ("original", "oracle_late_1s")]
        rows.append((tau, results[0], results[1]))
    return rows


def controller_acceptance(rows: list[RunMetrics]) -> str:
    """The controller's acceptance points (issue 4) checked on the matrix, as Markdown table rows."""
    by = {(r.scenario, r.strategy): r for r in rows}
    out = []
    for scenario in scenario_names():
        ours, orig, late2 = (by.get((scenario, n)) for n in ("pvheater", "original", "oracle_late_2s"))
        if ours is None or orig is None or late2 is None:
            continue
        limit = max(0.02 * ours.heater_kwh, 1.5 * late2.draw_kwh)
        need = {"clear": 0.95, "clouds": 0.85}.get(scenario)
        cap_ok = "" if need is None else (" ok" if (ours.capture or 0) >= need else " **missed**")
        half = orig.draw_kwh / 2
        if orig.heater_kwh == 0:
            half_text = "n/a (original never heats)"
        else:
            half_text = f"{half:.3f} {'ok' if ours.draw_kwh <= half else '**missed**'}"
        out.append(
            f"| {scenario} | {100 * (ours.capture or 0):.1f}{cap_ok} | {ours.draw_kwh:.3f} | "
            f"{limit:.3f} {'ok' if ours.draw_kwh <= limit else '**missed**'} | {half_text} | "
            f"{ours.relay_toggles} | {ours.servo_travel_deg:.0f} / {orig.servo_travel_deg:.0f} | "
            f"{ours.servo_moves} / {orig.servo_moves} |"
        )
    return "\n".join(out)


def response_times() -> list[tuple[str, str]]:
    """Simulated-time responses of the real loop (in-process): a 2 kW house step, a GX outage, SoC gating."""
    from pvheater.sim.controller_strategy import ControllerStrategy
    from pvheater.sim.scenarios import constant_day

    results = []
    step_at = 600
    day = constant_day(2600, 200, seconds=3600, initial_soc_pct=100.0)
    # the house's usual noise (as in the scenarios' profiles): a noiseless plant reads as a frozen GX and trips
    rng = random.Random(0)
    house = [w + rng.gauss(0.0, 12.0) for w in day.house_l1_w]  # a new value every second
    for i in range(step_at, len(house)):
        house[i] += 2000.0
    day = replace(day, house_l1_w=tuple(house))
    run = run_day(day, ControllerStrategy(day), end_s=step_at + 60)
    heater = run.series.heater_w
    before = heater[step_at - 1]
    cut_s = next((k - step_at + 1 for k in range(step_at, len(heater)) if heater[k] <= before - 1000), None)
    results.append(("house load +2 kW while heating: heater power cut by 1 kW after",
                    f"{cut_s} s (heater {before:.0f} W before; target <= 3 s)"))

    day = build_day("gx_outage")
    (start, end), = day.scenario.gx_outages_s
    run = run_day(day, ControllerStrategy(day))
    heater = run.series.heater_w
    off_s = next((k - int(start) for k in range(int(start), int(end)) if heater[k] == 0), None)
    back_s = next((k - int(end) for k in range(int(end), len(heater)) if heater[k] > 0), None)
    results.append(("GX outage: heater off after", f"{off_s} s (target: stale_after_s 5 + interval 1 = 6 s)"))
    results.append(("GX back: heating again after", f"{back_s} s (GX confirm samples, min off time, ramp)"))

    day = build_day("morning60")
    run = run_day(day, ControllerStrategy(day))
    soc, heater = run.series.soc_pct, run.series.heater_w
    early = max((h for s, h in zip(soc, heater, strict=True) if s < 95.0), default=0.0)
    results.append(("morning at 60 %: most heater power while SoC < 95 %", f"{early:.0f} W"))
    return results


def forecast_reserve(rows: list[RunMetrics]) -> str:
    """The forecast reserve (issue 7) against plain min_soc: the scenario pair in detail, every scenario in short."""
    from pvheater.config import Config
    from pvheater.sim.scenarios import get_scenario

    f = Config().forecast
    times = ", ".join(t.strip() for t in f.fetch_times.split(","))
    min_soc = Config().control.min_soc_pct
    recipes = [
        ("morning60_forecast_good", get_scenario("morning60_forecast_good")),
        ("morning60_forecast_over", get_scenario("morning60_forecast_over")),
        ("(morning60, forecast 30 % too high all day)",
         replace(get_scenario("morning60_forecast_good"), name="morning60_bias30", forecast_bias=0.3)),
    ]
    detail, verdicts = [], []
    for label, recipe in recipes:
        day = build_day(recipe)
        baseline = run_day(day, None)
        sunset = int(recipe.sunset_s)
        out = {}
        for name in ("pvheater", "pvheater_forecast"):
            run = run_day(day, make_strategy(name, day))
            soc = run.series.soc_pct
            full = next((k for k, v in enumerate(soc[:sunset]) if v >= 98.0), None)
            lost_kwh = sum(a - u for a, u in zip(run.series.pv_avail_w, run.series.pv_used_w, strict=True)) / 3.6e6
            noon_kwh = sum(run.series.heater_w[: 12 * 3600]) / 3.6e6
            out[name] = (compute_metrics(run, baseline), max(soc[:sunset]), soc[sunset - 1], full, lost_kwh, noon_kwh)
        plain, p_max, p_sunset, p_full, p_lost, p_noon = out["pvheater"]
        fc, f_max, f_sunset, f_full, f_lost, f_noon = out["pvheater_forecast"]

        def hhmm(k: int | None) -> str:
            return "never" if k is None else f"{k // 3600:02d}:{k % 3600 // 60:02d}"

        detail.append(
            f"| {label} | {plain.heater_kwh:.2f} | {fc.heater_kwh:.2f} | {fc.heater_kwh - plain.heater_kwh:+.2f} | "
            f"{p_noon:.2f} / {f_noon:.2f} | {p_lost:.2f} / {f_lost:.2f} | {hhmm(p_full)} / {hhmm(f_full)} | "
            f"{p_max:.1f} / {f_max:.1f} | "
            f"{p_sunset:.1f} / {f_sunset:.1f} | "
            f"{plain.end_soc_pct:.1f} / {fc.end_soc_pct:.1f} | {plain.relay_toggles} / {fc.relay_toggles} |"
        )
        if label == "morning60_forecast_good":
            ok = fc.heater_kwh > plain.heater_kwh and f_max >= 98.0
            verdicts.append(f"- accurate forecast: {fc.heater_kwh - plain.heater_kwh:+.2f} kWh heater energy, battery "
                            f"at {f_max:.1f} % before sunset (target: more energy and >= 98 %): "
                            f"{'ok' if ok else '**missed**'}")
        elif label == "morning60_forecast_over":
            ok = fc.end_soc_pct >= plain.end_soc_pct - 5.0
            verdicts.append(f"- overestimating forecast: end-of-day SoC {fc.end_soc_pct:.1f} % against "
                            f"{plain.end_soc_pct:.1f} % with plain min_soc (target: no worse than 5 points below): "
                            f"{'ok' if ok else '**missed**'}")
    by = {(r.scenario, r.strategy): r for r in rows}
    short = []
    for scenario in scenario_names():
        plain_r, fc_r = by.get((scenario, "pvheater")), by.get((scenario, "pvheater_forecast"))
        if plain_r is None or fc_r is None:
            continue
        gain = fc_r.heater_kwh - plain_r.heater_kwh
        short.append(f"| {scenario} | {plain_r.heater_kwh:.2f} | {fc_r.heater_kwh:.2f} | {gain:+.2f} | "
                     f"{plain_r.end_soc_pct:.1f} / {fc_r.end_soc_pct:.1f} |")
    header = ("| scenario | plain kWh | forecast kWh | gain kWh | by noon kWh | PV lost kWh | full at "
              "| max SoC before sunset % | SoC at sunset % | SoC at 24:00 % | toggles |\n"
              "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    return f"""## Forecast-aware battery reserve

`pvheater_forecast` is `pvheater` with `forecast.enabled` and the shipped defaults. The
day's hourly forecast (with the scenario's error) is "fetched" at {times}. Heating may
start below `min_soc_pct` ({min_soc:g} %), never below `early_min_soc_pct` ({f.early_min_soc_pct:g} %):
the battery keeps the share of the charge power it needs to be full `fill_margin_h`
({f.fill_margin_h:g} h) before the forecast's sunset, counting on `safety_factor` ({f.safety_factor:g}) of the
forecast less `house_base_w` ({f.house_base_w:g} W), and the heater may take the rest. Early
heating stops while measured PV, smoothed over {f.reality_tau_min:g} min, is below
`reality_factor` ({f.reality_factor:g}) of the forecast. Without a forecast it is `pvheater`. Its
"draw" in the results table is the battery charge it deliberately takes early (as with
heater_first); the battery is refilled the same day.

The scenario pair (plain `pvheater` / `pvheater_forecast`; "by noon": heater energy before
12:00; "PV lost": PV available the MPPT did not use; "full" = SoC first >= 98 %; sunset
20:30, after which the house discharges the battery):

{header}
{chr(10).join(detail)}

{chr(10).join(verdicts)}

Every scenario (heater kWh; SoC at 24:00 plain / forecast):

| scenario | plain kWh | forecast kWh | gain kWh | end SoC % |
|---|---:|---:|---:|---:|
{chr(10).join(short)}

The gain is small on this plant, and that is energy conservation, not caution: with a
2.5 kWp array, a 2.4 kW battery charger and a 2 kW heater, plain `min_soc` loses almost
no PV ("PV lost") -- the battery takes all of it in the morning, the heater nearly all of
it afterwards -- so heating earlier mostly moves the same energy to earlier hours: the
heater gets kWh in the morning that plain `min_soc` gives it only in the afternoon, and
only what plain `min_soc` curtails (while the battery tapers from 92 % and the gate waits
for min_soc + hysteresis) is gained. On a plant whose PV exceeds what battery and house
take in the morning, or with a tank whose thermostat stops it in the afternoon (not
modelled here), the gain would be larger. A forecast too high all day (third row) never
passes the reality check: exactly the plain rule.
"""


#: The report's text; {name} fields are filled by render() (str.format: a literal brace is written twice).
TEMPLATE_FILE = Path(__file__).resolve().parent / "BENCHMARKS.template.md"


def render(
    table: str, timings: list[tuple[str, float]], matrix_s: float, jobs: int, cells: int,
    sensitivity: list[tuple[float, RunMetrics, RunMetrics]], acceptance: str = "",
    responses: list[tuple[str, str]] | None = None, forecast_section: str = "",
) -> str:
    """The whole BENCHMARKS.md: the template with the results and the plant's parameters filled in."""
    p = PlantParams()
    sens_rows = "\n".join(
        f"| {tau:.1f} | {o.relay_toggles} | {100 * (o.capture or 0):.1f} | {o.draw_kwh:.3f} "
        f"| {100 * (late.capture or 0):.1f} | {late.draw_grid_kwh:.3f} |"
        for tau, o, late in sensitivity
    )
    return TEMPLATE_FILE.read_text(encoding="utf-8").format(
        machine=machine(),
        timing_rows="\n".join(f"| {name} | {secs:.2f} |" for name, secs in timings),
        cells=cells,
        matrix_s=matrix_s,
        jobs=jobs,
        table=table,
        acceptance=acceptance,
        responses="\n".join(f"- {what}: {value}" for what, value in (responses or [])),
        forecast_section=forecast_section,
        pv_peak_w=SCENARIOS["clear"].pv_peak_w,
        mppt_max_w=p.mppt_max_w,
        battery_kwh=p.battery.capacity_wh / 1000,
        max_charge_w=p.battery.max_charge_w,
        taper_start_pct=p.battery.taper_start_pct,
        inverter_max_w=p.inverter.max_power_w,
        inverter_efficiency=p.inverter.efficiency,
        inverter_idle_w=p.inverter.idle_w,
        inverter_tau_s=p.inverter.tau_s,
        min_soc_pct=p.inverter.min_soc_pct,
        heater_max_w=p.heater.max_power_w,
        dead_zone_pct=100 * p.heater.dead_zone_frac,
        knob_zero_deg=p.heater.knob_zero_deg,
        knob_full_deg=p.heater.knob_full_deg,
        servo_speed_deg_s=p.heater.servo_speed_deg_s,
        scenarios="\n".join(f"| `{n}` | {s.description} | {s.seed} |" for n, s in SCENARIOS.items()),
        sens_rows=sens_rows,
    )


#: Sections other bench scripts write into BENCHMARKS.md: (begin marker, end marker, placeholder when absent).
KEPT_SECTIONS = (
    ("<!-- soak -->", "<!-- /soak -->", "## Soak\n\nNot run yet (bench/soak.py writes it).\n"),
    ("<!-- gx-safety -->", "<!-- /gx-safety -->", None),
    ("<!-- family:begin", "<!-- family:end -->", None),
    ("<!-- family-uncalibrated:begin", "<!-- family-uncalibrated:end -->", None),
    ("<!-- actuators:begin", "<!-- actuators:end -->", None),
    ("<!-- family-actuators:begin", "<!-- family-actuators:end -->", None),
    ("<!-- ssr-steps:begin", "<!-- ssr-steps:end -->", None),
    ("<!-- tank:begin", "<!-- tank:end -->", None),
    ("<!-- hotwater:begin", "<!-- hotwater:end -->", None),
    ("<!-- frontends -->", "<!-- /frontends -->", None),
    ("<!-- offgrid:begin", "<!-- offgrid:end -->", None),
    ("<!-- stats-short:begin", "<!-- stats-short:end -->", None),
)


def keep_other_sections(text: str, old: str) -> str:
    """The new report followed by the sections other bench scripts wrote into the old one (placeholders if any)."""
    text = text.rstrip() + "\n"
    for begin, end, placeholder in KEPT_SECTIONS:
        if begin in old and end in old:
            text += "\n" + begin + old.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
        elif placeholder is not None:
            text += f"\n{begin}\n{placeholder}{end}\n"
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the bench and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="report to write (default: BENCHMARKS.md)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: every CPU)")
    args = parser.parse_args(argv)
    strategies = strategy_names()
    print(f"strategies: {', '.join(strategies)}; scenarios: {', '.join(scenario_names())}", file=sys.stderr)
    timings = time_one_day(strategies)
    jobs = args.jobs or default_jobs()
    t0 = time.perf_counter()
    cells = run_matrix(scenario_names(), strategies, jobs=jobs)
    matrix_s = time.perf_counter() - t0
    rows = [c[0] for c in cells]
    sensitivity = lag_sensitivity()
    text = render(
        format_table(rows, markdown=True), timings, matrix_s, min(jobs, len(rows)), len(rows), sensitivity,
        controller_acceptance(rows), response_times(), forecast_reserve(rows),
    )
    out = Path(args.out)
    text = keep_other_sections(text, out.read_text(encoding="utf-8") if out.is_file() else "")
    out.write_text(text, encoding="utf-8")
    print(format_table(rows))
    print(f"matrix: {matrix_s:.1f} s with {jobs} process(es); wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

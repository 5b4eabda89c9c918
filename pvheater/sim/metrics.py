"""Metrics of a run, each against the same day (same window, same dt) run with the heater off.

Definitions (energies in kWh; per-step values are the plant's step averages):

- **heater energy**: the integral of the true heater power.
- **oracle surplus**: the integral over the *baseline* of ``min(surplus_t, heater max)``,
  where ``surplus_t = max(0, min((PV available - battery acceptance - inverter idle)
  x efficiency, inverter max) - house)``: the AC power a perfect heater could take
  without cutting what the battery would accept (battery first) and without import.
- **heater-caused draw**: per step ``max(0, battery charge in baseline - battery charge
  in run)`` (the heater made the battery charge less or discharge more, DC watts)
  ``+ max(0, grid import in run - grid import in baseline)`` (AC watts), summed.
  It is deliberately strict: energy borrowed from the battery counts even when PV
  refills it later (a later catch-up never offsets it).
- **capture**: ``(heater energy - heater-caused draw) / oracle surplus``.
- **relay toggles**, **servo travel** (total degrees actually moved) and **servo moves**
  (commanded changes that made the servo move).
- **worst overshoot**: the largest ``heater power - surplus`` at any step, where the
  surplus is the run's own (at the run's SoC): heater power the surplus did not cover.
- **outage heater energy**: heater energy during the scenario's GX outage windows.
- **end SoC** and the **energy balance error**: ``|PV used - (house + heater + battery
  net + losses - net grid import)|`` as % of PV used (the plant conserves energy
  exactly, so this only shows numerical error).
"""

from __future__ import annotations

from pvheater.sim.results import RunMetrics, RunResult


def _check_aligned(run: RunResult, baseline: RunResult) -> None:
    if (run.start_s, run.end_s, run.dt_s, len(run.series)) != (
        baseline.start_s,
        baseline.end_s,
        baseline.dt_s,
        len(baseline.series),
    ):
        raise ValueError("run and baseline must cover the same window with the same dt")
    if baseline.strategy is not None:
        raise ValueError(f"the baseline must be a heater-off run, got strategy {baseline.strategy!r}")


def oracle_surplus_kwh(baseline: RunResult, heater_max_w: float | None = None) -> float:
    """Integral of min(surplus, heater max) over the heater-off run."""
    cap = baseline.heater_max_w if heater_max_w is None else heater_max_w
    total = sum(s if s < cap else cap for s in baseline.series.surplus_w)
    return total * baseline.dt_s / 3.6e6


def heater_caused_draw_kwh(run: RunResult, baseline: RunResult) -> tuple[float, float]:
    """(battery, grid) energy the heater took: less charge / more discharge, and extra import."""
    _check_aligned(run, baseline)
    battery_j = 0.0
    for b_run, b_base in zip(run.series.battery_w, baseline.series.battery_w, strict=True):
        if b_base > b_run:
            battery_j += b_base - b_run
    grid_j = 0.0
    for g_run, g_base in zip(run.series.grid_w, baseline.series.grid_w, strict=True):
        extra = (g_run if g_run > 0.0 else 0.0) - (g_base if g_base > 0.0 else 0.0)
        if extra > 0.0:
            grid_j += extra
    return battery_j * run.dt_s / 3.6e6, grid_j * run.dt_s / 3.6e6


def worst_overshoot_w(run: RunResult) -> float:
    """Largest heater power above the run's own surplus at any step (0 when never above)."""
    worst = 0.0
    for heater, surplus in zip(run.series.heater_w, run.series.surplus_w, strict=True):
        if heater - surplus > worst:
            worst = heater - surplus
    return worst


def outage_heater_kwh(run: RunResult) -> float | None:
    """Heater energy during the GX outage windows; None when the scenario has none."""
    if not run.outages_s:
        return None
    s = run.series
    total = 0.0
    for k, heater in enumerate(s.heater_w):
        t = s.start_s + k * s.dt_s
        if any(a <= t < b for a, b in run.outages_s):
            total += heater
    return total * s.dt_s / 3.6e6


def energy_balance_error_pct(run: RunResult) -> float:
    """|PV used - (house + heater + battery net + losses - net import)| as % of PV used (of inflow at night)."""
    e = run.energy
    scale = e.pv_used_wh if e.pv_used_wh > 1.0 else e.pv_used_wh + e.grid_import_wh
    return 100.0 * abs(e.balance_error_wh) / scale if scale > 0 else 0.0


def compute_metrics(run: RunResult, baseline: RunResult) -> RunMetrics:
    """All metrics of a run against its heater-off baseline."""
    _check_aligned(run, baseline)
    surplus = oracle_surplus_kwh(baseline, run.heater_max_w)
    battery_draw, grid_draw = heater_caused_draw_kwh(run, baseline)
    draw = battery_draw + grid_draw
    heater = run.energy.heater_wh / 1000.0
    return RunMetrics(
        scenario=run.scenario,
        strategy=run.strategy or "heater off",
        heater_kwh=heater,
        oracle_surplus_kwh=surplus,
        capture=(heater - draw) / surplus if surplus > 1e-6 else None,
        draw_kwh=draw,
        draw_battery_kwh=battery_draw,
        draw_grid_kwh=grid_draw,
        relay_toggles=run.relay_toggles,
        servo_travel_deg=run.servo_travel_deg,
        servo_moves=run.servo_moves,
        worst_overshoot_w=worst_overshoot_w(run),
        outage_heater_kwh=outage_heater_kwh(run),
        end_soc_pct=run.end_soc_pct,
        baseline_end_soc_pct=baseline.end_soc_pct,
        balance_error_pct=energy_balance_error_pct(run),
        wall_s=run.wall_s,
    )


# --- the table ----------------------------------------------------------------------

COLUMNS: tuple[tuple[str, str], ...] = (
    ("scenario", "scenario"),
    ("strategy", "strategy"),
    ("heater kWh", "heater energy"),
    ("surplus kWh", "oracle surplus (heater-limited)"),
    ("capture %", "(heater - draw) / oracle surplus"),
    ("draw kWh", "heater-caused draw: battery + grid"),
    ("batt/grid kWh", "draw split"),
    ("toggles", "relay toggles"),
    ("servo deg", "servo travel"),
    ("moves", "servo moves"),
    ("overshoot W", "worst heater power above the surplus"),
    ("outage kWh", "heater energy during the GX outage"),
    ("end SoC %", "run / heater off"),
    ("balance %", "energy balance error"),
)


def _row_cells(r: RunMetrics) -> list[str]:
    return [
        r.scenario,
        r.strategy,
        f"{r.heater_kwh:.2f}",
        f"{r.oracle_surplus_kwh:.2f}",
        "-" if r.capture is None else f"{100 * r.capture:.1f}",
        f"{r.draw_kwh:.3f}",
        f"{r.draw_battery_kwh:.3f}/{r.draw_grid_kwh:.3f}",
        str(r.relay_toggles),
        f"{r.servo_travel_deg:.0f}",
        str(r.servo_moves),
        f"{r.worst_overshoot_w:.0f}",
        "-" if r.outage_heater_kwh is None else f"{r.outage_heater_kwh:.3f}",
        f"{r.end_soc_pct:.1f}/{r.baseline_end_soc_pct:.1f}",
        f"{r.balance_error_pct:.1e}",
    ]


def format_table(rows: list[RunMetrics], *, markdown: bool = False) -> str:
    """The metrics as a text table (aligned columns) or a Markdown table."""
    header = [c[0] for c in COLUMNS]
    cells = [_row_cells(r) for r in rows]
    if markdown:
        align = "|".join("---" if i < 2 else "---:" for i in range(len(header)))
        lines = ["| " + " | ".join(header) + " |", f"|{align}|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(header)]

    def _line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    return "\n".join([_line(header), _line(["-" * w for w in widths]), *(_line(r) for r in cells)])

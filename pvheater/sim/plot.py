"""Plot a simulated day: PV available/used, heater, house, battery, grid and SoC (matplotlib, optional)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pvheater.plotting import require_matplotlib

if TYPE_CHECKING:
    from pvheater.sim.results import RunMetrics, RunResult

#: About this many bins across the plotted span (a 24 h day: 3 min bins); never finer than a minute.
TARGET_BINS = 480
MIN_BIN_S = 60.0


def _means(values: Sequence[float], width: int) -> list[float]:
    """Means of consecutive chunks of `width` values."""
    return [sum(values[i : i + width]) / len(values[i : i + width]) for i in range(0, len(values), width)]


def _clock_label(hours: float, _pos: object = None) -> str:
    """'HH:MM' of an hour of the day (24:00 and beyond wrap)."""
    minutes = round(hours * 60)
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def _tick_step_h(span_h: float) -> float:
    """Major tick spacing for a span: hourly from 3 h up to 30 h, finer below, coarser above."""
    if span_h < 3.0:
        return 0.25
    if span_h <= 30.0:
        return 1.0
    return 6.0


def plot_run(run: RunResult, path: Path | str, metrics: RunMetrics | None = None, bin_s: float | None = None) -> Path:
    """Draw one run to a PNG (powers as bin means, default ~3 min for a day; SoC below); return the path."""
    require_matplotlib()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    s = run.series
    span_s = run.end_s - run.start_s
    if bin_s is None:
        bin_s = max(MIN_BIN_S, span_s / TARGET_BINS)
    width = max(1, round(bin_s / s.dt_s))
    centre_s = width * s.dt_s / 2.0
    hours = [(t + centre_s) / 3600.0 for t in s.times_s()[::width]]
    fig, (ax, ax_soc) = plt.subplots(
        2, 1, figsize=(13, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, layout="constrained"
    )
    pv_avail = _means(s.pv_avail_w, width)
    pv_used = _means(s.pv_used_w, width)
    ax.fill_between(hours, pv_used, pv_avail, facecolor="gold", edgecolor="darkgoldenrod", hatch="////",
                    alpha=0.7, lw=0.0, label="PV curtailed (available, not used)")
    ax.plot(hours, pv_avail, color="darkorange", lw=1.8, label="PV available")
    ax.plot(hours, pv_used, color="saddlebrown", lw=1.1, label="PV used")
    heater = _means(s.heater_w, width)
    ax.fill_between(hours, 0.0, heater, color="red", alpha=0.18, lw=0.0)
    ax.plot(hours, heater, color="red", lw=1.4, label="heater")
    ax.plot(hours, _means(s.house_w, width), color="dimgrey", lw=0.9, label="house")
    ax.plot(hours, _means(s.battery_w, width), color="green", lw=0.9, label="battery (+ charging)")
    ax.plot(hours, _means(s.grid_w, width), color="blue", lw=0.9, label="grid (+ import)")
    ax.axhline(0.0, color="black", lw=0.5)
    for k, (start, end) in enumerate(run.outages_s):
        ax.axvspan(start / 3600.0, end / 3600.0, color="purple", alpha=0.12, label="GX outage" if k == 0 else None)
    ax.set_ylabel(f"W (means over {width * s.dt_s / 60:g} min)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    title = f"{run.scenario} / {run.strategy or 'heater off'}"
    if metrics is not None:
        capture = "-" if metrics.capture is None else f"{100 * metrics.capture:.1f} %"
        title += (
            f" -- heater {metrics.heater_kwh:.2f} kWh, capture {capture}, "
            f"draw {metrics.draw_kwh:.3f} kWh, toggles {metrics.relay_toggles}"
        )
    ax.set_title(title, fontsize=10)
    ax_soc.plot(hours, _means(s.soc_pct, width), color="green", lw=1.0)
    ax_soc.set_ylabel("SoC %")
    ax_soc.set_ylim(0, 102)
    ax_soc.grid(alpha=0.3)
    ax_soc.set_xlabel("time of day")
    ax_soc.set_xlim(run.start_s / 3600.0, run.end_s / 3600.0)
    ax_soc.xaxis.set_major_locator(MultipleLocator(_tick_step_h(span_s / 3600.0)))
    ax_soc.xaxis.set_major_formatter(FuncFormatter(_clock_label))
    ax_soc.tick_params(axis="x", labelrotation=90 if span_s > 12 * 3600 else 0, labelsize=8)
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

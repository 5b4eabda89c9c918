"""Plot a simulated day: PV available/used, heater, house, battery, grid and SoC (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pvheater.plotting import require_matplotlib

if TYPE_CHECKING:
    from pvheater.sim.results import RunMetrics, RunResult

def _means(values: list[float], width: int) -> list[float]:
    """Means of consecutive chunks of `width` values."""
    return [sum(values[i : i + width]) / len(values[i : i + width]) for i in range(0, len(values), width)]


def plot_run(run: RunResult, path: Path | str, metrics: RunMetrics | None = None, bin_s: float = 30.0) -> Path:
    """Draw one run (powers averaged over bin_s, and SoC) to a PNG; return the path."""
    require_matplotlib()
    import matplotlib.pyplot as plt

    s = run.series
    width = max(1, round(bin_s / s.dt_s))
    hours = [t / 3600.0 for t in s.times_s()[::width]]
    fig, (ax, ax_soc) = plt.subplots(
        2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, layout="constrained"
    )
    pv_avail = _means(s.pv_avail_w, width)
    pv_used = _means(s.pv_used_w, width)
    ax.fill_between(hours, pv_used, pv_avail, color="gold", alpha=0.35, label="PV not used (curtailed)")
    ax.plot(hours, pv_avail, color="orange", lw=1.0, label="PV available")
    ax.plot(hours, pv_used, color="darkorange", lw=1.0, ls="--", label="PV used")
    ax.plot(hours, _means(s.heater_w, width), color="red", lw=1.2, label="heater")
    ax.plot(hours, _means(s.house_w, width), color="grey", lw=0.9, label="house")
    ax.plot(hours, _means(s.battery_w, width), color="green", lw=0.9, label="battery (+ charging)")
    ax.plot(hours, _means(s.grid_w, width), color="blue", lw=0.9, label="grid (+ import)")
    ax.axhline(0.0, color="black", lw=0.5)
    for start, end in run.outages_s:
        ax.axvspan(start / 3600.0, end / 3600.0, color="purple", alpha=0.12, label="GX outage")
    ax.set_ylabel("W")
    ax.legend(loc="upper left", fontsize=8, ncols=2)
    title = f"{run.scenario} / {run.strategy or 'heater off'}"
    if metrics is not None:
        capture = "-" if metrics.capture is None else f"{100 * metrics.capture:.1f} %"
        title += (
            f" -- heater {metrics.heater_kwh:.2f} kWh, capture {capture}, "
            f"draw {metrics.draw_kwh:.3f} kWh, toggles {metrics.relay_toggles}"
        )
    ax.set_title(title, fontsize=10)
    ax_soc.plot(hours, s.soc_pct[::width], color="green", lw=1.0)
    ax_soc.set_ylabel("SoC %")
    ax_soc.set_ylim(0, 102)
    ax_soc.set_xlabel("hour of day")
    ax_soc.set_xlim(s.start_s / 3600.0, run.end_s / 3600.0)
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

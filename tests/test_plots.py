"""The day plot and the stats plot, drawn to PNG with the real matplotlib and checked for readability.

Each figure is caught as it is saved (the plot functions build, save and close
it) and read back: legends outside the data, axes that do not go negative where
nothing is negative, hourly ticks on a day, one quantity per axis, values on bars.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pvheater.sim.day import run_day  # noqa: E402
from pvheater.sim.metrics import compute_metrics  # noqa: E402
from pvheater.sim.plot import plot_run  # noqa: E402
from pvheater.sim.scenarios import build_day  # noqa: E402
from pvheater.sim.strategy import make_strategy  # noqa: E402
from pvheater.stats import DayStats, HistoryStats, plot_stats  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every Figure saved while the test runs (saved for real, then kept for inspection)."""
    figures: list[Figure] = []
    real_savefig = Figure.savefig

    def savefig(self: Figure, *args: Any, **kwargs: Any) -> Any:
        figures.append(self)
        return real_savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def _drawn(fig: Figure) -> Any:
    """Draw a saved (and closed) figure again on an Agg canvas; return the renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _legend_outside_axes(fig: Figure, ax: Any) -> None:
    """The axes' legend (or the figure's) does not overlap the axes' data area."""
    renderer = _drawn(fig)
    legend = ax.get_legend() or (fig.legends[0] if fig.legends else None)
    assert legend is not None, "no legend"
    box = legend.get_window_extent(renderer)
    area = ax.get_window_extent(renderer)
    assert not box.overlaps(area), f"legend {box.bounds} lies over the data area {area.bounds}"


def _bar_containers(ax: Any) -> list[Any]:
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer)]


def test_the_day_plot(tmp_path: Path, saved_figures: list[Figure]) -> None:
    day = build_day("gx_outage")
    run = run_day(day, make_strategy("original", day))
    metrics = compute_metrics(run, run_day(day, None))
    path = plot_run(run, tmp_path / "day.png", metrics)
    _assert_png(path)
    (fig,) = saved_figures
    ax, ax_soc = fig.axes
    _legend_outside_axes(fig, ax)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "PV available" in labels and "PV used" in labels
    assert any("curtailed" in label for label in labels)
    assert labels.count("GX outage") == 1  # one entry, however many outage windows
    # hourly ticks over the day, labelled as clock times
    ticks = list(ax_soc.get_xticks())
    lo, hi = ax_soc.get_xlim()
    shown = [t for t in ticks if lo - 1e-9 <= t <= hi + 1e-9]
    assert len(shown) == 25
    assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(shown))
    _drawn(fig)
    fmt = ax_soc.xaxis.get_major_formatter()
    assert [fmt(t, k) for k, t in enumerate(shown[:3])] == ["00:00", "01:00", "02:00"]
    # SoC axis: 0..100 %, never negative
    assert ax_soc.get_ylim()[0] >= 0.0
    # the powers are binned for display (a 24 h day is not 86 400 points) and PV available/used differ in style
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert 100 <= len(lines["PV available"].get_xdata()) <= 1500
    avail, used = lines["PV available"], lines["PV used"]
    assert (avail.get_color(), avail.get_linewidth()) != (used.get_color(), used.get_linewidth())
    # the curtailed area is drawn visibly (an opaque enough, hatched fill)
    fills = [c for c in ax.collections if "curtailed" in str(c.get_label())]
    assert fills and (fills[0].get_alpha() or 1.0) >= 0.5 and fills[0].get_hatch()


def _stats(days: list[DayStats]) -> HistoryStats:
    total = DayStats("total")
    for d in days:
        total.add(d)
    return HistoryStats(days, total)


@pytest.mark.parametrize("case", ["one quiet day", "a week"])
def test_the_stats_plot(case: str, tmp_path: Path, saved_figures: list[Figure]) -> None:
    if case == "one quiet day":
        days = [DayStats("2024-06-21")]
    else:
        days = [DayStats(f"2024-06-{21 + k}", heater_kwh=4.0 + k, captured_kwh=3.5 + k, heating_h=3.0 + 0.5 * k,
                         failsafe_min=12.0 * (k % 3), gx_errors=k % 2) for k in range(7)]
    path = plot_stats(_stats(days), tmp_path / "stats.png")
    _assert_png(path)
    (fig,) = saved_figures
    _drawn(fig)
    axes = fig.axes
    for ax in axes:
        assert ax.get_ylim()[0] >= 0.0, f"{ax.get_ylabel()}: negative axis {ax.get_ylim()}"
        assert ax.get_ylim()[1] > 0.0
        label = ax.get_ylabel()
        assert not ("min" in label and "error" in label.lower()), f"minutes and counts on one axis: {label!r}"
    ylabels = [ax.get_ylabel() for ax in axes]
    assert any("fail-safe" in y for y in ylabels) and any("GX errors" in y for y in ylabels)
    assert len(next(a for a in axes if "fail-safe" in a.get_ylabel()).get_ylabel().split(",")) == 1
    for ax in axes:
        if ax.get_legend() is not None:
            _legend_outside_axes(fig, ax)
    # every bar carries its value
    for ax in axes:
        bars = sum(len(c) for c in _bar_containers(ax))
        values = [t for t in ax.texts if t.get_text() != ""]
        assert bars > 0 and len(values) == bars, f"{ax.get_ylabel()}: {bars} bars, {len(values)} values"

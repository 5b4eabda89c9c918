"""Per-day numbers from the history database: what `pvheater stats` prints.

Each tick row carries the totals of the span since the previous row of its
run (see pvheater/history.py), so a day's numbers are sums. A span that
crosses local midnight is split in proportion to time; counts (switchings,
events) go to the day they happened.

Dating rows: the wall clock of a Pi without RTC reads 1970 until NTP sets it,
and NTP may later move it. Each run's rows also carry its monotonic clock,
which never jumps, so a run is dated by its monotonic clock anchored at the
newest row that has a set wall clock; rows of a run that never saw a set
clock fall under "clock unset".
"""

from __future__ import annotations

import bisect
import datetime
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pvheater.control.timeofday import CLOCK_TRUSTED_FROM_UTC_S, clock_is_set
from pvheater.history import connect_read_only
from pvheater.plotting import require_matplotlib

#: A row whose wall clock disagrees with its run's monotonic clock by more than this was written before a jump.
CLOCK_JUMP_S = 60.0
UNSET_DAY = "clock unset"


@dataclass
class DayStats:
    """One local day of the history."""

    day: str
    heater_kwh: float = 0.0
    captured_kwh: float = 0.0
    heating_h: float = 0.0
    switchings: int = 0
    failsafe_min: float = 0.0
    gx_errors: int = 0
    starts: int = 0
    reloads: int = 0
    recorded_h: float = 0.0
    #: First time of day the heater stopped drawing (its thermostat opened), "HH:MM"; "-": not that day.
    tank_full_at: str = "-"
    #: Hours the tank was full (from "tank full" until the thermostat closed or the run stopped).
    tank_full_h: float = 0.0
    #: Heater energy the grid (and the battery) gave in forced heating: boost, top-up, legionella (the day each
    #: episode ended); solar: the rest of heater_kwh.
    grid_kwh: float = 0.0
    #: Grid top-ups that ended this day.
    topups: int = 0

    @property
    def solar_kwh(self) -> float:
        """Heater energy that was not forced from the grid."""
        return max(0.0, self.heater_kwh - self.grid_kwh)

    def add(self, other: DayStats) -> None:
        """Add another day's numbers into this one (the earliest "tank full at" is kept)."""
        if other.tank_full_at != "-" and (self.tank_full_at == "-" or other.tank_full_at < self.tank_full_at):
            self.tank_full_at = other.tank_full_at
        for name in ("heater_kwh", "captured_kwh", "heating_h", "switchings", "failsafe_min", "gx_errors", "starts",
                     "reloads", "recorded_h", "grid_kwh", "topups"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tank_full_h += other.tank_full_h


@dataclass
class HistoryStats:
    """The days asked for, oldest first, and their total."""

    days: list[DayStats]
    total: DayStats
    unset: DayStats | None = None
    notes: list[str] = field(default_factory=list)
    #: Local date the tank last reached the legionella temperature (a `hot_60c` event), None: never recorded.
    last_60c: str | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""

        def day(d: DayStats) -> dict[str, Any]:
            return {**asdict(d), "solar_kwh": d.solar_kwh}

        return {
            "days": [day(d) for d in self.days],
            "total": day(self.total),
            "clock_unset": None if self.unset is None else day(self.unset),
            "notes": self.notes,
            "last_60c": self.last_60c,
        }


def _anchors(rows: list[tuple[float, float]]) -> list[float | None]:
    """Wall-minus-monotonic offset to date each (wall_s, mono_s) row of one run by, newest anchor first."""
    out: list[float | None] = [None] * len(rows)
    anchor: float | None = None
    for i in range(len(rows) - 1, -1, -1):
        wall_s, mono_s = rows[i]
        own = wall_s - mono_s
        if clock_is_set(wall_s) and (anchor is None or abs(own - anchor) <= CLOCK_JUMP_S):
            anchor = own
        out[i] = anchor
    return out


def _day_of(t_s: float) -> datetime.date:
    return datetime.datetime.fromtimestamp(t_s).date()


def _midnight_after(day: datetime.date) -> float:
    return datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time()).timestamp()


def _split(start_s: float, end_s: float) -> list[tuple[datetime.date, float]]:
    """(day, fraction of the span) for a span [start_s, end_s] across local midnights."""
    if end_s <= start_s:
        return [(_day_of(end_s), 1.0)]
    parts = []
    t = start_s
    while t < end_s:
        day = _day_of(t)
        nxt = min(_midnight_after(day), end_s)
        if nxt <= t:  # pragma: no cover - guards against a broken local time zone
            nxt = end_s
        parts.append((day, (nxt - t) / (end_s - start_s)))
        t = nxt
    return parts


def compute_stats(path: Path | str, days: int | None = 7, since_s: float | None = None) -> HistoryStats:
    """Per-day stats of the newest `days` days in the history (None: every day), empty days included.

    `since_s`: tick rows written before this wall-clock time are not read (an indexed query instead of the
    whole table; the days before it are incomplete); rows written with an unset clock are always read.
    """
    conn = connect_read_only(path)
    try:
        return _compute(conn, days, since_s)
    finally:
        conn.close()


#: Per run: the monotonic times of its rows and the wall-clock anchor of each (None: cannot be dated).
RunAnchors = dict[str, tuple[list[float], list[float | None]]]


class _Days:
    """The per-day totals being summed, and the bucket of what cannot be dated."""

    def __init__(self) -> None:
        self.by_day: dict[datetime.date, DayStats] = {}
        self.unset = DayStats(UNSET_DAY)
        self.last_60c: str | None = None

    def bucket(self, day: datetime.date | None) -> DayStats:
        """The totals of a day (None: the undatable bucket), opened on first use."""
        if day is None:
            return self.unset
        if day not in self.by_day:
            self.by_day[day] = DayStats(day.isoformat())
        return self.by_day[day]


def _compute(conn: sqlite3.Connection, days: int | None, since_s: float | None = None) -> HistoryStats:
    totals = _Days()
    runs = _count_ticks(conn, totals, since_s)
    _count_events(conn, totals, runs)
    stats = _select_days(totals, days)
    stats.last_60c = totals.last_60c
    return stats


def _count_ticks(conn: sqlite3.Connection, totals: _Days, since_s: float | None = None) -> RunAnchors:
    """Add every tick row (since since_s) to its day(s), run by run; return each run's row times and anchors."""
    runs: RunAnchors = {}
    columns = "run_id, wall_s, mono_s, span_s, heater_wh, captured_wh, heating_s, failsafe_s, switches"
    if since_s is None:
        cursor = conn.execute(f"SELECT {columns} FROM ticks ORDER BY run_id, seq")
    else:
        cursor = conn.execute(
            # unary + keeps SQLite on the wall_s index for both ranges (not a scan of the whole table in run order)
            f"SELECT {columns} FROM ticks WHERE wall_s >= ? OR wall_s < ? ORDER BY +run_id, +seq",
            (max(since_s, CLOCK_TRUSTED_FROM_UTC_S), CLOCK_TRUSTED_FROM_UTC_S),
        )
    current: str | None = None
    batch: list[tuple[Any, ...]] = []
    for row in cursor:
        if row[0] != current:
            if batch:
                runs[batch[0][0]] = _count_run(batch, totals)
            batch = []
            current = row[0]
        batch.append(row)
    if batch:
        runs[batch[0][0]] = _count_run(batch, totals)
    return runs


def _count_run(batch: list[tuple[Any, ...]], totals: _Days) -> tuple[list[float], list[float | None]]:
    """Add one run's tick rows to their days (a span across midnight is split); return its times and anchors."""
    anchors = _anchors([(r[1], r[2]) for r in batch])
    for row, anchor in zip(batch, anchors, strict=True):
        _run_id, _wall, mono_s, span_s, heater_wh, captured_wh, heating_s, failsafe_s, switches = row
        if span_s == 0 and switches == 0:
            continue  # a run's first row (or a stop right after a row): nothing to count, no day to open
        if anchor is None:
            parts: list[tuple[datetime.date | None, float]] = [(None, 1.0)]
        else:
            end_s = mono_s + anchor
            parts = list(_split(end_s - span_s, end_s))
        for day, frac in parts:
            d = totals.bucket(day)
            d.heater_kwh += heater_wh * frac / 1000.0
            d.captured_kwh += captured_wh * frac / 1000.0
            d.heating_h += heating_s * frac / 3600.0
            d.failsafe_min += failsafe_s * frac / 60.0
            d.recorded_h += span_s * frac / 3600.0
        if switches:
            totals.bucket(parts[-1][0]).switchings += switches  # the day the span ends in (a span ends before midnight)
    return [r[2] for r in batch], anchors


def _count_events(conn: sqlite3.Connection, totals: _Days, runs: RunAnchors) -> None:
    """Count GX errors, starts, config reloads and tank-full spans on the day each happened (dated through its run's
    anchors)."""
    full_since: dict[str, float] = {}  # run -> local epoch seconds the tank was found full
    for run_id, wall_s, mono_s, kind, detail in conn.execute(
            "SELECT run_id, wall_s, mono_s, kind, detail FROM events ORDER BY id"):
        if kind == "hot_60c":
            totals.last_60c = max(totals.last_60c or "", detail)
            continue
        if kind not in ("gx_error", "start", "config_reload", "tank_full", "tank_closed", "stop", "forced"):
            continue
        anchor: float | None = None
        if run_id in runs:
            monos, anchors = runs[run_id]
            i = min(bisect.bisect_left(monos, mono_s), len(monos) - 1)
            anchor = anchors[i]
        if anchor is None and clock_is_set(wall_s):
            anchor = wall_s - mono_s
        if kind in ("tank_full", "tank_closed", "stop"):
            _count_tank(totals, full_since, run_id, kind, None if anchor is None else mono_s + anchor)
            continue
        d = totals.bucket(None if anchor is None else _day_of(mono_s + anchor))
        if kind == "forced":
            _count_forced(d, detail)
        elif kind == "gx_error":
            d.gx_errors += 1
        elif kind == "start":
            d.starts += 1
        else:
            d.reloads += 1


#: The detail of a `forced` event (pvheater/history.py).
_FORCED = re.compile(r"(\w+): ([0-9.]+) kWh from the grid of ([0-9.]+) kWh heater")


def _count_forced(d: DayStats, detail: str) -> None:
    """Add one forced episode's grid energy to its day (a detail not in the format counts nothing)."""
    match = _FORCED.fullmatch(detail)
    if match is None:
        return
    d.grid_kwh += float(match.group(2))
    if match.group(1) == "topup":
        d.topups += 1


def _count_tank(totals: _Days, full_since: dict[str, float], run_id: str, kind: str, at_s: float | None) -> None:
    """A tank-full span starts (first time of its day noted) or ends (its hours split over the days it covers)."""
    if at_s is None:
        full_since.pop(run_id, None)  # an undatable event: the span cannot be counted
        return
    if kind == "tank_full":
        full_since[run_id] = at_s
        d = totals.bucket(_day_of(at_s))
        at = datetime.datetime.fromtimestamp(at_s).strftime("%H:%M")
        if d.tank_full_at == "-" or at < d.tank_full_at:
            d.tank_full_at = at
        return
    start_s = full_since.pop(run_id, None)
    if start_s is not None and at_s > start_s:
        for day, frac in _split(start_s, at_s):
            totals.bucket(day).tank_full_h += frac * (at_s - start_s) / 3600.0


def _select_days(totals: _Days, days: int | None) -> HistoryStats:
    """The last `days` calendar days up to the newest (every day for None, empty ones included) and their total."""
    notes = []
    by_day, unset = totals.by_day, totals.unset
    chosen = sorted(by_day)
    if chosen:
        newest = chosen[-1]
        first = chosen[0] if days is None else max(chosen[0], newest - datetime.timedelta(days=days - 1))
        span = (newest - first).days + 1
        chosen = [first + datetime.timedelta(days=k) for k in range(span)]
    out = [by_day.get(day, DayStats(day.isoformat())) for day in chosen]
    total = DayStats("total")
    for d in out:
        total.add(d)
    has_unset = unset.recorded_h > 0 or unset.starts > 0 or unset.gx_errors > 0
    if has_unset:
        notes.append(f"{unset.recorded_h:.1f} h were recorded while the clock was unset and cannot be dated")
    return HistoryStats(out, total, unset if has_unset else None, notes)


COLUMNS = (
    ("day", "day", "{}"),
    ("heater_kwh", "heater kWh", "{:.2f}"),
    ("captured_kwh", "captured kWh", "{:.2f}"),
    ("heating_h", "heating h", "{:.1f}"),
    ("switchings", "switchings", "{}"),
    ("failsafe_min", "fail-safe min", "{:.1f}"),
    ("gx_errors", "GX errors", "{}"),
    ("starts", "starts", "{}"),
    ("recorded_h", "recorded h", "{:.1f}"),
    ("tank_full_at", "tank full at", "{}"),
    ("tank_full_h", "hours tank full", "{:.1f}"),
    ("solar_kwh", "solar kWh", "{:.2f}"),
    ("grid_kwh", "grid kWh", "{:.2f}"),
    ("topups", "top-ups", "{}"),
)


def format_stats(stats: HistoryStats) -> str:
    """A plain-text table: one line per day and a total."""
    rows = [*stats.days, stats.total] + ([stats.unset] if stats.unset is not None else [])
    cells = [[label for _, label, _ in COLUMNS]]
    for d in rows:
        cells.append([fmt.format(getattr(d, name)) for name, _, fmt in COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for k, row in enumerate(cells):
        if k == len(stats.days) + 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                      strict=True))))
    lines.extend(f"note: {n}" for n in stats.notes)
    if stats.last_60c is not None:
        lines.append(f"last at 60 degC: {stats.last_60c}")
    return "\n".join(lines)


def _bars(ax: Any, x: list[float], values: list[float], width: float, fmt: str, **style: Any) -> None:
    """Bars with their values written on them, on an axis that starts at 0 (and shows 0..1 when all are 0)."""
    bars = ax.bar(x, values, width=width, **style)
    ax.bar_label(bars, fmt=fmt, fontsize=7, padding=1)
    top = max(values, default=0.0)
    ax.set_ylim(0.0, top * 1.18 if top > 0 else 1.0)


def plot_stats(stats: HistoryStats, path: Path | str) -> Path:
    """Bar charts per day (energy, heating hours, fail-safe minutes, GX errors) to a PNG; return the path."""
    require_matplotlib()
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    days = stats.days
    labels = [d.day[5:] for d in days]
    x = [float(i) for i in range(len(labels))]
    fig, axes = plt.subplots(4, 1, figsize=(max(7.0, 0.7 * len(labels) + 4), 9), sharex=True, layout="constrained")
    ax = axes[0]
    _bars(ax, [i - 0.2 for i in x], [d.heater_kwh for d in days], 0.4, "%.1f", label="heater")
    _bars(ax, [i + 0.2 for i in x], [d.captured_kwh for d in days], 0.4, "%.1f", label="surplus captured")
    top = max([d.heater_kwh for d in days] + [d.captured_kwh for d in days], default=0.0)
    ax.set_ylim(0.0, top * 1.18 if top > 0 else 1.0)
    ax.set_ylabel("kWh")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    _bars(axes[1], x, [d.heating_h for d in days], 0.6, "%.1f", color="tab:orange")
    axes[1].set_ylabel("heating h")
    _bars(axes[2], x, [d.failsafe_min for d in days], 0.6, "%.0f", color="tab:red")
    axes[2].set_ylabel("fail-safe min")
    _bars(axes[3], x, [float(d.gx_errors) for d in days], 0.6, "%d", color="tab:gray")
    axes[3].set_ylabel("GX errors")
    axes[3].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[3].set_xticks(x, labels, rotation=45 if len(labels) > 7 else 0)
    axes[3].set_xlim(-0.6, max(len(labels) - 0.4, 0.6))
    for a in axes:
        a.grid(axis="y", alpha=0.3)
    fig.suptitle("pvheater history")
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

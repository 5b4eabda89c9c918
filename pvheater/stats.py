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
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pvheater.control.timeofday import clock_is_set
from pvheater.history import connect_read_only

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

    def add(self, other: DayStats) -> None:
        """Add another day's numbers into this one."""
        for name in ("heater_kwh", "captured_kwh", "heating_h", "switchings", "failsafe_min", "gx_errors", "starts",
                     "reloads", "recorded_h"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class HistoryStats:
    """The days asked for, oldest first, and their total."""

    days: list[DayStats]
    total: DayStats
    unset: DayStats | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "days": [asdict(d) for d in self.days],
            "total": asdict(self.total),
            "clock_unset": None if self.unset is None else asdict(self.unset),
            "notes": self.notes,
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


def compute_stats(path: Path | str, days: int | None = 7) -> HistoryStats:
    """Per-day stats of the newest `days` days in the history (None: every day), empty days included."""
    conn = connect_read_only(path)
    try:
        return _compute(conn, days)
    finally:
        conn.close()


def _compute(conn: sqlite3.Connection, days: int | None) -> HistoryStats:
    by_day: dict[datetime.date, DayStats] = {}
    unset = DayStats(UNSET_DAY)

    def bucket(day: datetime.date | None) -> DayStats:
        if day is None:
            return unset
        if day not in by_day:
            by_day[day] = DayStats(day.isoformat())
        return by_day[day]

    runs: dict[str, tuple[list[float], list[float | None]]] = {}
    cursor = conn.execute(
        "SELECT run_id, wall_s, mono_s, span_s, heater_wh, captured_wh, heating_s, failsafe_s, switches "
        "FROM ticks ORDER BY run_id, seq"
    )
    current: str | None = None
    batch: list[tuple[Any, ...]] = []

    def flush_run() -> None:
        if not batch:
            return
        anchors = _anchors([(r[1], r[2]) for r in batch])
        runs[batch[0][0]] = ([r[2] for r in batch], anchors)
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
                d = bucket(day)
                d.heater_kwh += heater_wh * frac / 1000.0
                d.captured_kwh += captured_wh * frac / 1000.0
                d.heating_h += heating_s * frac / 3600.0
                d.failsafe_min += failsafe_s * frac / 60.0
                d.recorded_h += span_s * frac / 3600.0
            if switches:
                bucket(parts[-1][0]).switchings += switches  # the day the span ends in (a span ends before midnight)

    for row in cursor:
        if row[0] != current:
            flush_run()
            batch = []
            current = row[0]
        batch.append(row)
    flush_run()

    for run_id, wall_s, mono_s, kind in conn.execute("SELECT run_id, wall_s, mono_s, kind FROM events ORDER BY id"):
        if kind not in ("gx_error", "start", "config_reload"):
            continue
        anchor: float | None = None
        if run_id in runs:
            monos, anchors = runs[run_id]
            i = min(bisect.bisect_left(monos, mono_s), len(monos) - 1)
            anchor = anchors[i]
        if anchor is None and clock_is_set(wall_s):
            anchor = wall_s - mono_s
        d = bucket(None if anchor is None else _day_of(mono_s + anchor))
        if kind == "gx_error":
            d.gx_errors += 1
        elif kind == "start":
            d.starts += 1
        else:
            d.reloads += 1

    notes = []
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
    return "\n".join(lines)


def plot_stats(stats: HistoryStats, path: Path | str) -> Path:
    """Bar charts per day (energy, heating hours, fail-safe minutes and GX errors) to a PNG; return the path."""
    from pvheater.sim.plot import require_matplotlib

    require_matplotlib()
    import matplotlib.pyplot as plt

    labels = [d.day[5:] for d in stats.days]
    x = list(range(len(labels)))
    fig, axes = plt.subplots(3, 1, figsize=(max(6.0, 0.6 * len(labels) + 2), 8), sharex=True)
    ax = axes[0]
    ax.bar([i - 0.2 for i in x], [d.heater_kwh for d in stats.days], width=0.4, label="heater kWh")
    ax.bar([i + 0.2 for i in x], [d.captured_kwh for d in stats.days], width=0.4, label="surplus captured kWh")
    ax.set_ylabel("kWh")
    ax.legend(loc="upper left")
    axes[1].bar(x, [d.heating_h for d in stats.days], color="tab:orange")
    axes[1].set_ylabel("heating h")
    ax = axes[2]
    ax.bar([i - 0.2 for i in x], [d.failsafe_min for d in stats.days], width=0.4, color="tab:red",
           label="fail-safe min")
    ax.bar([i + 0.2 for i in x], [d.gx_errors for d in stats.days], width=0.4, color="tab:gray", label="GX errors")
    ax.legend(loc="upper left")
    ax.set_xticks(x, labels, rotation=45)
    fig.suptitle("pvheater history")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

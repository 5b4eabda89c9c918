"""Times of day: parsing HH:MM, windows, seconds since midnight, the "clock is set" rule (pure)."""

from __future__ import annotations

import datetime
import re

DAY_S = 86400.0
#: Wall-clock UTC epoch seconds before 2024-01-01: the Pi's clock has not been set yet (no RTC, no NTP).
CLOCK_TRUSTED_FROM_UTC_S = 1_704_067_200.0
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")


def parse_hhmm(text: str, *, seconds: bool = False) -> datetime.time:
    """'HH:MM' (with `seconds`, also 'HH:MM:SS') -> datetime.time; ValueError for anything else (25:00, 9:00)."""
    match = _HHMM.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or (match.group(3) is not None and not seconds):
        form = "HH:MM or HH:MM:SS" if seconds else "HH:MM"
        raise ValueError(f"expected a time {form} such as 09:00, got {text!r}")
    return datetime.time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def hhmm_seconds(text: str) -> float:
    """Seconds since midnight of 'HH:MM' or 'HH:MM:SS'; ValueError otherwise."""
    t = parse_hhmm(text, seconds=True)
    return float(t.hour * 3600 + t.minute * 60 + t.second)


def time_of_day(seconds: float) -> datetime.time:
    """The time of day of a count of seconds (since a midnight; whole days are dropped)."""
    s = int(seconds) % int(DAY_S)
    return datetime.time(s // 3600, s % 3600 // 60, s % 60)


def format_hms(seconds: float) -> str:
    """'HH:MM:SS' of a count of seconds since a midnight."""
    return time_of_day(seconds).strftime("%H:%M:%S")


def format_hhmm(t: datetime.time | None) -> str:
    """'HH:MM', or '--:--' for None (an open side of a window)."""
    return "--:--" if t is None else t.strftime("%H:%M")


def in_window(local_time: datetime.time, start: datetime.time | None, end: datetime.time | None) -> bool:
    """True when local_time lies in [start, end); end before start spans midnight; None = open side."""
    if start is None and end is None:
        return True
    if start is None:
        return local_time < end  # type: ignore[operator]
    if end is None:
        return local_time >= start
    if start <= end:
        return start <= local_time < end
    return local_time >= start or local_time < end


def clock_is_set(utc_s: float) -> bool:
    """True once the wall clock shows a date from 2024 on (before that, a Pi without RTC has not synced)."""
    return utc_s >= CLOCK_TRUSTED_FROM_UTC_S


def parse_fetch_times(text: str) -> list[datetime.time]:
    """'05:20,10:20' -> sorted times of day; ValueError naming a bad entry."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            out.append(parse_hhmm(part))
        except ValueError:
            raise ValueError(f"expected times HH:MM separated by commas, got {part!r}") from None
    return sorted(out)


def parse_window(text: str) -> tuple[datetime.time, datetime.time]:
    """'22:00-06:00' -> (start, end) times of day; end before start spans midnight; ValueError otherwise."""
    parts = text.split("-") if isinstance(text, str) else []
    try:
        if len(parts) != 2:
            raise ValueError(text)
        start, end = (parse_hhmm(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected a window HH:MM-HH:MM such as 22:00-06:00, got {text!r}") from None
    if start == end:
        raise ValueError(f"expected a window with different start and end, got {text!r}")
    return start, end

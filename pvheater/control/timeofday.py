"""Times of day: parsing HH:MM, windows, seconds since midnight (pure)."""

from __future__ import annotations

import datetime


def parse_fetch_times(text: str) -> list[datetime.time]:
    """'05:20,10:20' -> times of day; ValueError naming a bad entry."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            hours, minutes = part.split(":")
            if len(hours) != 2 or len(minutes) != 2:
                raise ValueError
            out.append(datetime.time(int(hours), int(minutes)))
        except ValueError:
            raise ValueError(f"expected times HH:MM separated by commas, got {part!r}") from None
    return sorted(out)



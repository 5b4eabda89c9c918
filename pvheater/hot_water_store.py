"""The hot-water state file: the mode and the legionella dates, kept across restarts.

A small JSON file (``hot_water.state_file``), written atomically: a temporary
file beside it, flushed to disk, then renamed over the old one, so a power cut
leaves the old file or the new one, never half of one. A file that is missing
gives the defaults silently; one that cannot be parsed or holds wrong values
gives the defaults with one log line.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from pvheater.control.hotwater import MODES, HotWaterState

log = logging.getLogger("pvheater")

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedHotWater:
    """What survives a restart."""

    mode: str = "auto"
    #: Local date the tank last reached the legionella temperature.
    last_60c: datetime.date | None = None
    #: First date the legionella count ran (the start of the first interval).
    legionella_since: datetime.date | None = None

    @classmethod
    def of(cls, state: HotWaterState) -> SavedHotWater:
        """The part of a HotWaterState that is saved."""
        return cls(state.mode, state.last_60c, state.legionella_since)

    def state(self) -> HotWaterState:
        """The HotWaterState a service starts with."""
        return HotWaterState.start(self.mode, self.last_60c, self.legionella_since)


def _date(value: object, key: str) -> datetime.date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a date YYYY-MM-DD or null, got {value!r}")
    return datetime.date.fromisoformat(value)


class HotWaterStore:
    """Load and save a SavedHotWater at one path; errors are logged once per episode, never raised."""

    def __init__(self, path: Path | str, logger: logging.Logger = log) -> None:
        self.path = Path(path)
        self.log = logger
        self._save_failing = False

    def load(self, default_mode: str = "auto") -> SavedHotWater:
        """The saved state; defaults (mode default_mode) when the file is missing or unusable (one log line)."""
        default = SavedHotWater(mode=default_mode)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return default
        except OSError as exc:
            self.log.warning("%s: cannot be read (%s); hot-water mode %s", self.path, exc.strerror, default_mode)
            return default
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            mode = data.get("mode", default_mode)
            if mode not in MODES:
                raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
            return SavedHotWater(mode, _date(data.get("last_60c"), "last_60c"),
                                 _date(data.get("legionella_since"), "legionella_since"))
        except ValueError as exc:
            self.log.warning("%s: unusable (%s); hot-water mode %s", self.path, str(exc).splitlines()[0],
                             default_mode)
            return default

    def save(self, saved: SavedHotWater) -> bool:
        """Write atomically (tmp + fsync + rename); False (logged once until a save succeeds) on failure."""
        data = {
            "version": FORMAT_VERSION,
            "mode": saved.mode,
            "last_60c": None if saved.last_60c is None else saved.last_60c.isoformat(),
            "legionella_since": None if saved.legionella_since is None else saved.legionella_since.isoformat(),
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._save_failing:
                self.log.error("%s: cannot be written (%s); the hot-water mode will not survive a restart",
                               self.path, exc.strerror or exc)
            self._save_failing = True
            tmp.unlink(missing_ok=True)
            return False
        if self._save_failing:
            self.log.info("%s: written again", self.path)
        self._save_failing = False
        return True

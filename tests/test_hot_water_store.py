"""The hot-water state file: round trip, atomic write, garbage gives the defaults with one log line."""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import pytest

from pvheater.control.hotwater import HotWaterState, set_mode
from pvheater.hot_water_store import HotWaterStore, SavedHotWater


def test_round_trip_of_mode_and_dates(tmp_path: Path) -> None:
    store = HotWaterStore(tmp_path / "hw.json")
    state, _ = set_mode(HotWaterState(), "solar_only")
    state = HotWaterState(mode=state.mode, last_60c=datetime.date(2026, 11, 28),
                          legionella_since=datetime.date(2026, 11, 1))
    assert store.save(SavedHotWater.of(state))
    loaded = HotWaterStore(tmp_path / "hw.json").load()
    assert loaded == SavedHotWater("solar_only", datetime.date(2026, 11, 28), datetime.date(2026, 11, 1))
    restarted = loaded.state()
    assert (restarted.mode, restarted.last_60c, restarted.boost) == ("solar_only", datetime.date(2026, 11, 28), None)
    assert not (tmp_path / "hw.json.tmp").exists()


def test_missing_file_gives_the_configured_default_silently(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pvheater")
    assert HotWaterStore(tmp_path / "none.json").load("off") == SavedHotWater("off")
    assert caplog.records == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "Expecting"),
        ("[1, 2]", "expected a JSON object"),
        ('{"mode": "turbo"}', "mode: expected one of auto, solar_only, off, got 'turbo'"),
        ('{"mode": "auto", "last_60c": "yesterday"}', "Invalid isoformat"),
        ('{"mode": "auto", "last_60c": 5}', "last_60c: expected a date"),
    ],
)
def test_garbage_gives_the_default_mode_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, why: str
) -> None:
    path = tmp_path / "hw.json"
    path.write_text(text, encoding="utf-8")
    caplog.set_level(logging.INFO, logger="pvheater")
    assert HotWaterStore(path).load("auto") == SavedHotWater("auto")
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert why in message and "\n" not in message and "hot-water mode auto" in message


def test_write_is_atomic_a_failed_write_keeps_the_old_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hw.json"
    store = HotWaterStore(path)
    assert store.save(SavedHotWater("off"))
    before = path.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    caplog.set_level(logging.INFO, logger="pvheater")
    assert not store.save(SavedHotWater("auto"))
    assert not store.save(SavedHotWater("solar_only"))
    assert path.read_text() == before and not (tmp_path / "hw.json.tmp").exists()
    assert [r.levelname for r in caplog.records] == ["ERROR"]  # once per episode
    monkeypatch.undo()
    assert store.save(SavedHotWater("auto"))
    assert [r.levelname for r in caplog.records] == ["ERROR", "INFO"]
    assert HotWaterStore(path).load().mode == "auto"


def test_unwritable_directory_is_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = HotWaterStore(tmp_path / "no" / "such" / "dir" / "hw.json")
    caplog.set_level(logging.INFO, logger="pvheater")
    assert not store.save(SavedHotWater())
    assert len(caplog.records) == 1 and "cannot be written" in caplog.records[0].getMessage()

"""`pvheater simulate`: the metrics table, the default strategy, plots and the missing-matplotlib message."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pvheater.cli import main
from pvheater.sim import strategy as strategy_module
from pvheater.sim.params import Actuation

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_simulate_clear_with_the_oracle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "clear", "--strategy", "oracle", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("1 simulated day(s) at 1 s steps")
    header = lines[1]
    for column in ("scenario", "strategy", "heater kWh", "surplus kWh", "capture %", "draw kWh", "toggles",
                   "servo deg", "overshoot W", "outage kWh", "end SoC %", "balance %"):
        assert column in header
    row = lines[3].split()
    assert row[:2] == ["clear", "oracle"]
    heater_kwh, surplus_kwh, capture_pct = float(row[2]), float(row[3]), float(row[4])
    assert surplus_kwh > 5.0
    assert heater_kwh == pytest.approx(surplus_kwh, rel=0.01)
    assert capture_pct >= 99.0
    assert "done in" in lines[-1]


def test_unknown_names_are_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "sunny"]) == 2
    assert "unknown scenario 'sunny' (expected one of: clear, clouds" in capsys.readouterr().err
    assert main(["simulate", "--strategy", "oracle,psychic"]) == 2
    assert "unknown strategy 'psychic'" in capsys.readouterr().err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--list"]) == 0
    out = capsys.readouterr().out
    assert "gx_outage" in out and "original, oracle, oracle_late_1s, oracle_late_2s" in out


class IdleStrategy:
    name = "pvheater"
    interval_s = 60.0

    def decide(self, now_s: float, m: object, truth: object) -> Actuation:
        return Actuation(False, 20.0)


def test_default_strategy_is_pvheater(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(strategy_module.STRATEGIES, "pvheater", lambda day: IdleStrategy())
    assert main(["simulate", "--scenario", "gx_outage", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[3:-1]]
    assert [r[:2] for r in rows] == [["gx_outage", "pvheater"]]
    assert float(rows[0][2]) == 0.0  # the idle strategy never heats


def test_plot_needs_matplotlib_and_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code = main(["simulate", "--scenario", "clear", "--strategy", "oracle", "--plot", str(tmp_path / "d.png")])
    assert code == 1
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install 'pvheater[plot]'" in err
    assert not (tmp_path / "d.png").exists()


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib not installed (pip install '.[plot]')")
def test_plot_draws_the_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "day.png"
    assert main(["simulate", "--scenario", "gx_outage", "--strategy", "original", "--jobs", "1",
                 "--plot", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 20_000
    assert f"plot: {target}" in capsys.readouterr().out

"""`pvheater run`: the APScheduler job, signals, the simulated demo and hardware errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pvheater.cli import main
from pvheater.config import Config
from pvheater.service.runtime import Service
from pvheater.sim.live import SimulatedRig
from pvheater.sim.scenarios import constant_day


def test_service_job_is_the_real_tick_in_real_time() -> None:
    cfg = Config()
    cfg = replace(cfg, gx=replace(cfg.gx, timeout_s=0.5))
    day = constant_day(3000, 300, seconds=3600)
    with SimulatedRig(day, cfg, start_s=0.0, clock=time.monotonic) as rig:
        service = Service(rig.loop, 0.5, local_time=rig.local_time)
        reports = [service.job() for _ in range(3)]
        assert all(r is not None and r.fault is None for r in reports)
        assert reports[-1].m is not None and reports[-1].m.soc_pct == 100
        # a tick after the service stopped does nothing
        service.stop()


def _run_simulated(tmp_path: Path, seconds: int) -> tuple[list[str], str]:
    """`pvheater run --simulate --duration seconds` in tmp_path (no log file); stdout lines and stderr, exit 0."""
    (tmp_path / "config.yaml").write_text("log:\n  file: null\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pvheater.cli", "run", "--simulate", "--duration", str(seconds)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines(), proc.stderr


def test_run_simulate_ends_by_itself_and_prints_a_summary(tmp_path: Path) -> None:
    lines, stderr = _run_simulated(tmp_path, 4)
    assert lines[0].startswith("pvheater run --simulate: scenario 'house_steps'")
    assert any("relay" in line and "heater" in line and "servo" in line for line in lines[1:])
    assert any(line.startswith("summary: heated") for line in lines)
    assert "Traceback" not in stderr
    # the simulated rig keeps no history and writes no PID file (history.file and service.pid_file are set)
    assert not (tmp_path / "pvheater.db").exists() and not (tmp_path / "pvheater.pid").exists()


def test_sigterm_stops_cleanly_with_exit_0(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("log:\n  file: run.log\n", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pvheater.cli", "run", "--simulate", "--duration", "60"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    ticks = 0
    for line in proc.stdout:  # wait until the loop has run a few ticks
        ticks += "| relay" in line
        if ticks == 3:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "summary: heated" in out
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "SIGTERM received: stopping" in log
    assert "heater off: relay open, knob at zero" in log


def test_missing_pin_library_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.path.exists("/dev/gpiochip0"):
        pytest.skip("this machine has GPIO: the library may well work")
    path = tmp_path / "config.yaml"
    path.write_text("gpio:\n  pin_factory: lgpio\nlog:\n  file: null\n", encoding="utf-8")
    code = main(["run", "--config", str(path), "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "lgpio" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_scenario_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("log:\n  file: null\n", encoding="utf-8")
    code = main(["run", "--config", str(path), "--simulate", "--scenario", "mars"])
    assert code == 2  # a usage mistake, like every other bad option
    assert "unknown scenario 'mars'" in capsys.readouterr().err


def test_run_simulate_prints_each_second_once_with_a_legend(tmp_path: Path) -> None:
    lines, _ = _run_simulated(tmp_path, 8)
    assert lines[1].startswith("status line: battery + = charging, - = discharging; grid + = import")
    stamps = [line.split()[0] for line in lines if "| relay" in line]
    assert len(stamps) >= 7 and stamps[0] == "12:05:00"
    assert stamps == sorted(set(stamps)), stamps  # one line per second, none twice
    ticks = [line for line in lines if "| relay" in line]
    assert all("| house ~" in line and "heater asked" in line for line in ticks)
    # beside the command, what the GX's consumption says the heater draws (0 W while the relay is open)
    assert all("measured " in line for line in ticks), ticks
    assert all("measured 0 W" in line for line in ticks if "relay off" in line), ticks


def test_status_line_reads_plainly_without_data_and_leaves_a_slot_for_measured_power() -> None:
    from pvheater.control.measurements import Measurements
    from pvheater.control.messages import SAFE_OFF, HeaterOutput
    from pvheater.service.loop import status_line

    fault = HeaterOutput(False, 0.0, "fault: GX at x:502 cannot be reached; check gx.host; next attempt in 3.0 s")
    line = status_line(None, fault, None)
    assert line.startswith("GX: no data (PV, battery, grid unknown) |") and "?" not in line
    assert line.endswith("| relay off | fault: GX at x:502 cannot be reached")
    m = Measurements(time_s=0.0, values={"battery_power_w": 250.0, "battery_soc_pct": 80.0, "grid_l1_w": -40.0,
                                         "ac_consumption_l1_w": 1800.0, "pv_dc_w": 2100.0})
    on = HeaterOutput(True, 1500.0, "on")
    assert status_line(m, on, 90.0) == (
        "PV 2100 W | battery +250 W 80 % | grid -40 W | house ~300 W | "
        "heater asked 1500 W, servo 90 deg | relay ON | on"
    )
    assert "heater asked 1500 W, measured 1460 W, servo" in status_line(m, on, 90.0, measured_w=1460.0)
    no_battery = Measurements(time_s=0.0, values={"grid_l1_w": 0.0})
    assert "| battery: no data |" in status_line(no_battery, SAFE_OFF, None)


def test_readme_explains_the_status_line_as_run_prints_it() -> None:
    from pvheater.service.loop import STATUS_LEGEND

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The status line", 1)[1].split("\n## ", 1)[0]
    for term in ("**battery**: + = charging", "**grid**: + = import", "**house ~**", "*estimate*",
                 "**heater asked**", "measured N W", "**GX: no data**", "**battery: no data**"):
        assert term in section, term
    for part in ("battery + = charging", "grid + = import", "house ~ = AC consumption minus", "an estimate"):
        assert part in STATUS_LEGEND, part

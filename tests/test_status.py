"""`pvheater status`: from a running `pvheater run` (real process, GX simulator, mock pins) through the local
channel, from the history when none runs, and with neither; the signs explained, commanded vs calibrated heater
power, today's kWh, the last problem; and still no listening network socket."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pvheater.cli import main
from pvheater.config import Config
from pvheater.history import History, TickRow
from pvheater.registers import load_register_map
from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator

if TYPE_CHECKING:
    from conftest import RunProcesses


def unix_sockets_listening(pid: int) -> list[str]:
    """Paths of the process's listening Unix sockets."""
    inodes = {os.readlink(fd)[8:-1] for fd in Path(f"/proc/{pid}/fd").iterdir()
              if os.readlink(fd).startswith("socket:[")}
    out = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 8 and cols[6] in inodes and cols[5] == "01":  # state 01 with the ACC flag: listening
            out.append(cols[7])
    return out


def status(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvheater.cli", "status", "--config", "config.yaml", *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not Path("/proc/net/unix").exists(), reason="needs /proc")
def test_status_of_a_running_service_then_of_its_history(tmp_path: Path, pvheater_run: RunProcesses) -> None:
    gx = GxSimulator(load_register_map(), Config().gx.unit_ids)
    gx.set_values(SAMPLE_VALUES)
    gx.start()
    (tmp_path / "config.yaml").write_text(pvheater_run.config(gx.port, history={"row_every_s": 5},
                                                              service={"socket_file": "pvheater.sock"}),
                                          encoding="utf-8")
    proc = pvheater_run.start("config.yaml")
    sock = tmp_path / "pvheater.sock"
    try:
        deadline = time.monotonic() + 30
        data: dict = {}
        while time.monotonic() < deadline:
            done = status(tmp_path, "--json")
            data = json.loads(done.stdout) if done.stdout.strip() else {}
            if (data.get("source") == "service" and data["state"]["relay_on"]
                    and data["state"]["heater_measured_w"] is not None):
                break
            time.sleep(0.3)
        assert data.get("running") is True, data
        assert data["service"]["pid"] == proc.pid
        state = data["state"]
        assert state["soc_pct"] == 100.0 and state["grid_w"] == pytest.approx(SAMPLE_VALUES["grid_l1_w"], abs=1)
        assert state["pv_w"] == pytest.approx(SAMPLE_VALUES["pv_dc_w"], abs=1)
        assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
        assert pvheater_run.listening_inet_sockets(proc.pid) == []  # the README's claim: no listening network socket
        assert any(path.endswith("pvheater.sock") for path in unix_sockets_listening(proc.pid))

        done = status(tmp_path)
        assert done.returncode == 0, done.stderr
        screen = done.stdout
        assert f"service      running (pid {proc.pid}" in screen
        assert "values       live, from the service's last tick" in screen
        assert "+ = charging, - = discharging; SoC 100 %" in screen
        assert "+ = importing from the grid, - = exporting" in screen
        assert "commanded: relay closed, servo " in screen
        assert "by the calibration at that angle (an estimate, not measured)" in screen
        assert "measured: what the GX's consumption says the heater draws (0 W: tank full)" in screen
        assert "today        " in screen and "kWh into the heater" in screen

        gx.stop()  # a problem for the history's "last problem"
        pvheater_run.wait_for_log("GX unavailable", timeout_s=20)
        gx.start()
        pvheater_run.wait_for_log("answers again", timeout_s=20)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        gx.stop()
    assert not sock.exists()

    done = status(tmp_path)
    assert done.returncode == 0, done.stderr
    screen = done.stdout
    assert "service      not running: no pvheater service is running here (no socket at pvheater.sock)" in screen
    assert "values       from the history's last row" in screen and "-- not live" in screen
    assert "the controller asked for" in screen  # the history has the request, not a command
    assert "last problem " in screen and "gx_error: GX at 127.0.0.1" in screen and "[ended " in screen
    data = json.loads(status(tmp_path, "--json").stdout)
    assert data["running"] is False and data["source"] == "history"
    assert data["last_problem"]["kind"] == "gx_error" and data["last_problem"]["ended_by"] == "gx_ok"
    assert data["today_heater_kwh"] >= 0.0


def row(seq: int, wall_s: float, **kw: object) -> TickRow:
    base = dict(run_id="r1", seq=seq, wall_s=wall_s, mono_s=1000.0 + wall_s % 86400, span_s=3600.0, ticks=3600,
                heater_wh=500.0, captured_wh=480.0, heating_s=3600.0, failsafe_s=0.0, switches=0, pv_w=2500.0,
                battery_w=-120.0, grid_w=15.0, soc_pct=96.0, consumption_w=1900.0, want_heat=True, command_w=1500.0,
                relay_on=True, heater_w=1450.0, servo_deg=80.0, failsafe=False, reason="on: surplus", fault=None)
    base.update(kw)
    return TickRow(**base)  # type: ignore[arg-type]


def test_status_from_the_history_today_and_the_last_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    today = datetime.datetime.combine(datetime.date.today(), datetime.time(10, 0)).timestamp()
    yesterday = today - 86400
    with History(tmp_path / "history.db") as history:
        history.add_row(row(1, yesterday, span_s=0.0, heater_wh=0.0))
        history.add_row(row(2, yesterday + 3600))
        history.add_event("r1", yesterday + 100, 1.0, "gx_error", "GX at 192.0.2.1:502 cannot be reached")
        history.add_event("r1", yesterday + 160, 2.0, "gx_ok", "after 60 s")
        midnight = datetime.datetime.combine(datetime.date.today(), datetime.time()).timestamp()
        history.add_row(row(3, midnight + 1800, heater_wh=1000.0))  # 23:30-00:30: half of it is today's
        history.add_event("r2", today + 10, 3.0, "start", "pvheater 0.1.0")
        history.add_row(row(1, today + 10, run_id="r2", span_s=0.0, heater_wh=0.0))
        history.add_row(row(2, today + 1810, run_id="r2", span_s=1800.0, heater_wh=750.0))
        history.add_row(row(3, today + 3610, run_id="r2", span_s=1800.0, heater_wh=250.0, relay_on=False,
                            heater_w=0.0, battery_w=-300.0, grid_w=-40.0, reason="SoC 94 % below 95 %"))
        history.add_event("r2", today + 3000, 4.0, "loop_error", "pin driver gone")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"history:\n  file: {tmp_path / 'history.db'}\nservice:\n  socket_file: {tmp_path / 's.sock'}\n",
                   encoding="utf-8")
    assert main(["status", "--config", str(cfg)]) == 0
    screen = capsys.readouterr().out
    assert f"not running: no pvheater service is running here (no socket at {tmp_path / 's.sock'})" in screen
    assert re.search(r"battery +-300 W   \+ = charging, - = discharging; SoC 96 %", screen)
    assert re.search(r"grid +-40 W   \+ = importing from the grid, - = exporting", screen)
    assert "0 W   relay open: the heater gets nothing (servo 80 deg); the controller asked for 1500 W" in screen
    assert "reason       SoC 94 % below 95 %" in screen
    assert "today        1.50 kWh into the heater" in screen
    assert "loop_error: pin driver gone [still going]" in screen
    assert main(["status", "--config", str(cfg), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["today_heater_kwh"] == pytest.approx(1.5)
    assert data["state"]["battery_w"] == -300.0 and data["source"] == "history"


def test_status_with_neither_service_nor_history_is_one_line_exit_1(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"history:\n  file: {tmp_path / 'none.db'}\nservice:\n  socket_file: {tmp_path / 'x.sock'}\n",
                   encoding="utf-8")
    assert main(["status", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"no pvheater service is running here (no socket at {tmp_path / 'x.sock'})" in err
    assert "no history database" in err

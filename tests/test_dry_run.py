"""`pvheater run --dry-run`: the real reader and loop, no pin library opened, no heater energy in any history."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvheater.config import Config
from pvheater.service.dryrun import DryRunHeater
from pvheater.service.loop import ControlLoop
from pvheater.service.rig import Rig
from pvheater.sim.gx_server import GxSimulator
from pvheater.sim.scenarios import constant_day


def _config(tmp_path: Path, gx: GxSimulator, pin_factory: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"gx:\n  host: 127.0.0.1\n  port: {gx.port}\n  timeout_s: 1\n"
        f"gpio:\n  pin_factory: {pin_factory}\n"
        "history:\n  file: history.db\nservice:\n  pid_file: run.pid\n  socket_file: run.sock\n"
        "log:\n  file: run.log\n",
        encoding="utf-8",
    )
    return path


def _run(tmp_path: Path, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvheater.cli", "run", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout_s)


def test_dry_run_reads_the_gx_opens_no_pin_library_and_writes_no_history(gx_sim: GxSimulator, tmp_path: Path) -> None:
    # lgpio is the Pi's pin library; where it does not work, a normal run fails at the pins
    path = _config(tmp_path, gx_sim, "lgpio")
    real = _run(tmp_path, "--config", str(path), "--duration", "1")
    if real.returncode == 0:  # pragma: no cover - a Raspberry Pi with lgpio working
        pytest.skip("lgpio works here: cannot show that the dry run never opens it")
    assert "gpio.pin_factory lgpio" in real.stderr
    for name in ("history.db", "run.pid", "run.log"):
        (tmp_path / name).unlink(missing_ok=True)
    started = time.monotonic()
    done = _run(tmp_path, "--config", str(path), "--dry-run", "--duration", "10")
    assert done.returncode == 0, done.stderr
    assert 9 <= time.monotonic() - started < 40
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "pvheater DRY RUN (no pin touched, no history written): GX 127.0.0.1:" in log
    assert "battery + = charging" in log and "grid + = import" in log  # the status line's legend at start-up
    assert "PV " in log and "| relay off |" in log  # it read the GX: a status line with values
    assert "GX unavailable" not in log
    assert "pvheater stopped" in log
    # no heater energy anywhere: no history database, no PID file, no channel socket
    assert not (tmp_path / "history.db").exists()
    assert not (tmp_path / "run.pid").exists() and not (tmp_path / "run.sock").exists()


def test_dry_run_on_the_simulated_rig_leaves_the_relay_pin_open_while_the_loop_would_heat() -> None:
    """The loop decides to heat (it logs 'would close'); the relay's mock pin stays low and the plant gets 0 W."""
    day = constant_day(3000, 300, seconds=3600, initial_soc_pct=100.0)
    rig = Rig.simulated(day, Config(), start_s=0.0, dry_run=True)
    try:
        sim = rig.simulation
        assert sim is not None and isinstance(rig.heater, DryRunHeater) and rig.dry_run
        assert rig.config.history.file is None
        loop = ControlLoop(rig.reader, rig.heater, rig.config)
        would_heat = False
        for _ in range(200):
            rig.wait(1.0)
            report = loop.tick(rig.clock(), rig.local_time())
            would_heat = would_heat or (report.output.relay_on and report.output.power_w > 500)
            assert not sim.live.wiring.relay_closed
        sim.live.advance(10)
        assert would_heat and rig.heater.relay_on and rig.heater.switchings >= 1
        assert sim.plant.heater_w == 0 and not sim.plant.relay_on
    finally:
        rig.close()


def test_dry_run_help_and_simulate_header_say_dry_run(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("log:\n  file: null\n", encoding="utf-8")
    done = _run(tmp_path, "--simulate", "--dry-run", "--duration", "3")
    assert done.returncode == 0, done.stderr
    assert "DRY RUN, the loop drives no pin" in done.stdout.splitlines()[0]
    assert "battery + = charging" in done.stdout



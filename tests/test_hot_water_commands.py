"""`pvheater mode` and `pvheater boost` against a running `pvheater run --simulate`, over the local channel.

Each command is answered at once and takes effect at the service's next
tick: the first state published one tick interval after the answer shows it.
The mode survives a restart; without a service, or as another user, the
command is refused in one line with exit 1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvheater.cli import build_parser, main
from pvheater.service.channel import ChannelError, request

INTERVAL_S = 0.5
CONFIG = f"poll:\n  interval_s: {INTERVAL_S}\n"


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvheater.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=30)


def start(cwd: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "pvheater.cli", "run", "--simulate", "--duration", "120",
                             "--config", "config.yaml"], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if request(cwd / "pvheater.sock", {"cmd": "status"})["state"] is not None:
                return proc
        except ChannelError:
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the service did not come up")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def state_after(cwd: Path, wall_s: float) -> dict[str, Any]:
    """The first state the service published at or after wall_s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = request(cwd / "pvheater.sock", {"cmd": "status"})["state"]
        if state is not None and state["wall_s"] >= wall_s:
            return state
        time.sleep(0.02)
    raise AssertionError("no new state")


def command(cwd: Path, *args: str) -> tuple[str, float]:
    result = cli(cwd, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), time.time()


@pytest.fixture
def service_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "config.yaml").write_text(CONFIG)
    yield tmp_path


def test_mode_and_boost_take_effect_within_one_tick_and_the_mode_survives_a_restart(service_dir: Path) -> None:
    cwd = service_dir
    refused = cli(cwd, "mode", "off", "--config", "config.yaml")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "pvheater: no pvheater service is running here (no socket at pvheater.sock)"]
    proc = start(cwd)
    try:
        keys = set(state_after(cwd, 0.0))
        assert {"mode", "boost_left_s", "forced", "tank_temp_c", "tank_full", "heater_measured_w",
                "energy_today_solar_kwh", "energy_today_grid_kwh", "last_error", "house_w"} <= keys
        message, at = command(cwd, "mode", "off", "--config", "config.yaml")
        assert message == "mode off (from the next tick)"
        state = state_after(cwd, at + INTERVAL_S)  # a tick in flight at the answer may publish the old mode
        assert state["mode"] == "off" and not state["want_heat"] and state["heater_command_w"] == 0.0
        assert state["reason"].startswith(("off: hot water: mode off", "min on time", "knob to zero")), state

        no = cli(cwd, "boost", "45m", "--config", "config.yaml")
        assert no.returncode == 1
        assert no.stderr.strip() == ("pvheater: the service refused 'boost': boost refused: mode is off: set the "
                                     "mode to auto or solar_only first")
        command(cwd, "mode", "auto", "--config", "config.yaml")
        message, at = command(cwd, "boost", "45m", "--config", "config.yaml")
        assert message == "boost at full power for 45 min (from the next tick)"
        state = state_after(cwd, at + INTERVAL_S)
        assert state["forced"] == "boost" and state["heater_request_w"] == 2000.0
        assert 44 * 60 < state["boost_left_s"] <= 45 * 60
        message, at = command(cwd, "boost", "cancel", "--config", "config.yaml")
        assert message == "boost cancelled (from the next tick)"
        state = state_after(cwd, at + INTERVAL_S)
        assert state["forced"] is None and state["boost_left_s"] is None

        command(cwd, "mode", "solar_only", "--config", "config.yaml")
        time.sleep(2 * INTERVAL_S)
    finally:
        stop(proc)
    saved = json.loads((cwd / "hot_water_state.simulate.json").read_text())
    assert saved["mode"] == "solar_only"
    assert not (cwd / "hot_water_state.json").exists()  # a demo never touches the service's mode
    proc = start(cwd)
    try:
        assert state_after(cwd, 0.0)["mode"] == "solar_only"
    finally:
        stop(proc)


def test_another_user_is_refused_in_one_line(service_dir: Path) -> None:
    service_dir.chmod(0o755)
    build_parser()  # every command module imported here: the child, as nobody, may not read the interpreter's files
    proc = start(service_dir)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become nobody and run the command line
            os.close(read)
            sys.stdout = sys.stderr = open(write, "w", closefd=False)  # noqa: SIM115 - flushed before _exit
            code = 99
            try:
                os.setgid(65534)
                os.setuid(65534)
                code = main(["mode", "off", "--socket", str(service_dir / "pvheater.sock")])
            except BaseException as exc:  # pragma: no cover - report anything
                os.write(2, repr(exc).encode())
            finally:
                sys.stderr.flush()
                sys.stdout.flush()
                os._exit(code)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        out = os.read(read, 4096).decode()
        os.close(read)
        assert os.WEXITSTATUS(status) == 1, out
        assert out.strip().splitlines() == [
            f"pvheater: permission denied on {service_dir / 'pvheater.sock'}: the service runs as another user; "
            "run this as that user (e.g. sudo -u USER pvheater status)"]
        assert state_after(service_dir, 0.0)["mode"] == "auto"
    finally:
        stop(proc)

"""Fixtures for the GX simulator (a real Modbus-TCP server on a loopback port) and for `pvheater run` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvheater.config import GxConfig, UnitIds
from pvheater.registers import RegisterMap, load_register_map
from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator


@pytest.fixture(scope="session")
def register_map() -> RegisterMap:
    """The shipped register map."""
    return load_register_map()


@pytest.fixture
def gx_sim(register_map: RegisterMap) -> Iterator[GxSimulator]:
    """A GX simulator on 127.0.0.1 (free port), default unit IDs, sample values."""
    simulator = GxSimulator(register_map, UnitIds(), host="127.0.0.1", port=0)
    simulator.set_values(SAMPLE_VALUES)
    with simulator:
        yield simulator


@pytest.fixture
def gx_config(gx_sim: GxSimulator) -> Callable[..., GxConfig]:
    """Build a GxConfig pointing at the gx_sim fixture, with short test timeouts; keywords override."""

    def make(**overrides: Any) -> GxConfig:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": gx_sim.port,
            "timeout_s": 0.5,
            "reconnect_min_s": 1.0,
            "reconnect_max_s": 4.0,
        }
        settings.update(overrides)
        return GxConfig(**settings)

    return make


class RunProcesses:
    """`pvheater run --config FILE` as real processes in one folder; the fixture kills any still running at the end."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.procs: list[subprocess.Popen[str]] = []

    @staticmethod
    def config(gx_port: int, **sections: dict[str, Any]) -> str:
        """YAML for a service under test: the GX at gx_port, 0.5 s ticks, mock pins, run.log, history.db,
        pvheater.pid in the folder; each keyword (a section name) adds or overrides keys of that section."""
        settings: dict[str, dict[str, Any]] = {
            "gx": {"host": "127.0.0.1", "port": gx_port, "timeout_s": 0.5, "reconnect_min_s": 0.5,
                   "reconnect_max_s": 2.0},
            "poll": {"interval_s": 0.5},
            "gpio": {"pin_factory": "mock"},
            "log": {"file": "run.log"},
            "history": {"file": "history.db"},
            "service": {"pid_file": "pvheater.pid"},
        }
        for name, values in sections.items():
            settings.setdefault(name, {}).update(values)
        return yaml.safe_dump(settings, sort_keys=False)

    def start(self, cfg_file: Path | str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start one (stdout and stderr piped, text); env replaces the environment when given."""
        proc = subprocess.Popen([sys.executable, "-m", "pvheater.cli", "run", "--config", str(cfg_file), *extra],
                                cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def wait_for_log(self, text: str, timeout_s: float = 15.0, log: str = "run.log") -> str:
        """The log file's content once it holds text (AssertionError after timeout_s)."""
        path = self.cwd / log
        content = ""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            content = path.read_text(encoding="utf-8") if path.exists() else ""
            if text in content:
                return content
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the log:\n{content}")

    def wait_for_pid_file(self, pid: int, timeout_s: float = 20.0, name: str = "pvheater.pid") -> None:
        """Return once the PID file holds pid (AssertionError after timeout_s)."""
        path = self.cwd / name
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().strip() == str(pid):
                return
            time.sleep(0.05)
        raise AssertionError(f"no PID file with {pid}")

    @staticmethod
    def listening_inet_sockets(pid: int) -> list[str]:
        """TCP sockets in LISTEN and bound UDP sockets of the process (what 'no listening socket' means)."""
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found = []
        for table in ("tcp", "tcp6", "udp", "udp6"):
            path = Path(f"/proc/net/{table}")
            if path.exists():
                for line in path.read_text().splitlines()[1:]:
                    cols = line.split()
                    if (cols[3] == "0A" if table.startswith("tcp") else True) and cols[9] in inodes:
                        found.append(f"{table} {cols[1]}")
        return found

    def kill_all(self) -> None:
        """SIGKILL every process still running, and reap them all."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def pvheater_run(tmp_path: Path) -> Iterator[RunProcesses]:
    """Start `pvheater run` processes in tmp_path; whatever still runs when the test ends is killed."""
    runs = RunProcesses(tmp_path)
    try:
        yield runs
    finally:
        runs.kill_all()


"""`pvheater run` as systemd runs it, across the process boundary: sd_notify (READY, watchdog pings only after
healthy ticks, RELOADING, STOPPING) on a real unix datagram socket, SIGHUP / `pvheater reload` with a good and
a bad config, the PID file, history events, no listening socket; plus install-service and the notifier."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pvheater.cli import main
from pvheater.config import Config, load_config
from pvheater.errors import ConfigError
from pvheater.registers import load_register_map
from pvheater.service.runtime import Service
from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator
from pvheater.sim.live import SimulatedRig
from pvheater.sim.scenarios import constant_day
from pvheater.systemd import Notifier, unit_file, watchdog_seconds

CONFIG = """\
gx:
  host: 127.0.0.1
  port: {port}
  timeout_s: 0.5
  reconnect_min_s: 0.5
  reconnect_max_s: 2.0
poll:
  interval_s: 0.5
control:
  deadband_w: {deadband}
relay:
  pin: {pin}
gpio:
  pin_factory: mock
log:
  file: run.log
history:
  file: history.db
service:
  pid_file: pvheater.pid
"""


class NotifySocket:
    """What systemd listens on: a unix datagram socket; collects the messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout_s: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while not predicate(self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"notify: timed out; got {self.messages}")
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return self.messages

    def count(self, field: str) -> int:
        return sum(field in m.splitlines() for m in self.messages)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def wait_for_log(path: Path, text: str, timeout_s: float = 15.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = path.read_text(encoding="utf-8") if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log:\n{content}")


def listening_sockets(pid: int) -> list[str]:
    """TCP sockets in LISTEN and bound UDP sockets that belong to the process."""
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
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            listening = cols[3] == "0A" if table.startswith("tcp") else True
            if listening and cols[9] in inodes:
                found.append(f"{table} {cols[1]}")
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_run_as_systemd_runs_it_notify_reload_and_stop(tmp_path: Path, notify: NotifySocket) -> None:
    cfg_file = tmp_path / "config.yaml"
    gx = GxSimulator(load_register_map(), Config().gx.unit_ids)
    gx.set_values(SAMPLE_VALUES)
    gx.start()
    cfg_file.write_text(CONFIG.format(port=gx.port, deadband=40.0, pin="GPIO17"), encoding="utf-8")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen([sys.executable, "-m", "pvheater.cli", "run", "--config", str(cfg_file)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run.log"
    try:
        notify.wait_for(lambda m: any("READY=1" in x for x in m))
        notify.wait_for(lambda m: sum("WATCHDOG=1" in x for x in m) >= 2)
        assert (tmp_path / "pvheater.pid").read_text().strip() == str(proc.pid)
        assert listening_sockets(proc.pid) == []

        # a good change: applied live; the pin change waits for a restart
        cfg_file.write_text(CONFIG.format(port=gx.port, deadband=60.0, pin="GPIO5"), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "pvheater.cli", "reload", "--config", str(cfg_file)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        text = wait_for_log(log, "config reloaded from")
        assert "control.deadband_w" in text and "relay.pin changed; that takes effect at the next restart" in text
        notify.wait_for(lambda m: any("RELOADING=1" in x for x in m))

        # a bad config: `pvheater reload` refuses to send; SIGHUP anyway is rejected by the service
        cfg_file.write_text("gx:\n  port: abc\n", encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "pvheater.cli", "reload", "--config", str(cfg_file)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and "gx.port" in done.stderr
        os.kill(proc.pid, signal.SIGHUP)
        text = wait_for_log(log, "config reload rejected, the running config stays")
        assert proc.poll() is None

        # a GX outage with the relay safely open is a healthy loop: the watchdog pings go on
        gx.stop()
        wait_for_log(log, "GX unavailable, heater off")
        pings = notify.count("WATCHDOG=1")
        notify.wait_for(lambda m: sum("WATCHDOG=1" in x for x in m) >= pings + 2)

        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        gx.stop()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    notify.wait_for(lambda m: any("STOPPING=1" in x for x in m))
    assert not (tmp_path / "pvheater.pid").exists()
    assert "heater off: relay open, knob at zero" in log.read_text(encoding="utf-8")
    kinds = [k for (k,) in sqlite3.connect(tmp_path / "history.db").execute("SELECT kind FROM events ORDER BY id")]
    for kind in ("start", "config_reload", "config_rejected", "gx_error", "failsafe_enter", "stop"):
        assert kind in kinds
    assert kinds[0] == "start" and kinds[-1] == "stop"


def test_watchdog_pings_only_after_healthy_ticks(notify: NotifySocket) -> None:
    cfg = Config()
    cfg = replace(cfg, gx=replace(cfg.gx, timeout_s=0.5, reconnect_min_s=0.5, reconnect_max_s=1.0))
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})  # ping every 0.1 s
    assert notifier.watchdog_s == pytest.approx(0.4)
    with SimulatedRig(constant_day(3000, 300, seconds=3600), cfg, start_s=0.0, clock=time.monotonic) as rig:
        service = Service(rig.loop, 1.0, local_time=rig.local_time, notifier=notifier)
        service.job()
        rig.gx.stop()  # GX gone: the loop still works, relay open
        time.sleep(0.15)
        report = service.job()
        assert report is not None and report.fault is not None and not report.loop_error
        notify.wait_for(lambda m: sum("WATCHDOG=1" in x for x in m) >= 2, timeout_s=5)

        def broken(*_: object) -> None:
            raise RuntimeError("pin driver gone")

        rig.heater.apply = broken  # type: ignore[method-assign]
        before = notify.count("WATCHDOG=1")
        for _ in range(3):
            time.sleep(0.15)
            report = service.job()
            assert report is not None and report.loop_error
        notify.wait_for(lambda m: any("STATUS=loop error" in x for x in m), timeout_s=5)
        assert notify.count("WATCHDOG=1") == before  # no ping: systemd restarts a failing loop
        del rig.heater.apply  # the pins work again for the rig's own shutdown
    notifier.close()


def test_notifier_without_systemd_does_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready()
    notifier.healthy(0.0, "x")
    notifier.stopping()
    assert not notifier.notify("READY=1")


def test_notifier_abstract_socket_and_foreign_watchdog_pid() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "@pvheater-test", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert notifier.address == "\0pvheater-test"
    assert notifier.watchdog_s is None  # the watchdog is meant for another process
    notifier.close()


def test_install_service_prints_the_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("log:\n  file: null\n", encoding="utf-8")
    assert main(["install-service", "--config", str(cfg_file), "--user", "pi"]) == 0
    unit = capsys.readouterr().out
    exe = Path(sys.executable).parent / "pvheater"
    assert f"ExecStart={exe} run --config {cfg_file.resolve()}" in unit
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "KillSignal=SIGTERM", "TimeoutStopSec=15",
                 f"WorkingDirectory={tmp_path.resolve()}", "User=pi", "ExecReload=/bin/kill -HUP $MAINPID",
                 "RestartPreventExitStatus=2", "WantedBy=multi-user.target"):
        assert line in unit.splitlines(), line


def test_install_service_write_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("log:\n  file: null\n", encoding="utf-8")
    target = tmp_path / "pvheater.service"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["install-service", "--config", str(cfg_file), "--write", "--unit-path", str(target)]) == 1
    err = capsys.readouterr().err
    assert "needs root" in err and "sudo" in err and err.count("\n") == 1
    assert not target.exists()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert main(["install-service", "--config", str(cfg_file), "--write", "--unit-path", str(target)]) == 0
    assert "Type=notify" in target.read_text(encoding="utf-8")
    assert "systemctl enable --now pvheater" in capsys.readouterr().out


def test_watchdog_is_sized_from_interval_and_timeout() -> None:
    assert watchdog_seconds(1.0, 3.0) == 30
    assert watchdog_seconds(60.0, 30.0) == 190
    unit = unit_file(["/venv/bin/pvheater"], Path("/home/pi/pvheater/config.yaml"), "pi", gpio_group=False)
    assert "SupplementaryGroups" not in unit


def test_reload_without_a_running_service_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("log:\n  file: null\n", encoding="utf-8")
    assert main(["reload", "--config", str(cfg_file)]) == 1
    assert "no PID file" in capsys.readouterr().err
    (tmp_path / "pvheater.pid").write_text("999999999\n", encoding="ascii")
    assert main(["reload", "--config", str(cfg_file)]) == 1
    assert "not running" in capsys.readouterr().err
    (tmp_path / "pvheater.pid").write_text(f"{os.getppid()}\n", encoding="ascii")  # pytest's parent: not pvheater
    assert main(["reload", "--config", str(cfg_file)]) == 1
    assert "is not pvheater" in capsys.readouterr().err


def test_a_gx_timeout_at_or_over_the_stale_limit_is_refused(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("gx:\n  timeout_s: 5.0\nrelay:\n  stale_after_s: 5.0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"gx.timeout_s: must be less than relay.stale_after_s"):
        load_config(cfg_file)


def test_reload_in_process_applies_live_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from pvheater.service.runtime import ConfigReloader

    caplog.set_level(logging.INFO, logger="pvheater")
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("relay:\n  min_on_s: 60\n", encoding="utf-8")
    cfg = load_config(cfg_file)
    with SimulatedRig(constant_day(3000, 300, seconds=3600), cfg, start_s=0.0) as rig:
        service = Service(rig.loop, 1.0, reloader=ConfigReloader(cfg_file, cfg, active=rig.config))
        cfg_file.write_text("relay:\n  min_on_s: 300\npoll:\n  interval_s: 2\n", encoding="utf-8")
        assert service.reload()
        assert rig.loop.guard_settings.min_on_s == 300 and service.interval_s == 2
        assert rig.loop.guard_settings.stale_after_s == 5.0
        cfg_file.write_text("relay:\n  stale_after_s: 0.2\n", encoding="utf-8")
        assert not service.reload()
        assert rig.loop.guard_settings.min_on_s == 300  # the old config keeps running
        rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
        assert len(rejected) == 1 and "relay.stale_after_s" in rejected[0]

"""`pvheater run` as systemd runs it, across the process boundary: sd_notify (READY, watchdog pings only after
healthy ticks, RELOADING, STOPPING) on a real unix datagram socket, SIGHUP / `pvheater reload` with a good and
a bad config, the PID file, history events, no listening socket; plus install-service and the notifier."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from conftest import RunProcesses

def config(runs: RunProcesses, port: int, deadband_w: float = 40.0, pin: str = "GPIO17",
           **sections: dict[str, object]) -> str:
    """The services' config here: the common one, a deadband and a relay pin (both changed by a reload)."""
    return runs.config(port, control={"deadband_w": deadband_w}, relay={"pin": pin}, **sections)


class NotifySocket:
    """What systemd listens on: a unix datagram socket, read all the time (as systemd does) by a thread.

    Reading only while a test waits would let the kernel's queue (net.unix.max_dgram_qlen, often 10 datagrams) fill
    up during a slow step, and the service's non-blocking sends would then be dropped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="notify-socket", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._arrived:
                self.messages.append(data.decode())
                self._arrived.notify_all()

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout_s: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        with self._arrived:
            while not predicate(list(self.messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"notify: timed out; got {self.messages}")
                self._arrived.wait(left)
            return list(self.messages)

    def count(self, field: str) -> int:
        with self._arrived:
            return sum(field in m.splitlines() for m in self.messages)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_run_as_systemd_runs_it_notify_reload_and_stop(tmp_path: Path, notify: NotifySocket,
                                                       pvheater_run: RunProcesses) -> None:
    cfg_file = tmp_path / "config.yaml"
    gx = GxSimulator(load_register_map(), Config().gx.unit_ids)
    gx.set_values(SAMPLE_VALUES)
    gx.start()
    cfg_file.write_text(config(pvheater_run, gx.port), encoding="utf-8")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    proc = pvheater_run.start(cfg_file, env=env)
    log = tmp_path / "run.log"
    try:
        notify.wait_for(lambda m: any("READY=1" in x for x in m))
        notify.wait_for(lambda m: sum("WATCHDOG=1" in x for x in m) >= 2)
        assert (tmp_path / "pvheater.pid").read_text().strip() == str(proc.pid)
        assert pvheater_run.listening_inet_sockets(proc.pid) == []

        # a good change: applied live; the pin change waits for a restart
        cfg_file.write_text(config(pvheater_run, gx.port, 60.0, "GPIO5"), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "pvheater.cli", "reload", "--config", str(cfg_file)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        text = pvheater_run.wait_for_log("config reloaded from")
        assert "control.deadband_w" in text and "relay.pin changed; that takes effect at the next restart" in text
        notify.wait_for(lambda m: any("RELOADING=1" in x for x in m))

        # a bad config: `pvheater reload` refuses to send; SIGHUP anyway is rejected by the service
        cfg_file.write_text("gx:\n  port: abc\n", encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "pvheater.cli", "reload", "--config", str(cfg_file)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and "gx.port" in done.stderr
        os.kill(proc.pid, signal.SIGHUP)
        text = pvheater_run.wait_for_log("config reload rejected, the running config stays")
        assert proc.poll() is None

        # a GX outage with the relay safely open is a healthy loop: the watchdog pings go on
        gx.stop()
        pvheater_run.wait_for_log("GX unavailable, heater off")
        pings = notify.count("WATCHDOG=1")
        notify.wait_for(lambda m: sum("WATCHDOG=1" in x for x in m) >= pings + 2)

        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
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
    cfg = replace(cfg, gx=replace(cfg.gx, timeout_s=0.5, reconnect_min_s=0.5, reconnect_max_s=1.0),
                  relay=replace(cfg.relay, stale_after_s=1.0))  # failed reads are a fault 1 s after good data
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})  # ping every 0.1 s
    assert notifier.watchdog_s == pytest.approx(0.4)
    with SimulatedRig(constant_day(3000, 300, seconds=3600), cfg, start_s=0.0, clock=time.monotonic) as rig:
        service = Service(rig.loop, 1.0, local_time=rig.local_time, notifier=notifier)
        service.job()
        rig.gx.stop()  # GX gone: the loop still works, relay open
        time.sleep(0.15)
        held = service.job()  # a failed read while the data are fresh: ridden through
        assert held is not None and held.held_read is not None and held.fault is None
        time.sleep(1.1)
        report = service.job()  # the data are now older than stale_after_s: a GX fault, the loop still works
        assert report is not None and report.fault is not None and not report.loop_error
        notify.wait_for(lambda m: sum("WATCHDOG=1" in x for x in m) >= 3, timeout_s=5)

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
    assert f'ExecStart="{exe}" "run" "--config" "{cfg_file.resolve()}"' in unit
    for line in ("Type=notify", "WatchdogSec=30", "Restart=on-failure", "KillSignal=SIGTERM", "TimeoutStopSec=18",
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
    assert "pvheater is not running: no process holds pvheater.pid.lock" in capsys.readouterr().err
    assert main(["reload", "--config", str(cfg_file), "--pid", str(os.getppid())]) == 1
    assert "is not `pvheater run`" in capsys.readouterr().err


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


# --- stopping, two instances, stale PID files: real processes -------------------------------------------------


class SilencingProxy:
    """A TCP proxy in front of the GX simulator that can go silent: it then accepts and reads, but never answers."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.silent = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.requests_swallowed = 0
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        while True:
            try:
                data = src.recv(4096)
            except OSError:
                return
            if not data:
                return
            if requests and self.silent.is_set():
                self.requests_swallowed += 1
                continue  # read, never answered
            with contextlib.suppress(OSError):
                dst.sendall(data)

    def close(self) -> None:
        self.server.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.close()


def events(tmp_path: Path) -> list[tuple[str, float]]:
    with contextlib.closing(sqlite3.connect(tmp_path / "history.db")) as db:
        return list(db.execute("SELECT kind, wall_s FROM events ORDER BY id"))


@pytest.fixture
def gx() -> Iterator[GxSimulator]:
    simulator = GxSimulator(load_register_map(), Config().gx.unit_ids)
    simulator.set_values(SAMPLE_VALUES)
    simulator.start()
    yield simulator
    simulator.stop()


def test_sigterm_while_the_gx_hangs_opens_the_relay_at_once_and_exits_within_5_s(
        tmp_path: Path, gx: GxSimulator, pvheater_run: RunProcesses) -> None:
    proxy = SilencingProxy(gx.port)
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(config(pvheater_run, proxy.port, gx={"timeout_s": 4.9}, poll={"interval_s": 1.0}),
                        encoding="utf-8")
    proc = pvheater_run.start(cfg_file)
    log = tmp_path / "run.log"
    try:
        content = pvheater_run.wait_for_log("relay ON", timeout_s=30)  # the heater runs on good data
        lines = [line for line in content.splitlines() if "relay ON" in line]
        assert all("heater asked" in line and "measured " in line for line in lines), lines  # both, side by side
        proxy.silent.set()
        swallowed = proxy.requests_swallowed
        deadline = time.monotonic() + 10
        while proxy.requests_swallowed == swallowed:  # a read now waits for an answer that never comes
            assert time.monotonic() < deadline, "the service sent no request to the silent GX"
            time.sleep(0.01)
        time.sleep(0.5)
        sent_wall_s, sent_s = time.time(), time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        exit_s = time.monotonic() - sent_s
    finally:
        proxy.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert exit_s < 5.0, f"exit took {exit_s:.2f} s"
    text = log.read_text(encoding="utf-8")
    assert "SIGTERM received: stopping" in text and "heater off: relay open, knob at zero" in text
    stops = [wall_s for kind, wall_s in events(tmp_path) if kind == "stop"]
    assert len(stops) == 1 and stops[0] - sent_wall_s < 0.5  # relay open and the stop recorded at once
    assert not (tmp_path / "pvheater.pid").exists()
    print(f"SIGTERM with a hanging GX (timeout 4.9 s): exit after {exit_s:.2f} s, "
          f"stop event {stops[0] - sent_wall_s:.3f} s after the signal")


@pytest.mark.parametrize("storm", ["SIGHUP", "SIGTERM", "SIGINT"])
def test_signals_during_shutdown_are_ignored_exit_0_with_the_stop_event(
        tmp_path: Path, gx: GxSimulator, storm: str, pvheater_run: RunProcesses) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(config(pvheater_run, gx.port), encoding="utf-8")
    proc = pvheater_run.start(cfg_file)
    pvheater_run.wait_for_log("relay ON", timeout_s=30)
    first = signal.SIGINT if storm == "SIGINT" else signal.SIGTERM  # SIGINT twice: a double Ctrl-C
    proc.send_signal(first)
    deadline = time.monotonic() + 30.0
    while proc.poll() is None and time.monotonic() < deadline:  # to the very end: none may turn exit 0 into a kill
        time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(getattr(signal, storm))
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    kinds = [kind for kind, _ in events(tmp_path)]
    text = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert kinds[-1] == "stop", (kinds, text[-3000:])
    assert f"{storm} received while stopping: ignored" in text
    assert not (tmp_path / "pvheater.pid").exists()


def test_a_second_instance_is_refused_and_the_lock_survives_kill_9(tmp_path: Path, gx: GxSimulator,
                                                                   pvheater_run: RunProcesses) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(config(pvheater_run, gx.port), encoding="utf-8")
    first = pvheater_run.start(cfg_file)
    pvheater_run.wait_for_pid_file(first.pid)
    second = pvheater_run.start(cfg_file)
    _out, err = second.communicate(timeout=30)
    assert second.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"another pvheater runs with this PID file pvheater.pid (PID {first.pid})" in err
    assert (tmp_path / "pvheater.pid").read_text().strip() == str(first.pid)  # the first one's file stays
    assert first.poll() is None

    first.kill()  # kill -9: no cleanup at all, the PID file stays behind
    first.wait()
    assert (tmp_path / "pvheater.pid").read_text().strip() == str(first.pid)
    third = pvheater_run.start(cfg_file)  # the kernel dropped the lock with the process
    pvheater_run.wait_for_pid_file(third.pid)
    assert third.poll() is None
    third.send_signal(signal.SIGTERM)
    _out, err = third.communicate(timeout=30)
    assert third.returncode == 0, err
    assert not (tmp_path / "pvheater.pid").exists()


def test_the_history_file_alone_is_locked_too(tmp_path: Path, gx: GxSimulator, pvheater_run: RunProcesses) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(config(pvheater_run, gx.port), encoding="utf-8")
    other = tmp_path / "other.yaml"  # its own PID file, the same history
    other.write_text(config(pvheater_run, gx.port, service={"pid_file": "other.pid"}), encoding="utf-8")
    first = pvheater_run.start(cfg_file)
    try:
        pvheater_run.wait_for_pid_file(first.pid)
        second = pvheater_run.start(other)
        _out, err = second.communicate(timeout=30)
        assert second.returncode == 2 and f"another pvheater runs with this history file history.db (PID {first.pid})" \
            in err, err
        assert not (tmp_path / "other.pid").exists()
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert first.returncode == 0


def test_reload_with_a_stale_pid_file_signals_nothing(tmp_path: Path, gx: GxSimulator,
                                                      pvheater_run: RunProcesses) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(config(pvheater_run, gx.port), encoding="utf-8")
    (tmp_path / "run.log").write_text("", encoding="utf-8")
    # Processes whose command line mentions pvheater; SIGHUP's default action would end them.
    tail = subprocess.Popen(["tail", "-f", "run.log", "pvheater.log"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "pvheater", "run", "--config",
                             str(cfg_file)], cwd=tmp_path)
    service = None
    try:
        for victim in (tail, fake):
            (tmp_path / "pvheater.pid").write_text(f"{victim.pid}\n", encoding="ascii")
            done = subprocess.run([sys.executable, "-m", "pvheater.cli", "reload", "--config", str(cfg_file)],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=30)
            assert done.returncode == 1 and "pvheater is not running" in done.stderr and "nothing sent" in \
                done.stderr, done.stderr
        (tmp_path / "pvheater.pid").unlink()

        # A running pvheater holds the lock, but the PID file was overwritten with another process's PID.
        service = pvheater_run.start(cfg_file)
        pvheater_run.wait_for_pid_file(service.pid)
        (tmp_path / "pvheater.pid").write_text(f"{tail.pid}\n", encoding="ascii")
        done = subprocess.run([sys.executable, "-m", "pvheater.cli", "reload", "--config", str(cfg_file)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert done.returncode == 1 and f"pvheater PID {service.pid} holds its lock; nothing sent" in done.stderr
        time.sleep(0.5)
        assert tail.poll() is None and fake.poll() is None  # nobody got a SIGHUP
        assert "SIGHUP" not in (tmp_path / "run.log").read_text(encoding="utf-8")

        (tmp_path / "pvheater.pid").write_text(f"{service.pid}\n", encoding="ascii")
        done = subprocess.run([sys.executable, "-m", "pvheater.cli", "reload", "--config", str(cfg_file)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        pvheater_run.wait_for_log("config reloaded from")
    finally:
        for proc in (tail, fake, service):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    assert service is not None and service.returncode == 0


def test_instance_lock_in_process(tmp_path: Path) -> None:
    from pvheater.service.instance import AlreadyRunning, Instance, lock_holder, lock_path

    pid_file, history = tmp_path / "x.pid", tmp_path / "x.db"
    first = Instance.acquire(str(pid_file), str(history))
    assert pid_file.read_text().strip() == str(os.getpid())
    assert lock_holder(lock_path(pid_file)) == os.getpid()
    with pytest.raises(AlreadyRunning, match=rf"this PID file {pid_file} \(PID {os.getpid()}\)"):
        Instance.acquire(str(pid_file), str(history))  # a second open file description conflicts, too
    assert pid_file.exists()  # the refused one removed nothing
    first.release()
    assert not pid_file.exists() and not lock_path(pid_file).exists() and not lock_path(history).exists()
    assert lock_holder(lock_path(pid_file)) is None
    Instance.acquire(str(pid_file), None).release()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (every write: no space left on device)")
def test_a_log_file_on_a_full_disk_costs_one_line_not_a_traceback_per_record(
        tmp_path: Path, gx: GxSimulator, pvheater_run: RunProcesses) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(config(pvheater_run, gx.port, log={"file": "/dev/full"}), encoding="utf-8")
    proc = pvheater_run.start(cfg_file, "--duration", "3")
    out, err = proc.communicate(timeout=60)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    failures = [line for line in done.stderr.splitlines() if line.startswith("pvheater: log.file")]
    assert failures == ["pvheater: log.file /dev/full: cannot write (No space left on device); "
                        "logging to the console only until it works again"]
    assert "pvheater stopped: relay open, knob at zero" in done.stderr  # the console still gets every record
    assert [kind for kind, _ in events(tmp_path)][-1] == "stop"

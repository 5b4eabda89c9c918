"""The local control channel over a real Unix socket: mode 0600, stale and live sockets, the line protocol and its
bounds, one log line per error episode, the handler table, the client's messages, and the Service serving the last
tick's state."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from pvheater.config import Config
from pvheater.service.channel import Channel, ChannelError, NoService, request
from pvheater.service.runtime import Service
from pvheater.sim.live import SimulatedRig
from pvheater.sim.scenarios import constant_day


def raw(path: Path, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send bytes, read until the server closes or a line is complete."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(data)
        out = b""
        while not out.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def test_status_before_and_after_a_publish_and_the_socket_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "pvheater.sock"
    old = os.umask(0)  # even a permissive umask gives 0600
    try:
        channel = Channel(path, info={"pid": 42}).start()
    finally:
        os.umask(old)
    try:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        answer = request(path, {"cmd": "status"})
        assert answer["ok"] is True and answer["state"] is None and answer["service"]["pid"] == 42
        channel.publish({"pv_w": 1234.0})
        assert request(path, {"cmd": "status"})["state"] == {"pv_w": 1234.0}
        # several requests on one connection, one answer line each
        lines = raw(path, b'{"cmd": "status"}\n{"cmd": "status"}\n', timeout_s=5).split(b"\n")
        assert json.loads(lines[0])["state"] == {"pv_w": 1234.0}
    finally:
        channel.close()
    assert not path.exists()


def test_no_socket_and_a_stale_socket_say_no_service_runs(tmp_path: Path) -> None:
    path = tmp_path / "pvheater.sock"
    with pytest.raises(NoService, match=rf"no pvheater service is running here \(no socket at {path}\)"):
        request(path, {"cmd": "status"})
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening, then gone: what a kill -9 leaves
    stale.close()
    with pytest.raises(NoService, match="left from a service that did not stop cleanly"):
        request(path, {"cmd": "status"})
    with Channel(path):  # replaced safely: the connect test found nobody
        assert request(path, {"cmd": "status"})["ok"] is True


def test_a_live_socket_or_a_plain_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "pvheater.sock"
    with Channel(path), pytest.raises(ChannelError, match="another pvheater answers on"):
        Channel(path).start()
    plain = tmp_path / "notes.txt"
    plain.write_text("mine", encoding="utf-8")
    with pytest.raises(ChannelError, match="exists and is not a socket"):
        Channel(plain).start()
    assert plain.read_text(encoding="utf-8") == "mine"


def test_close_leaves_a_socket_that_is_no_longer_ours(tmp_path: Path) -> None:
    path = tmp_path / "pvheater.sock"
    channel = Channel(path).start()
    path.unlink()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    try:
        channel.close()
        assert path.exists()
    finally:
        other.close()


def test_bad_requests_get_an_answer_and_one_log_line_per_episode(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                                 ) -> None:
    path = tmp_path / "pvheater.sock"
    caplog.set_level(logging.WARNING, logger="pvheater")
    with Channel(path, timeout_s=0.5, max_request_bytes=256) as channel:
        assert json.loads(raw(path, b"not json\n")) == {"ok": False, "error": "expected one JSON object per line"}
        assert json.loads(raw(path, b"[1, 2]\n"))["error"] == 'expected {"cmd": NAME, ...}'
        unknown = json.loads(raw(path, b'{"cmd": "explode"}\n'))
        assert unknown["ok"] is False and "unknown cmd 'explode' (known: status)" in unknown["error"]
        too_long = json.loads(raw(path, b"x" * 5000))
        assert too_long == {"ok": False, "error": "request longer than 256 bytes"}
        warnings = [r for r in caplog.records if r.name == "pvheater"]
        assert len(warnings) == 1 and "a request was not JSON" in warnings[0].getMessage()
        assert request(path, {"cmd": "status"})["ok"]  # the episode ends with a good request
        raw(path, b"{\n")
        assert len([r for r in caplog.records if r.name == "pvheater"]) == 2
        assert channel.requests == 6


def test_a_silent_client_is_dropped_after_the_timeout_and_publish_never_waits(tmp_path: Path) -> None:
    path = tmp_path / "pvheater.sock"
    with Channel(path, timeout_s=0.5) as channel:
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(str(path))
        silent.sendall(b'{"cmd": ')  # and nothing more
        time.sleep(0.1)  # the server thread is now waiting on it
        start = time.monotonic()
        for k in range(1000):
            channel.publish({"tick": k})
        assert time.monotonic() - start < 0.5  # the tick side does not wait for the stuck client
        t0 = time.monotonic()
        assert request(path, {"cmd": "status"}, timeout_s=5)["state"] == {"tick": 999}
        assert time.monotonic() - t0 < 2.0  # served once the silent client timed out (0.5 s)
        assert silent.recv(100) == b""  # dropped
        silent.close()


def test_new_commands_only_add_a_handler(tmp_path: Path) -> None:
    path = tmp_path / "pvheater.sock"
    modes: list[str] = []

    def mode(req: dict[str, object]) -> dict[str, object]:
        modes.append(str(req["mode"]))
        return {"mode": req["mode"]}

    def broken(req: dict[str, object]) -> dict[str, object]:
        raise RuntimeError("bug")

    with Channel(path) as channel:
        channel.add_handler("mode", mode)
        channel.add_handler("boost", broken)
        assert request(path, {"cmd": "mode", "mode": "off"}) == {"ok": True, "mode": "off"}
        assert modes == ["off"]
        with pytest.raises(ChannelError, match="the service refused 'boost': boost failed: RuntimeError: bug"):
            request(path, {"cmd": "boost"})
        assert request(path, {"cmd": "status"})["ok"]  # still serving


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try as another user")
def test_another_user_gets_permission_denied(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    path = tmp_path / "pvheater.sock"
    with Channel(path):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become nobody and ask
            os.close(read)
            try:
                os.setgid(65534)
                os.setuid(65534)
                request(path, {"cmd": "status"})
                message = "connected"
            except ChannelError as exc:
                message = str(exc)
            except BaseException as exc:  # pragma: no cover - report anything
                message = repr(exc)
            os.write(write, message.encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        message = os.read(read, 4096).decode()
        os.close(read)
    assert message.startswith(f"permission denied on {path}: the service runs as another user")


def test_service_serves_the_last_ticks_state_and_removes_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "pvheater.sock"
    seen: dict[str, object] = {}

    def client(service: Service, rig: SimulatedRig) -> None:
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    answer = request(path, {"cmd": "status"})
                except NoService:
                    answer = {}
                state = answer.get("state") or {}
                if state.get("relay_on") and state.get("heater_command_w"):
                    seen["answer"] = answer
                    seen["relay_on"] = rig.heater.relay_on
                    seen["mode"] = stat.S_IMODE(os.stat(path).st_mode)
                    break
                time.sleep(0.05)
        finally:
            service.stop()

    cfg = Config()
    with SimulatedRig(constant_day(3000, 300, seconds=3600), cfg, start_s=43200.0, clock=time.monotonic) as rig:
        service = Service(rig.loop, 0.2, local_time=rig.local_time, channel=Channel(path))
        rig.live.start()
        thread = threading.Thread(target=client, args=(service, rig), daemon=True)
        thread.start()
        service.run(30.0)  # signals: the main thread
        thread.join(10)
        rig.live.stop()
    assert not path.exists()  # removed at exit
    answer = seen["answer"]
    assert isinstance(answer, dict)
    assert answer["service"]["pid"] == os.getpid() and answer["service"]["interval_s"] == 0.2
    state = answer["state"]
    assert seen["mode"] == 0o600 and seen["relay_on"] is True
    assert state["soc_pct"] == 100.0 and state["pv_w"] > 0
    assert state["heater_command_w"] > 0 and state["servo_deg"] is not None and state["failsafe"] is False
    assert state["reason"].startswith("on:") and state["fault"] is None
    for key in ("battery_w", "grid_w", "consumption_w", "heater_calibrated_w", "data_age_s"):
        assert key in state
    assert abs(state["wall_s"] - time.time()) < 15


def test_a_failing_state_or_front_end_never_stops_the_tick(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken(state: dict[str, object]) -> None:
        raise RuntimeError("no state today")

    caplog.set_level(logging.ERROR, logger="pvheater")
    with SimulatedRig(constant_day(3000, 300, seconds=3600), Config(), start_s=43200.0) as rig:
        channel = Channel(tmp_path / "s.sock")
        channel.hub.subscribe(broken)
        service = Service(rig.loop, 1.0, local_time=rig.local_time, channel=channel)
        reports = []
        for _ in range(3):
            rig.live.advance(10)
            reports.append(service.job())
        assert channel.hub.latest() is not None  # the state is there for the others
        service.hub.publish_from(lambda: {"x": 1 / 0})
        service.hub.publish_from(lambda: {"x": 1 / 0})
    assert all(r is not None and not r.loop_error for r in reports)
    errors = [r.getMessage() for r in caplog.records]
    assert errors == ["a front-end failed to take the state (RuntimeError: no state today); control goes on",
                      "cannot build the state for the front-ends (ZeroDivisionError: division by zero); "
                      "control goes on"]


def test_a_channel_that_cannot_start_is_one_log_line_and_the_service_runs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = tmp_path / "pvheater.sock"
    plain.write_text("not a socket", encoding="utf-8")
    caplog.set_level(logging.ERROR, logger="pvheater")
    with SimulatedRig(constant_day(3000, 300, seconds=3600), Config(), start_s=43200.0, clock=time.monotonic) as rig:
        service = Service(rig.loop, 0.2, local_time=rig.local_time, channel=Channel(plain))
        service.run(1.0)
    assert service.channel is None
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"service.socket_file: {plain} exists and is not a socket; move it away or choose another "
                      "path; `pvheater status` will not reach this service (control goes on)"]
    assert plain.read_text(encoding="utf-8") == "not a socket"

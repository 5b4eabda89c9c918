"""The status page (pvheater/web.py): in a real headless browser (Debian's chromium) against `pvheater run
--simulate --web`, and over HTTP against the front-end on a hub: live values that follow /api/state, the chart
(SVG elements and a screenshot), no network needed, controls only with the token, bounded requests, and
nothing listening unless web.listen is set."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import replace
from html.parser import HTMLParser
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from pvheater.cli import main
from pvheater.config import Config, WebConfig, config_from_dict
from pvheater.errors import ConfigError, PvHeaterError
from pvheater.service.hub import Hub
from pvheater.web import SERIES, WebFrontend, _Handler, load_token, web_frontend

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")
TOKEN = "0123456789abcdef0123456789abcdef"
#: Chromium without any of its own network traffic; every host but the page's loopback address resolves to nothing.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         method: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def browser(url: str, profile: Path, *args: str, timeout_s: float = 40.0) -> str:
    """Run headless chromium on url (a fresh profile) and return its stdout."""
    assert CHROMIUM is not None
    shutil.rmtree(profile, ignore_errors=True)
    done = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Dom(HTMLParser):
    """Text by element id, the attributes of <body>, and every src/href."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self.links: list[str] = []
        self._open: list[str | None] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        self.links += [a[k] for k in ("src", "href", "action") if k in a]
        if tag in ("br", "img", "input", "link", "meta"):
            return
        self._open.append(a.get("id"))
        if a.get("id"):
            self.text[a["id"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("br", "img", "input", "link", "meta"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in self._open:
            if element_id:
                self.text[element_id] += data


def png_pixels(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """(width, height, RGB pixels) of an 8-bit RGB/RGBA PNG, as chromium writes them."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    prev = bytearray(stride)
    pixels: list[tuple[int, ...]] = []
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = prev[i]
            corner = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        pixels += [tuple(line[x:x + 3]) for x in range(0, stride, channels)]
        prev = line
    return width, height, pixels


def near(pixel: tuple[int, ...], hex_colour: str, tolerance: int = 40) -> bool:
    rgb = bytes.fromhex(hex_colour.lstrip("#"))
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, rgb, strict=True))


# --- the simulated service with the page on -----------------------------------------------------------------


class SimService:
    """`pvheater run --simulate --web 127.0.0.1:PORT` in a process, and a poller keeping every /api/state seen."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "web.token").write_text(TOKEN + "\n", encoding="ascii")
        (tmp / "web.token").chmod(0o600)
        (tmp / "config.yaml").write_text("web:\n  token_file: web.token\n  refresh_s: 1.0\n", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pvheater.cli", "run", "--simulate", "--config", str(tmp / "config.yaml"),
             "--web", f"127.0.0.1:{self.port}", "--duration", "300"],
            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.states: dict[float, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()[1]
            with contextlib.suppress(OSError):
                if http(self.url + "/api/state")[0] == 200:
                    self._poller.start()
                    return
            time.sleep(0.2)
        raise AssertionError("the status page did not answer")

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(OSError, ValueError):
                status, _h, body = http(self.url + "/api/state")
                if status == 200:
                    state = json.loads(body)
                    self.states[state["wall_s"]] = state

    def stop(self) -> tuple[int, str, str]:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimService]:
    service = SimService(tmp_path_factory.mktemp("web-sim"))
    try:
        service.wait_ready()
        time.sleep(4.0)  # the heater ramps up: history rows for the chart
        yield service
    finally:
        code, out, err = service.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert f"status page: http://127.0.0.1:{service.port}/" in out
    log = (service.tmp / "pvheater.log").read_text(encoding="utf-8")
    assert f"status page on http://127.0.0.1:{service.port}/ (controls with the token)" in log


def tile_values(dom: Dom) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in ("pv_w", "house_w", "heater_w", "battery_w", "soc_pct", "grid_w"):
        text = dom.text[f"v-{key}"].strip()
        out[key] = None if text == "-" else float(text.split()[0])
    return out


def expected_tiles(state: dict[str, Any]) -> dict[str, float | None]:
    heater = state.get("heater_measured_w")
    heater = state["heater_calibrated_w"] if heater is None else heater
    house = state.get("house_w")
    if house is None:
        house = max(0.0, state["consumption_w"] - (heater or 0.0))
    return {"pv_w": state["pv_w"], "house_w": house, "heater_w": heater, "battery_w": state["battery_w"],
            "soc_pct": state["soc_pct"], "grid_w": state["grid_w"]}


@needs_chromium
def test_the_page_shows_live_values_that_follow_the_simulator_and_match_api_state(
    sim: SimService, tmp_path: Path
) -> None:
    dumps = []
    for k in range(2):
        if k:
            time.sleep(2.5)
        dumps.append(Dom(browser(sim.url + "/", tmp_path / "profile", "--virtual-time-budget=2500", "--dump-dom")))
    seen = []
    for dom in dumps:
        assert int(dom.body["data-updates"]) >= 1  # app.js fetched /api/state and wrote the values
        wall_s = float(dom.body["data-wall-s"])
        state = sim.states.get(wall_s)
        assert state is not None, f"the page shows a state /api/state never returned ({wall_s})"
        shown, expected = tile_values(dom), expected_tiles(state)
        for key, value in expected.items():
            assert value is not None and shown[key] is not None
            assert abs(shown[key] - value) <= 0.5 + 1e-9, (key, shown[key], value)
        assert dom.text["reason"].strip() == state["reason"]
        assert dom.text["v-relay_on"].strip() == ("closed" if state["relay_on"] else "open")
        seen.append((wall_s, shown))
    (t1, v1), (t2, v2) = seen
    assert t2 > t1 + 2.0
    assert v1 != v2, "the values did not change while the simulator ran"
    # the history parts: energy table, the start event, the chart
    dom = dumps[-1]
    assert float(dom.text["e-today-heater"]) >= 0.0 and "e-week-captured" in dom.text
    assert "service started" in dom.text["events"]
    assert dom.body["data-chart"] == "600x360"  # the page's <img> loaded /chart.svg
    assert "read-only" not in dom.text  # a token is configured: the controls are there
    assert "controls" in dom.text


@needs_chromium
def test_the_chart_renders_its_series(sim: SimService, tmp_path: Path) -> None:
    status, headers, body = http(sim.url + "/chart.svg")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
    svg = ET.fromstring(body)
    ns = "{http://www.w3.org/2000/svg}"
    paths = {p.get("data-series"): p for p in svg.iter(f"{ns}path") if p.get("class") == "series"}
    assert sorted(paths) == sorted(name for name, *_ in SERIES)
    for name, path in paths.items():
        assert path.get("d", "").count("L") >= 5, f"{name}: too few points"
    legend = {r.get("data-series") for r in svg.iter(f"{ns}rect") if r.get("class") == "legend"}
    assert legend == set(paths)

    shot = tmp_path / "chart.png"
    browser(sim.url + "/chart.svg", tmp_path / "profile", "--window-size=600,360", f"--screenshot={shot}")
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (600, 360)
    assert len(set(pixels)) > 20, "the chart is (nearly) one colour"
    for name, _label, colour, _axis in SERIES:
        assert sum(near(p, colour) for p in pixels) >= 30, f"{name} ({colour}) is not drawn"



def test_everything_comes_from_the_page_s_own_server(sim: SimService) -> None:
    status, headers, body = http(sim.url + "/")
    assert status == 200
    dom = Dom(body.decode("utf-8"))
    assert dom.links and all(link.startswith("/") and not link.startswith("//") for link in dom.links), dom.links
    assert "<style" not in body.decode() and "style=" not in body.decode() and "<script>" not in body.decode()
    for path in ("/", "/app.js", "/style.css", "/chart.svg", "/api/state", "/api/summary", "/nope"):
        status, headers, _body = http(sim.url + path)
        assert headers["Content-Security-Policy"].startswith("default-src 'self'"), path
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
        assert headers["Server"] == "pvheater"
        assert status == (404 if path == "/nope" else 200), path
    js = http(sim.url + "/app.js")[2].decode()
    assert "http:" not in js and "https:" not in js and "//" not in js.replace("// ", "")


def test_api_state_is_the_hub_s_state_and_controls_need_the_token(sim: SimService) -> None:
    status, _h, body = http(sim.url + "/api/state")
    state = json.loads(body)
    assert status == 200 and state["version"] == 1 and "reason" in state and "relay_on" in state
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _h, body = http(sim.url + "/api/mode", b"mode=off", form)
    assert status == 403 and json.loads(body)["error"].startswith("a token is needed")
    status, _h, body = http(sim.url + "/api/mode", b"mode=off", {**form, "X-Pvheater-Token": TOKEN[:-1] + "x"})
    assert (status, json.loads(body)) == (403, {"ok": False, "error": "wrong token"})
    status, _h, body = http(sim.url + "/api/boost", f"minutes=30&token={TOKEN[::-1]}".encode(), form)
    assert status == 403
    status, _h, body = http(sim.url + "/api/mode", b"mode=solar_only", {**form, "X-Pvheater-Token": TOKEN})
    answer = json.loads(body)
    if "mode" in state:  # the service has the mode and boost commands (hot water): they act within a tick

        def wait_state(key: str, value: object) -> None:
            deadline = time.monotonic() + 5
            while json.loads(http(sim.url + "/api/state")[2]).get(key) != value:
                assert time.monotonic() < deadline, f"{key} did not become {value!r}"
                time.sleep(0.2)

        assert status == 200 and answer["ok"] is True, answer
        wait_state("mode", "solar_only")
        status, _h, body = http(sim.url + "/api/mode", f"mode=auto&token={TOKEN}".encode(), form)
        assert status == 200, body
        wait_state("mode", "auto")
        status, _h, body = http(sim.url + "/api/boost", b"minutes=30", {**form, "X-Pvheater-Token": TOKEN})
        assert status == 200, body
        wait_state("forced", "boost")
        status, _h, body = http(sim.url + "/api/boost", b"cancel=true", {**form, "X-Pvheater-Token": TOKEN})
        assert status == 200, body
        wait_state("forced", None)
        status, _h, body = http(sim.url + "/api/mode", b"mode=bogus", {**form, "X-Pvheater-Token": TOKEN})
        assert status == 409 and json.loads(body)["error"].startswith("unknown mode"), body
    else:  # the dispatch's own answer, passed on
        assert status == 409 and answer["ok"] is False and answer["error"].startswith("unknown cmd 'mode'"), answer


def test_it_listens_only_where_configured(sim: SimService) -> None:
    from conftest import RunProcesses

    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc")
    port_hex = f"{sim.port:04X}"
    found = RunProcesses.listening_inet_sockets(sim.proc.pid)
    assert f"tcp 0100007F:{port_hex}" in found, found
    assert not any(entry.endswith(f":{port_hex}") and "0100007F" not in entry for entry in found), found


# --- the front-end on a hub, over HTTP ----------------------------------------------------------------------


@pytest.fixture
def front() -> Iterator[tuple[WebFrontend, Hub, list[dict[str, Any]]]]:
    hub = Hub()
    got: list[dict[str, Any]] = []

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        if request.get("mode") == "bad":
            raise PvHeaterError("mode must be auto, solar_only or off")
        got.append(request)
        return {"message": f"{request['cmd']} taken"}

    hub.add_handler("mode", handler)
    hub.add_handler("boost", handler)
    frontend = WebFrontend("127.0.0.1", 0, token=TOKEN)
    frontend.start(hub)
    try:
        yield frontend, hub, got
    finally:
        frontend.close()


def test_controls_with_the_token_reach_the_hub_and_its_answer_comes_back(front: Any) -> None:
    frontend, _hub, got = front
    url = frontend.url.rstrip("/")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _h, body = http(url + "/api/mode", b"mode=off", {**form, "X-Pvheater-Token": TOKEN})
    assert (status, json.loads(body)) == (200, {"ok": True, "message": "mode taken"})
    status, _h, body = http(url + "/api/boost", f"token={TOKEN}&minutes=45".encode(), form)
    assert status == 200
    status, _h, body = http(url + "/api/boost", json.dumps({"token": TOKEN, "temp_c": 60}).encode(),
                            {"Content-Type": "application/json"})
    assert status == 200
    status, _h, body = http(url + "/api/boost", b"cancel=true", {**form, "X-Pvheater-Token": TOKEN})
    assert status == 200
    assert got == [{"cmd": "mode", "mode": "off"}, {"cmd": "boost", "minutes": 45.0},
                   {"cmd": "boost", "temp_c": 60.0}, {"cmd": "boost", "cancel": True}]
    status, _h, body = http(url + "/api/mode", b"mode=bad", {**form, "X-Pvheater-Token": TOKEN})
    assert (status, json.loads(body)) == (409, {"ok": False, "error": "mode must be auto, solar_only or off"})
    for bad in (b"minutes=abc", b"minutes=1&cancel=true", b"", b"minutes=nan"):
        status, _h, body = http(url + "/api/boost", bad, {**form, "X-Pvheater-Token": TOKEN})
        assert status == 400 and json.loads(body)["ok"] is False, bad
    assert len(got) == 4  # nothing refused reached the hub
    status, _h, body = http(url + "/api/mode", b"mode=off", form)
    assert status == 403 and len(got) == 4


def test_without_a_token_the_page_is_read_only_and_the_controls_are_not_found() -> None:
    frontend = WebFrontend("127.0.0.1", 0)
    hub = Hub()
    hub.add_handler("mode", lambda req: {"message": "should not be called"})
    frontend.start(hub)
    try:
        url = frontend.url.rstrip("/")
        status, _h, body = http(url + "/api/mode", f"mode=off&token={TOKEN}".encode(),
                                {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 404 and "no web token is configured" in json.loads(body)["error"]
        status, _h, body = http(url + "/")
        page = body.decode()
        assert "Read-only: no web token is configured" in page and 'id="controls"' not in page
        status, _h, body = http(url + "/api/state")
        assert status == 503  # no tick yet
        state = {"version": 1, "wall_s": 1.7e9, "pv_w": 1234.4, "reason": "on: <b>", "relay_on": True}
        hub.publish(state)
        assert json.loads(http(url + "/api/state")[2]) == state
        page = http(url + "/")[2].decode()
        assert "1234 W" in page and "on: &lt;b&gt;" in page
        assert "no history (history.file is null)" in http(url + "/chart.svg")[2].decode()
    finally:
        frontend.close()


def test_requests_are_bounded(front: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    frontend, _hub, got = front
    url = frontend.url.rstrip("/")
    big = b"mode=" + b"x" * 5000
    status, _h, _b = http(url + "/api/mode", big, {"Content-Type": "application/x-www-form-urlencoded",
                                                    "X-Pvheater-Token": TOKEN})
    assert status == 413
    for method in ("PUT", "DELETE", "HEAD", "OPTIONS"):
        assert http(url + "/", b"" if method != "HEAD" else None, method=method)[0] == 405, method
    assert http(url + "/etc/passwd")[0] == 404 and http(url + "/static/app.js")[0] == 404
    assert http(url + "/../pvheater/web.py")[0] == 404
    # a client that sends nothing is dropped after the socket timeout
    monkeypatch.setattr(_Handler, "timeout", 0.3)
    with socket.create_connection(("127.0.0.1", frontend.port), timeout=5) as idle:
        started = time.monotonic()
        assert idle.recv(100) == b""  # closed by the server
        assert time.monotonic() - started < 3.0
    assert got == []


def _status_with_host(port: int, host: str | None, method: str = "GET", path: str = "/api/state",
                      body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    """The status of one request whose Host header is `host` (None: no Host header at all)."""
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        for name, value in {**(headers or {}), "Content-Length": str(len(body or b""))}.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_name_nobody_configured_is_refused_dns_rebinding(front: Any) -> None:
    frontend, hub, got = front
    hub.publish({"version": 1, "pv_w": 1.0})
    port = frontend.port
    machine = socket.gethostname()
    for host in (f"127.0.0.1:{port}", "127.0.0.1", f"[::1]:{port}", "192.168.1.20:8080", f"localhost:{port}",
                 f"{machine}:{port}", f"{machine.split('.')[0].upper()}.local:{port}", None):
        assert _status_with_host(port, host) == 200, host
    for host in (f"evil.example:{port}", "attacker.example", f"127.0.0.1.evil.example:{port}", "[evil]:80", ""):
        assert _status_with_host(port, host) == 403, host
        assert _status_with_host(port, host, path="/") == 403, host
    form = {"Content-Type": "application/x-www-form-urlencoded", "X-Pvheater-Token": TOKEN}
    assert _status_with_host(port, "evil.example", "POST", "/api/mode", b"mode=off", form) == 403
    assert got == []  # a rebound page cannot change the mode even with the token
    assert _status_with_host(port, f"127.0.0.1:{port}", "POST", "/api/mode", b"mode=off", form) == 200
    assert got == [{"cmd": "mode", "mode": "off"}]
    named = WebFrontend("127.0.0.1", 0, hostnames=("pvheater.fritz.box",))
    named.start(Hub())
    try:
        assert _status_with_host(named.port, "PVHEATER.fritz.box.:80", path="/") == 200
        assert _status_with_host(named.port, "other.fritz.box", path="/") == 403
    finally:
        named.close()


def _raw_status(port: int, request: bytes) -> int | None:
    """The status the server answers a raw request with (None: it closed without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request)
        answer = b""
        with contextlib.suppress(OSError):
            while b"\r\n" not in answer:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
    return int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/1.") else None


def test_malformed_requests_are_refused_and_headers_are_bounded(front: Any) -> None:
    frontend, hub, got = front
    hub.publish({"version": 1, "pv_w": 1.0})
    port = frontend.port
    ok = b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    assert _raw_status(port, ok) == 200
    assert _raw_status(port, b"GET /api/state HTTP/1.0\r\n\r\n") == 200  # no Host: not a browser
    for bad in (b"GET /api/state\r\n\r\n", b"GET  /api/state HTTP/1.1\r\n\r\n", b"GET /x HTTP/2.0\r\n\r\n",
                b"GET http://evil/ HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n", b"GET / HTTP/1.1\r\n folded\r\n\r\n"):
        assert _raw_status(port, bad) == 400, bad
    too_long = b"GET / HTTP/1.1\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n"
    assert _raw_status(port, too_long) == 431
    too_many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(70)) + b"\r\n"
    assert _raw_status(port, too_many) == 431
    # the first of a repeated header counts (an evil second Host does not win, nor does a good second one)
    assert _raw_status(port, b"GET / HTTP/1.1\r\nHost: evil.example\r\nHost: 127.0.0.1\r\n\r\n") == 403
    # keep-alive: two requests on one connection, both answered
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2)
        answer = b""
        deadline = time.monotonic() + 5
        while answer.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            answer += conn.recv(65536)
    assert answer.count(b"HTTP/1.1 200") == 2
    assert got == []


def test_the_page_refuses_an_address_it_cannot_bind_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(PvHeaterError, match=rf"^web.listen: cannot listen on 127.0.0.1:{port} \(.*\)$"):
            WebFrontend("127.0.0.1", port).start(Hub())


def test_listen_must_be_an_explicit_address() -> None:
    assert Config().web.listen is None and web_frontend(Config()) is None
    for bad, why in (("8080", "a bare port"), (":8080", "a bare port"), ("pi.local:8080", "an IP address"),
                     ("192.168.1.20:0", "1 to 65535"), ("192.168.1.20", "no port")):
        with pytest.raises(ConfigError, match=rf"^web.listen: expected ADDRESS:PORT .*{why}"):
            config_from_dict({"web": {"listen": bad}})
    assert config_from_dict({"web": {"listen": "0.0.0.0:8080"}}).web.listen == "0.0.0.0:8080"
    assert config_from_dict({"web": {"listen": "[::1]:8080"}}).web.listen == "[::1]:8080"
    with pytest.raises(ConfigError, match=r"^web.token: unknown key"):
        config_from_dict({"web": {"token": TOKEN}})
    with pytest.raises(ConfigError, match=r"^web.token_env: set web.token_file or web.token_env, not both"):
        config_from_dict({"web": {"token_file": "t", "token_env": "T"}})


def test_the_token_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "token"
    file.write_text(TOKEN + "\n", encoding="ascii")
    file.chmod(0o600)
    assert load_token(WebConfig(token_file=str(file))) == TOKEN
    assert load_token(WebConfig(token_env="PVH_TOKEN"), {"PVH_TOKEN": TOKEN}) == TOKEN
    assert load_token(WebConfig()) is None
    with pytest.raises(ConfigError, match=r"^web.token_env: the environment variable PVH_TOKEN is not set$"):
        load_token(WebConfig(token_env="PVH_TOKEN"), {})
    with pytest.raises(ConfigError, match=r"^web.token_file: cannot read .*\(No such file or directory\)$"):
        load_token(WebConfig(token_file=str(tmp_path / "missing")))
    file.write_text("short\n", encoding="ascii")
    with pytest.raises(ConfigError, match=r"^web.token_file: the token has 5 characters; use at least 16"):
        load_token(WebConfig(token_file=str(file)))


def test_a_bad_web_setting_stops_run_with_exit_2_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("port.yaml").write_text("web:\n  listen: '8080'\n", encoding="utf-8")
    Path("token.yaml").write_text("web:\n  token_file: nowhere\n", encoding="utf-8")
    cases = (
        (["--config", "port.yaml"], "web.listen: expected ADDRESS:PORT"),
        (["--web", "8080"], "argument --web: expected ADDRESS:PORT"),
        (["--web", "127.0.0.1:8080", "--config", "token.yaml"], "web.token_file: cannot read 'nowhere'"),
    )
    for args, message in cases:
        try:
            code = main(["run", "--simulate", "--duration", "1", *args])
        except SystemExit as exc:  # argparse's usage error
            code = int(exc.code or 0)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert message in err.strip().splitlines()[-1] and "Traceback" not in err, err
    assert not list(tmp_path.glob("*.sock"))  # nothing was left listening


def test_everything_on_every_interface_is_allowed_when_written_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pvheater")
    port = free_port()
    cfg = replace(Config(), web=WebConfig(listen=f"0.0.0.0:{port}"))
    frontend = web_frontend(cfg)
    assert frontend is not None
    frontend.start(Hub())
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
        assert infos == [f"status page on http://0.0.0.0:{port}/ (read-only, no token configured)"]
        assert warnings == ["web.listen 0.0.0.0: the status page answers on every network this machine is on; "
                            "never forward its port to the internet"]
    finally:
        frontend.close()


def test_the_week_read_from_an_index_since_a_time_is_the_same_as_from_the_whole_history(tmp_path: Path) -> None:
    import datetime

    from pvheater.history import History, TickRow
    from pvheater.stats import compute_stats

    db = tmp_path / "h.db"
    today = datetime.date.today()
    noon = datetime.datetime.combine(today, datetime.time(12)).timestamp()

    def row(run: str, seq: int, wall_s: float, mono_s: float, heater_wh: float) -> TickRow:
        return TickRow(run, seq, wall_s, mono_s, 3600.0, 60, heater_wh, heater_wh / 2, 3600.0, 0.0, 1, 2000.0, 0.0,
                       0.0, 99.0, 1500.0, True, 1000.0, True, 1000.0, 60.0, False, "on", None)

    with History(db) as history:
        for day in range(12):  # one row an hour for 12 days, a run per day
            base = noon - day * 86400.0
            for hour in range(1, 11):
                history.add_row(row(f"d{day}", hour, base - 36000 + hour * 3600.0, hour * 3600.0, 100.0 * (day + 1)))
        # a run that started with the clock unset (1970) and got it set later: dated through its monotonic clock
        history.add_row(row("unset", 1, 1000.0, 3600.0, 7.0))
        history.add_row(row("unset", 2, noon + 3600.0, 7200.0, 5.0))
    since = datetime.datetime.combine(today - datetime.timedelta(days=6), datetime.time()).timestamp()
    whole, quick = compute_stats(db, 7), compute_stats(db, 7, since_s=since)
    assert [d.day for d in quick.days] == [d.day for d in whole.days] and len(whole.days) == 7
    for a, b in zip(whole.days, quick.days, strict=True):
        assert (a.heater_kwh, a.captured_kwh, a.heating_h, a.switchings) == pytest.approx(
            (b.heater_kwh, b.captured_kwh, b.heating_h, b.switchings))
    assert quick.days[-1].heater_kwh == pytest.approx((10 * 100.0 + 7.0 + 5.0) / 1000.0)

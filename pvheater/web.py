"""The status page: one phone-sized page served by pvheater itself, off unless `web.listen` is set.

`WebFrontend` is a hub front-end (pvheater/service/hub.py): `start(hub)`
binds the configured address and serves from its own thread (the standard
library's ThreadingHTTPServer), `close()` stops it. It never touches the
control tick: it reads `hub.latest()` (the tick's state dict) and the
history database (read-only, in the request's thread), and sends commands
through `hub.dispatch`.

Paths (GET unless said; anything else is 404, other methods 405):

- `/` the page: live values, the reason, today's and the week's energy
  (pvheater/stats.py over the history), the chart, recent events;
- `/app.js`, `/style.css`: the page's script and style (no inline script or
  style: the Content-Security-Policy allows only this server);
- `/api/state`: `hub.latest()` as JSON, exactly the dict the hub holds;
- `/api/summary`: energy today / this week and recent events, as JSON;
- `/chart.svg`: the last 24 h from the history rows (PV, house, heater,
  battery, SoC), drawn here as SVG;
- POST `/api/mode` (`mode`), POST `/api/boost` (`minutes`, `temp_c` or
  `cancel`): only when a token is configured (404 otherwise), and only with
  that token in the `X-Pvheater-Token` header or a `token` form field
  (403 otherwise; compared with hmac.compare_digest).

Bounded: at most MAX_CLIENTS connections served at once (more are closed at
once), SOCKET_TIMEOUT_S per read or write, request bodies up to
MAX_BODY_BYTES, HTTP/1.0 (one request per connection). The page loads
nothing from elsewhere, so it works without internet.
"""

from __future__ import annotations

import contextlib
import datetime
import hmac
import html
import ipaddress
import json
import logging
import math
import os
import selectors
import socket
import socketserver
import sqlite3
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pvheater import __version__
from pvheater.config import Config, WebConfig, parse_listen
from pvheater.control.timeofday import clock_is_set
from pvheater.errors import ConfigError, PvHeaterError
from pvheater.history import HistoryError, connect_read_only
from pvheater.service.hub import Hub
from pvheater.stats import DayStats, compute_stats

log = logging.getLogger("pvheater")

#: Connections served at the same time; one more is closed without an answer.
MAX_CLIENTS = 8
#: Seconds a client may take for each read (request line, headers, body) and write.
SOCKET_TIMEOUT_S = 5.0
#: Longest request body (a command form is a few dozen bytes).
MAX_BODY_BYTES = 2048
#: Shortest token accepted (a guessable token would make the controls a toy).
MIN_TOKEN_CHARS = 16
#: Seconds the energy totals and events are reused before the history is read again.
SUMMARY_CACHE_S = 60.0
#: Seconds the chart is reused before it is drawn again.
CHART_CACHE_S = 15.0
#: The chart's span.
CHART_SPAN_S = 24 * 3600.0
#: Events shown on the page.
EVENTS_SHOWN = 12
#: Header that carries the token.
TOKEN_HEADER = "X-Pvheater-Token"

STATIC_DIR = Path(__file__).with_name("static")

SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)

#: History event kinds and how the page names them (other kinds are shown as they are).
EVENT_LABELS = {
    "start": "service started",
    "stop": "service stopped",
    "tank_full": "tank full (the heater's thermostat opened)",
    "tank_closed": "tank takes heat again",
    "failsafe_enter": "fail-safe: heater off",
    "failsafe_leave": "fail-safe ended",
    "gx_error": "GX error",
    "gx_ok": "GX answers again",
    "loop_error": "loop error",
    "loop_ok": "loop works again",
    "config_reload": "config reloaded",
    "config_rejected": "config reload rejected",
    "hot_water": "hot water",
    "forced": "forced heating ended",
    "hot_60c": "tank reached the legionella temperature",
}


# --- configuration ------------------------------------------------------------------


def load_token(cfg: WebConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The control token from web.token_file or web.token_env; None: read-only. ConfigError in one line."""
    if cfg.token_file is not None:
        key = "web.token_file"
        try:
            fd = os.open(cfg.token_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {cfg.token_file!r} ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{key}: {cfg.token_file!r} is not a regular file")
            data = handle.read(4097)
        if info.st_mode & 0o077:
            log.warning("%s: %s can be read by other users (mode %o); chmod 600 it", key, cfg.token_file,
                        stat.S_IMODE(info.st_mode))
        try:
            token = data.decode("ascii").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"{key}: {cfg.token_file!r} must hold the token as plain ASCII text") from None
    elif cfg.token_env is not None:
        key = "web.token_env"
        if cfg.token_env not in environ:
            raise ConfigError(f"{key}: the environment variable {cfg.token_env} is not set")
        token = environ[cfg.token_env].strip()
    else:
        return None
    if len(token) > 4096 or not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError(f"{key}: the token must be one word of printable ASCII, at most 4096 characters")
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{key}: the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                          "(e.g. python3 -c 'import secrets; print(secrets.token_hex(16))')")
    return token


def web_frontend(cfg: Config, environ: Mapping[str, str] = os.environ) -> WebFrontend | None:
    """The status page the config asks for (None when web.listen is null); ConfigError for a bad token source."""
    if cfg.web.listen is None:
        return None
    host, port = parse_listen(cfg.web.listen)
    return WebFrontend(
        host, port, token=load_token(cfg.web, environ), refresh_s=cfg.web.refresh_s,
        history_file=cfg.history.file, row_every_s=cfg.history.row_every_s, hostnames=cfg.web.hostnames or (),
    )


def host_names(bound_host: str, configured: tuple[str, ...] = ()) -> frozenset[str]:
    """The names (besides IP addresses) a request's Host may give: localhost, this machine's name, the
    configured ones (lower case, no trailing dot)."""
    names = {"localhost", bound_host.lower()}
    machine = socket.gethostname().lower().rstrip(".")  # no DNS: the kernel's name
    if machine:
        short = machine.split(".")[0]
        names |= {machine, short, f"{short}.local"}
    names |= {name.lower().rstrip(".") for name in configured}
    return frozenset(names)


def host_allowed(host_header: str | None, names: frozenset[str]) -> bool:
    """Whether a Host header names this page: absent (not a browser), an IP literal or one of names.

    A web page elsewhere can point its own DNS name at this address (DNS rebinding); the browser then sends
    that name as the Host, so requests under a name nobody configured are refused."""
    if host_header is None:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        literal = host[1:end] if end > 0 else ""
        try:
            ipaddress.IPv6Address(literal.split("%")[0])
        except ValueError:
            return False
        return True
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        host = name
    host = host.rstrip(".")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return host in names
    return True


# --- what the page shows ------------------------------------------------------------


def _day_dict(d: DayStats) -> dict[str, Any]:
    keep = ("heater_kwh", "captured_kwh", "heating_h", "switchings", "failsafe_min", "gx_errors", "tank_full_at")
    out = {k: v for k, v in asdict(d).items() if k in keep}
    for k, v in out.items():
        if isinstance(v, float):
            out[k] = round(v, 3)
    return out


def history_summary(path: str | None, now_s: float) -> dict[str, Any]:
    """Today's and the last 7 days' totals (pvheater.stats) and the newest events, as a JSON-ready dict."""
    out: dict[str, Any] = {"history": path, "problem": None, "today": None, "week": None, "events": []}
    if path is None:
        out["problem"] = "no history (history.file is null)"
        return out
    today = datetime.datetime.fromtimestamp(now_s).date()
    try:
        week_start = datetime.datetime.combine(today - datetime.timedelta(days=6), datetime.time())
        stats = compute_stats(path, days=7, since_s=week_start.timestamp())
        conn = connect_read_only(path)
        try:
            rows = conn.execute("SELECT wall_s, kind, detail FROM events ORDER BY id DESC LIMIT ?",
                                (EVENTS_SHOWN,)).fetchall()
        finally:
            conn.close()
    except HistoryError as exc:
        out["problem"] = str(exc)
        return out
    except sqlite3.Error as exc:
        out["problem"] = f"{path}: cannot be read ({exc})"
        return out
    week = DayStats("week")
    today_stats = DayStats(today.isoformat())
    for d in stats.days:
        day = datetime.date.fromisoformat(d.day)
        if day == today:
            today_stats = d
        if today - datetime.timedelta(days=6) <= day <= today:
            week.add(d)
    out["today"] = _day_dict(today_stats)
    out["week"] = _day_dict(week)
    out["events"] = [
        {"wall_s": wall_s, "kind": kind, "label": EVENT_LABELS.get(kind, kind.replace("_", " ")), "detail": detail}
        for wall_s, kind, detail in rows
    ]
    return out


def _js_round(value: float) -> int:
    """Round half up, as JavaScript's Math.round (the page's script formats the same way)."""
    n = math.floor(value + 0.5)
    return 0 if n == 0 else n


def heater_w(state: Mapping[str, Any]) -> float | None:
    """The heater's power: measured by the GX when known, else the calibration's estimate (0 with the relay open)."""
    measured = state.get("heater_measured_w")
    return measured if measured is not None else state.get("heater_calibrated_w")


def house_w(state: Mapping[str, Any]) -> float | None:
    """The house without the heater: state's house_w, else AC consumption minus the heater's power (at least 0)."""
    if state.get("house_w") is not None:
        return state["house_w"]
    consumption, heater = state.get("consumption_w"), heater_w(state)
    if consumption is None:
        return None
    return max(0.0, consumption - (heater or 0.0))


def fmt_value(kind: str, value: Any) -> str:
    """One value as the page shows it (app.js' fmt() does the same)."""
    if value is None:
        return "-"
    if kind == "w":
        return f"{_js_round(value)} W"
    if kind == "pct":
        return f"{_js_round(value)} %"
    if kind == "c":
        return f"{value:.1f} °C"
    if kind == "deg":
        return f"{_js_round(value)}°"
    if kind == "onoff":
        return "closed" if value else "open"
    if kind == "min":
        return f"{_js_round(value / 60.0)} min"
    if kind == "kwh":
        return f"{value:.2f} kWh"
    return str(value)


#: (key, label, format, note) of each tile; the key is a state key or a derived one (heater_w, house_w).
TILES = (
    ("pv_w", "PV", "w", "solar chargers"),
    ("house_w", "house", "w", "without the heater"),
    ("heater_w", "heater", "w", ""),
    ("battery_w", "battery", "w", "+ charging"),
    ("soc_pct", "SoC", "pct", "battery"),
    ("grid_w", "grid", "w", "+ importing"),
)
#: (key, label, format) of the smaller facts under the tiles.
FACTS = (
    ("mode", "mode", "text"),
    ("relay_on", "relay", "onoff"),
    ("servo_deg", "servo", "deg"),
    ("tank_temp_c", "tank", "c"),
    ("boost_left_s", "boost left", "min"),
    ("forced", "forced", "text"),
    ("energy_today_solar_kwh", "today solar", "kwh"),
    ("energy_today_grid_kwh", "today grid", "kwh"),
    ("fault", "fault", "text"),
    ("last_error", "last error", "text"),
)


def _state_value(state: Mapping[str, Any], key: str) -> Any:
    if key == "heater_w":
        return heater_w(state)
    if key == "house_w":
        return house_w(state)
    return state.get(key)


def _clock(wall_s: float | None) -> str:
    if wall_s is None or not clock_is_set(wall_s):
        return "(clock unset)"
    return datetime.datetime.fromtimestamp(wall_s).strftime("%Y-%m-%d %H:%M:%S")


def _energy_html(summary: Mapping[str, Any]) -> str:
    if summary.get("problem"):
        return f'<p class="muted" id="energy-problem">{html.escape(summary["problem"])}</p>'
    rows = []
    for key, label in (("today", "today"), ("week", "7 days")):
        d = summary.get(key) or {}
        rows.append(
            f'<tr><th>{label}</th><td id="e-{key}-heater">{d.get("heater_kwh", 0.0):.2f}</td>'
            f'<td id="e-{key}-captured">{d.get("captured_kwh", 0.0):.2f}</td>'
            f'<td id="e-{key}-hours">{d.get("heating_h", 0.0):.1f}</td></tr>'
        )
    return ('<table class="energy"><tr><th></th><th>heater kWh</th><th>from surplus kWh</th><th>heating h</th></tr>'
            + "".join(rows) + "</table>")


def _events_html(summary: Mapping[str, Any]) -> str:
    items = []
    for e in summary.get("events") or []:
        detail = f' <span class="muted">{html.escape(e["detail"])}</span>' if e.get("detail") else ""
        items.append(f'<li class="ev-{html.escape(e["kind"])}"><time>{html.escape(_clock(e["wall_s"]))}</time> '
                     f'{html.escape(e["label"])}{detail}</li>')
    if not items:
        return '<ul id="events"><li class="muted">no events recorded</li></ul>'
    return '<ul id="events">' + "".join(items) + "</ul>"


def _controls_html() -> str:
    modes = "".join(f'<button type="submit" name="mode" value="{m}">{m.replace("_", " ")}</button>'
                    for m in ("auto", "solar_only", "off"))
    return f"""<section id="controls"><h2>Controls</h2>
<label>token <input id="token" type="password" autocomplete="current-password"></label>
<form class="cmd" method="post" action="/api/mode">{modes}</form>
<form class="cmd" method="post" action="/api/boost">
<label>boost <input name="minutes" type="number" min="1" max="720" value="45" inputmode="numeric"> min</label>
<button type="submit">boost</button></form>
<form class="cmd" method="post" action="/api/boost">
<input type="hidden" name="cancel" value="true"><button type="submit">cancel boost</button></form>
<p id="answer" class="muted" role="status"></p></section>"""


def render_page(state: Mapping[str, Any] | None, summary: Mapping[str, Any], *, controls: bool,
                refresh_s: float) -> str:
    """The whole page as HTML (app.js then refreshes the values every refresh_s)."""
    s: Mapping[str, Any] = state or {}
    tiles = "".join(
        f'<div class="tile"><span class="label">{label}</span>'
        f'<b id="v-{key}" data-key="{key}" data-fmt="{kind}">{html.escape(fmt_value(kind, _state_value(s, key)))}</b>'
        f'<span class="note">{note}</span></div>'
        for key, label, kind, note in TILES
    )
    facts = "".join(
        f'<div class="fact" id="f-{key}"><dt>{label}</dt>'
        f'<dd id="v-{key}" data-key="{key}" data-fmt="{kind}">{html.escape(fmt_value(kind, _state_value(s, key)))}'
        f"</dd></div>"
        for key, label, kind in FACTS
    )
    reason = html.escape(str(s.get("reason") or "waiting for the first control tick"))
    wall = s.get("wall_s")
    access = _controls_html() if controls else (
        '<p class="muted" id="read-only">Read-only: no web token is configured (web.token_file or web.token_env).</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pvheater</title><link rel="stylesheet" href="/style.css"></head>
<body data-refresh-s="{refresh_s:g}" data-wall-s="{'' if wall is None else wall}" data-updates="0">
<header><h1>pvheater</h1><span id="status" class="chip">{html.escape(_status_text(s))}</span></header>
<main>
<section class="tiles">{tiles}</section>
<p id="reason" data-key="reason" data-fmt="text">{reason}</p>
<dl class="facts">{facts}</dl>
<p class="muted">values of <span id="updated">{html.escape(_clock(wall))}</span>
<span id="link" class="stale" hidden>-- no answer from pvheater</span></p>
<section><h2>Energy</h2><div id="energy">{_energy_html(summary)}</div></section>
<section><h2>Last 24 h</h2><img id="chart" src="/chart.svg" alt="PV, house, heater, battery and SoC, last 24 h"
width="600" height="360"></section>
<section><h2>Recent events</h2>{_events_html(summary)}</section>
{access}
</main>
<footer class="muted">pvheater {html.escape(__version__)} &middot; <a href="/api/state">state as JSON</a></footer>
<script src="/app.js"></script>
</body></html>
"""


def _status_text(s: Mapping[str, Any]) -> str:
    """The chip at the top: what the heater is doing in two or three words (app.js' status() does the same)."""
    if not s:
        return "starting"
    if s.get("loop_error"):
        return "loop error"
    if s.get("fault"):
        return "GX error"
    if s.get("failsafe"):
        return "fail-safe"
    if s.get("tank_full"):
        return "tank full"
    if s.get("relay_on"):
        return "heating"
    return "idle"


# --- the chart ----------------------------------------------------------------------

#: (series, label, colour, axis) in drawing order; "soc" is on the right axis (0..100 %).
SERIES = (
    ("pv", "PV", "#e0a000", "w"),
    ("house", "house", "#2f6fd6", "w"),
    ("heater", "heater", "#d7301f", "w"),
    ("battery", "battery", "#1a9850", "w"),
    ("soc", "SoC %", "#7b3fbf", "pct"),
)
CHART_W, CHART_H = 600, 360
_LEFT, _RIGHT, _TOP, _BOTTOM = 50, 34, 40, 30
#: Points across the chart (one per 2 px).
CHART_POINTS = (CHART_W - _LEFT - _RIGHT) // 2


def chart_rows(path: str, since_s: float, until_s: float) -> list[tuple[float, ...]]:
    """(wall_s, pv, house, heater, battery, soc) of the history rows between since_s and until_s, oldest first."""
    conn = connect_read_only(path)
    try:
        rows = conn.execute(
            "SELECT wall_s, pv_w, consumption_w, heater_w, battery_w, soc_pct FROM ticks "
            "WHERE wall_s >= ? AND wall_s <= ? ORDER BY wall_s", (since_s, until_s),
        ).fetchall()
    finally:
        conn.close()
    out = []
    for wall_s, pv, consumption, heater, battery, soc in rows:
        house = None if consumption is None else max(0.0, consumption - (heater or 0.0))
        out.append((wall_s, pv, house, heater, battery, soc))
    return out


def _nice_step(span: float, target: int) -> float:
    raw = span / max(1, target)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for k in (1, 2, 2.5, 5, 10):
        if k * magnitude >= raw:
            return k * magnitude
    return 10 * magnitude


def _series_points(rows: list[tuple[float, ...]], index: int, t0: float, t1: float, hold_s: float
                   ) -> list[float | None]:
    """CHART_POINTS values: each bucket's mean of the rows in it; an empty bucket holds the previous row's value
    while that row is younger than hold_s (rows come on change and at least every row_every_s), else a gap."""
    n = CHART_POINTS
    sums = [0.0] * n
    counts = [0] * n
    last_in: list[tuple[float, float] | None] = [None] * n
    width = (t1 - t0) / n
    for row in rows:
        value = row[index]
        if value is None:
            continue
        k = min(n - 1, max(0, int((row[0] - t0) / width)))
        sums[k] += value
        counts[k] += 1
        last_in[k] = (row[0], value)
    out: list[float | None] = []
    prev: tuple[float, float] | None = None
    for k in range(n):
        if counts[k]:
            out.append(sums[k] / counts[k])
            prev = last_in[k]
        elif prev is not None and t0 + (k + 1) * width - prev[0] <= hold_s:
            out.append(prev[1])
        else:
            out.append(None)
            prev = None
    return out


def _path(points: list[float | None], x_of: Callable[[int], float], y_of: Callable[[float], float]) -> str:
    parts = []
    pen_down = False
    for k, value in enumerate(points):
        if value is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{x_of(k):.1f} {y_of(value):.1f}")
        pen_down = True
    return " ".join(parts)


def chart_svg(rows: list[tuple[float, ...]], now_s: float, *, row_every_s: float = 60.0,
              message: str | None = None) -> str:
    """The last 24 h (or since the first row, if later) as an SVG: a power axis in W and the SoC axis in %."""
    w, h = CHART_W, CHART_H
    x0, x1, y0, y1 = _LEFT, w - _RIGHT, _TOP, h - _BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="14">',
           f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>']
    lx = x0
    for name, label, colour, _axis in SERIES:
        out.append(f'<rect class="legend" data-series="{name}" x="{lx}" y="12" width="16" height="5" fill="{colour}"/>'
                   f'<text x="{lx + 20}" y="20" fill="#333333">{label}</text>')
        lx += 34 + 8 * len(label)
    out.append(f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" fill="none" stroke="#bbbbbb"/>')
    if message is None and not rows:
        message = "no history rows in the last 24 h yet"
    if message is not None:
        out.append(f'<text id="chart-message" x="{(x0 + x1) / 2}" y="{(y0 + y1) / 2}" text-anchor="middle" '
                   f'fill="#666666">{html.escape(message)}</text></svg>')
        return "".join(out)
    t1 = now_s
    t0 = max(now_s - CHART_SPAN_S, rows[0][0])
    if t1 - t0 < 60.0:
        t0 = t1 - 60.0
    hold_s = max(180.0, 2.5 * row_every_s)
    series = {name: _series_points(rows, i + 1, t0, t1, hold_s) for i, (name, *_rest) in enumerate(SERIES)}
    watts = [v for name, *_r, axis in SERIES if axis == "w" for v in series[name] if v is not None]
    low, high = min([0.0, *watts]), max([100.0, *watts])
    step = _nice_step(high - low, 5)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step

    def x_of(k: int) -> float:
        return x0 + (k + 0.5) * (x1 - x0) / CHART_POINTS

    def y_w(v: float) -> float:
        return y1 - (v - low) / (high - low) * (y1 - y0)

    def y_pct(v: float) -> float:
        return y1 - max(0.0, min(100.0, v)) / 100.0 * (y1 - y0)

    level = low
    while level <= high + 1e-9:
        y = y_w(level)
        colour = "#888888" if level == 0 else "#e6e6e6"
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{colour}"/>'
                   f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#555555">{level:.0f}</text>')
        level += step
    out.append(f'<text x="4" y="{y0 - 6}" fill="#555555">W</text>'
               f'<text x="{w - 4}" y="{y0 - 6}" text-anchor="end" fill="#7b3fbf">%</text>')
    for pct in (0, 50, 100):
        out.append(f'<text x="{x1 + 4}" y="{y_pct(pct) + 4:.1f}" fill="#7b3fbf">{pct}</text>')
    tick = next(s for s in (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600) if (t1 - t0) / s <= 8)
    utc_offset = datetime.datetime.fromtimestamp(t0).astimezone().utcoffset()
    offset_s = 0.0 if utc_offset is None else utc_offset.total_seconds()
    t = math.ceil((t0 + offset_s) / tick) * tick - offset_s  # on the local clock's round times
    while t <= t1:
        x = x0 + (t - t0) / (t1 - t0) * (x1 - x0)
        label = datetime.datetime.fromtimestamp(t).strftime("%H:%M")
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#eeeeee"/>'
                   f'<text x="{x:.1f}" y="{y1 + 16}" text-anchor="middle" fill="#555555">{label}</text>')
        t += tick
    for name, _label, colour, axis in SERIES:
        d = _path(series[name], x_of, y_pct if axis == "pct" else y_w)
        dash = ' stroke-dasharray="5 3"' if axis == "pct" else ""
        out.append(f'<path class="series" data-series="{name}" d="{d}" fill="none" stroke="{colour}" '
                   f'stroke-width="2" stroke-linejoin="round"{dash}/>')
    out.append("</svg>")
    return "".join(out)


# --- the server -----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on the connections served at once."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 16

    def __init__(self, address: tuple[str, int], frontend: WebFrontend) -> None:
        self.frontend = frontend
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        try:
            super().__init__(address, _Handler)
        except BaseException:
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        self.timeout = 0.0  # handle_request() is called only when a connection waits

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (seconds on a Pi with no DNS, before the
        first control tick)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def serve(self) -> None:
        """Accept connections until stop(): one select on the listening socket and a wake-up pipe, no timeout.

        (socketserver's serve_forever wakes every poll_interval to look for a shutdown request; idle, this
        wakes only for a new connection.)"""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                ready = selector.select()
                if self._stopping:
                    break
                if any(key.fileobj is self.socket for key, _ in ready):
                    self.handle_request()  # the socket is readable: accepts at once, serves in a new thread

    def stop(self) -> None:
        """Make serve() return (from another thread)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def server_close(self) -> None:
        super().server_close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve in a new thread when a slot is free; else close the connection at once."""
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


#: Longest request line or header line, bytes; most header lines in a request.
MAX_HEADER_LINE_BYTES = 8192
MAX_HEADERS = 64


class _Headers(dict[str, str]):
    """A request's headers by lower-case name (the first of a repeated one, as email.message does)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = SOCKET_TIMEOUT_S
    #: Keep-alive: a phone refreshing every few seconds reuses its connection (no new thread per request); an
    #: idle one is closed after SOCKET_TIMEOUT_S, which frees its slot.
    protocol_version = "HTTP/1.1"

    def parse_request(self) -> bool:
        """Read the request line and the headers: METHOD PATH HTTP/1.x, then "Name: value" lines, all bounded.

        Instead of http.server's parser (email.parser per request: most of the CPU a phone polling
        /api/state costs); anything it does not take is answered 400 (431 for too long or too many)."""
        self.command = None  # type: ignore[assignment]
        self.request_version = "HTTP/1.0"  # for an error answer: with a status line, then closed
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split(" ")
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1") or not words[1].startswith("/"):
            if self.requestline:
                self.send_error(400, "expected a request line METHOD /PATH HTTP/1.1")
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_HEADER_LINE_BYTES + 1)
            if len(line) > MAX_HEADER_LINE_BYTES:
                self.send_error(431, "header line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = str(line, "iso-8859-1").partition(":")
            if not sep or not name or name != name.strip() or name[0] in " \t":
                self.send_error(400, "malformed header line")
                return False
            headers.setdefault(name.lower(), value.strip())
        else:
            self.send_error(431, f"more than {MAX_HEADERS} header lines")
            return False
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("Connection", "").lower()
        self.close_connection = self.request_version != "HTTP/1.1" or connection == "close"
        if headers.get("Expect", "").lower() == "100-continue" and not self.close_connection:
            return bool(self.handle_expect_100())
        return True

    def version_string(self) -> str:
        """The Server header: no Python version."""
        return "pvheater"

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged (a phone refreshing every 2 s would fill the log)."""

    def end_headers(self) -> None:
        """Every answer, errors included, carries the security headers."""
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: object) -> None:
        body = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json")

    def _host_refused(self) -> bool:
        """Refuse (403) a request whose Host is not this page's (see host_allowed); True when refused."""
        front = self.server.frontend
        host = self.headers.get("Host")
        allowed = front.host_verdicts.get(host)
        if allowed is None:  # remembered: a phone sends the same Host every 2 s
            allowed = host_allowed(host, front.host_names)
            if len(front.host_verdicts) >= 64:
                front.host_verdicts.clear()
            front.host_verdicts[host] = allowed
        if allowed:
            return False
        self.close_connection = True  # a body, if any, is left unread
        self._json(403, {"ok": False, "error": "unknown Host: add this name to web.hostnames, or use the address"})
        return True

    def do_GET(self) -> None:
        """The page, its script and style, the state, the summary and the chart."""
        if self._host_refused():
            return
        front = self.server.frontend
        path = urllib.parse.urlsplit(self.path).path
        if path == "/":
            page = render_page(front.hub_state(), front.summary(), controls=front.token is not None,
                               refresh_s=front.refresh_s)
            self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
        elif path in ("/app.js", "/style.css"):
            body, ctype = front.static(path)
            self._send(200, body, ctype, cache="max-age=300")
        elif path == "/api/state":
            try:
                state = front.hub_state_json()
            except (TypeError, ValueError) as exc:  # a state JSON cannot carry (NaN): say so, once per request
                self._json(500, {"ok": False, "error": f"the state cannot be sent as JSON ({exc})"})
                return
            if state is None:
                self._json(503, {"ok": False, "error": "no state yet: the first control tick has not run"})
            else:
                self._send(200, state, "application/json")
        elif path == "/api/summary":
            self._json(200, front.summary())
        elif path == "/chart.svg":
            self._send(200, front.chart().encode("utf-8"), "image/svg+xml; charset=utf-8")
        else:
            self._json(404, {"ok": False, "error": f"no such page: {path[:80]}"})

    def do_POST(self) -> None:
        """The mode and boost commands, with the token."""
        if self._host_refused():
            return
        front = self.server.frontend
        path = urllib.parse.urlsplit(self.path).path
        if path not in ("/api/mode", "/api/boost"):
            self._json(404, {"ok": False, "error": f"no such command: {path[:80]}"})
            return
        if front.token is None:
            self._json(404, {"ok": False, "error": "the controls are off: no web token is configured "
                                                   "(web.token_file or web.token_env)"})
            return
        try:
            fields = self._read_fields()
            given = self.headers.get(TOKEN_HEADER) or fields.pop("token", "")
            fields.pop("token", None)
            if not given:
                raise _Refused(403, f"a token is needed: send it in the {TOKEN_HEADER} header or a token field")
            if not hmac.compare_digest(given.encode("utf-8", "replace"), front.token.encode("ascii")):
                raise _Refused(403, "wrong token")
            request = _mode_request(fields) if path == "/api/mode" else _boost_request(fields)
        except _Refused as exc:
            self._json(exc.status, {"ok": False, "error": str(exc)})
            return
        answer = front.hub_dispatch(request)
        self._json(200 if answer.get("ok") else 409, answer)

    def _not_allowed(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _read_fields(self) -> dict[str, str]:
        """The body's fields (a form or a JSON object of strings and numbers), bounded in size."""
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise _Refused(411, "a Content-Length is needed")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise _Refused(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length)
        if len(body) < length:
            raise _Refused(400, "the request body ended early")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            text = body.decode("utf-8")
            if ctype == "application/json":
                obj = json.loads(text) if text.strip() else {}
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}
            if ctype in ("application/x-www-form-urlencoded", ""):
                return dict(urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=10))
        except ValueError as exc:
            raise _Refused(400, f"the request body cannot be read ({exc})") from None
        raise _Refused(415, "send a form (application/x-www-form-urlencoded) or a JSON object")


def _mode_request(fields: dict[str, str]) -> dict[str, Any]:
    mode = fields.get("mode", "").strip().strip('"')
    if not mode or len(mode) > 20:
        raise _Refused(400, "expected a field mode (auto, solar_only or off)")
    return {"cmd": "mode", "mode": mode}


def _number(fields: dict[str, str], key: str) -> float:
    try:
        value = float(fields[key])
    except ValueError:
        raise _Refused(400, f"{key} must be a number, got {fields[key][:20]!r}") from None
    if not math.isfinite(value):
        raise _Refused(400, f"{key} must be a finite number")
    return value


def _boost_request(fields: dict[str, str]) -> dict[str, Any]:
    given = [k for k in ("minutes", "temp_c", "cancel") if fields.get(k, "") != ""]
    if len(given) != 1:
        raise _Refused(400, "expected one of the fields minutes, temp_c or cancel")
    key = given[0]
    if key == "cancel":
        if fields["cancel"].lower() not in ("1", "true", "yes", "on"):
            raise _Refused(400, "cancel must be true")
        return {"cmd": "boost", "cancel": True}
    return {"cmd": "boost", key: _number(fields, key)}


class WebFrontend:
    """The status page as a hub front-end: start(hub) binds and serves in its own thread, close() stops it."""

    def __init__(self, host: str, port: int, *, token: str | None = None, refresh_s: float = 2.0,
                 history_file: str | None = None, row_every_s: float = 60.0,
                 clock: Callable[[], float] = time.time, hostnames: tuple[str, ...] = ()) -> None:
        self.host = host
        #: The names a request's Host may give besides IP addresses (DNS-rebinding guard).
        self.host_names = host_names(host, hostnames)
        #: host_allowed's answers by Host header (bounded: cleared at 64).
        self.host_verdicts: dict[str | None, bool] = {}
        self.port = port
        self.token = token
        self.refresh_s = refresh_s
        self.history_file = history_file
        self.row_every_s = row_every_s
        self.clock = clock
        self._hub: Hub | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._summary: tuple[float, dict[str, Any]] | None = None
        self._chart: tuple[float, str] | None = None
        self._static: dict[str, tuple[bytes, str]] = {}

    @property
    def url(self) -> str:
        """Where the page is (the bound port, once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, hub: Hub) -> None:
        """Bind web.listen and serve from a thread; PvHeaterError in one line when the address cannot be bound."""
        self._hub = hub
        for name, ctype in (("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8")):
            self._static["/" + name] = ((STATIC_DIR / name).read_bytes(), ctype)
        try:
            self._server = _Server((self.host, self.port), self)
        except OSError as exc:
            raise PvHeaterError(f"web.listen: cannot listen on {self.host}:{self.port} "
                                f"({exc.strerror or exc})") from None
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve, name="pvheater-web", daemon=True)
        self._thread.start()
        if self.host in ("0.0.0.0", "::"):
            log.warning("web.listen %s: the status page answers on every network this machine is on; "
                        "never forward its port to the internet", self.host)
        access = "controls with the token" if self.token is not None else "read-only, no token configured"
        log.info("status page on %s (%s)", self.url, access)

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        server.server_close()

    # --- used by the request threads ---

    def hub_state(self) -> dict[str, Any] | None:
        """The newest state the tick published."""
        return None if self._hub is None else self._hub.latest()

    def hub_state_json(self) -> bytes | None:
        """That state as JSON (the bytes MQTT publishes: encoded once per state)."""
        return None if self._hub is None else self._hub.latest_json()

    def hub_dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        """A command through the hub (never raises)."""
        if self._hub is None:
            return {"ok": False, "error": "the service is not running"}
        return self._hub.dispatch(request)

    def static(self, path: str) -> tuple[bytes, str]:
        """The bytes and the content type of /app.js or /style.css."""
        return self._static[path]

    def summary(self) -> dict[str, Any]:
        """Energy and events, read again after SUMMARY_CACHE_S."""
        now_s = self.clock()
        with self._lock:
            if self._summary is not None and 0 <= now_s - self._summary[0] < SUMMARY_CACHE_S:
                return self._summary[1]
            summary = history_summary(self.history_file, now_s)
            self._summary = (now_s, summary)
            return summary

    def chart(self) -> str:
        """The chart's SVG, drawn again after CHART_CACHE_S."""
        now_s = self.clock()
        with self._lock:
            if self._chart is not None and 0 <= now_s - self._chart[0] < CHART_CACHE_S:
                return self._chart[1]
            svg = self._draw_chart(now_s)
            self._chart = (now_s, svg)
            return svg

    def _draw_chart(self, now_s: float) -> str:
        if self.history_file is None:
            return chart_svg([], now_s, message="no history (history.file is null)")
        if not clock_is_set(now_s):
            return chart_svg([], now_s, message="the clock is not set yet")
        try:
            rows = chart_rows(self.history_file, now_s - CHART_SPAN_S, now_s)
        except HistoryError as exc:
            return chart_svg([], now_s, message=str(exc)[:120])
        except sqlite3.Error as exc:
            return chart_svg([], now_s, message=f"the history cannot be read ({exc})"[:120])
        return chart_svg(rows, now_s, row_every_s=self.row_every_s)

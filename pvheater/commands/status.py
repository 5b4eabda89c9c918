"""One screen: live values from the running service (local channel), else the history's last row; today, last problem.

`pvheater status` asks the service running in this directory through its
local channel (`service.socket_file`, a Unix socket only its user can use)
for the state of its last tick. When none runs, it shows the newest row of
the history (`history.file`, opened read-only) and says so. Either way it adds
today's heater energy and the last problem (the newest GX error, loop error
or rejected config reload) from the history. Signs: battery + = charging,
grid + = importing. The heater's power is what the relay and the servo were
commanded to; the "by calibration" figure is that angle through the heater's
calibration -- an estimate, not a measurement (the GX sees house and heater
together); "measured" is what the GX's consumption says the heater draws, from
how it answered the heater's own changes (0 W with the tank full), once known.
`--json` prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sqlite3
import time
from typing import Any

from pvheater.control.timeofday import clock_is_set
from pvheater.errors import PvHeaterError
from pvheater.history import HistoryError, connect_read_only
from pvheater.service.channel import ChannelError, NoService, request

#: Event kinds that count as a problem, and the kind that ends each.
PROBLEM_KINDS = {"gx_error": "gx_ok", "loop_error": "loop_ok", "config_rejected": "config_reload"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater status`."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the screen")
    parser.add_argument("--socket", metavar="PATH", help="the service's socket (default: service.socket_file)")
    parser.add_argument("--db", metavar="PATH", help="history database (default: history.file of the config)")


def run(args: argparse.Namespace) -> int:
    """Show the service's state (or the history's last row), today's energy and the last problem."""
    cfg = args.cfg
    socket_file = args.socket or cfg.service.socket_file
    db = args.db or cfg.history.file
    report = collect(socket_file, db)
    if report["source"] is None and not report["running"] and report["history_problem"] is not None:
        if args.json:
            print(json.dumps(report, indent=2))
            return 1
        raise PvHeaterError(f"{report['service_problem']}; and no history to show ({report['history_problem']})")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_screen(report))
    return 0


# --- gathering ---------------------------------------------------------------


def collect(socket_file: str | None, db: str | None, now_s: float | None = None) -> dict[str, Any]:
    """Everything the screen shows, as a JSON-ready dict."""
    now_s = time.time() if now_s is None else now_s
    out: dict[str, Any] = {
        "running": False, "source": None, "socket": socket_file, "service": None, "state": None,
        "service_problem": None, "history": db, "history_problem": None, "today_heater_kwh": None,
        "last_problem": None, "now_s": round(now_s, 3),
    }
    if socket_file is None:
        out["service_problem"] = "service.socket_file is null: no local channel to ask"
    else:
        try:
            answer = request(socket_file, {"cmd": "status"})
        except NoService as exc:
            out["service_problem"] = str(exc)
        except ChannelError as exc:  # permission denied, no answer: something is there, we cannot tell what
            out["service_problem"] = str(exc)
            out["running"] = None
        else:
            out["running"] = True
            out["service"] = answer.get("service")
            if answer.get("state") is not None:
                out["state"] = answer["state"]
                out["source"] = "service"
    if db is None:
        out["history_problem"] = "history.file is null: no history"
        return out
    try:
        conn = connect_read_only(db)
    except HistoryError as exc:
        out["history_problem"] = str(exc)
        return out
    try:
        if out["state"] is None:
            row = last_row(conn)
            if row is not None:
                out["state"] = row
                out["source"] = "history"
        out["last_problem"] = last_problem(conn)
        out["today_heater_kwh"] = today_kwh(conn, now_s)
    except sqlite3.Error as exc:
        out["history_problem"] = f"{db}: cannot be read ({exc})"
    finally:
        conn.close()
    return out


def last_row(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The newest tick row in the same keys as the service's state (pvheater/service/state.py)."""
    row = conn.execute(
        "SELECT wall_s, pv_w, battery_w, soc_pct, grid_w, consumption_w, want_heat, command_w, relay_on, heater_w, "
        "servo_deg, failsafe, reason, fault FROM ticks ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    (wall_s, pv_w, battery_w, soc_pct, grid_w, consumption_w, want_heat, request_w, relay_on, heater_w, servo_deg,
     failsafe, reason, fault) = row
    return {
        "wall_s": wall_s, "pv_w": pv_w, "battery_w": battery_w, "soc_pct": soc_pct, "grid_w": grid_w,
        "consumption_w": consumption_w, "want_heat": bool(want_heat), "heater_request_w": request_w,
        "heater_command_w": None, "heater_calibrated_w": heater_w, "relay_on": bool(relay_on),
        "servo_deg": servo_deg, "reason": reason, "fault": fault, "failsafe": bool(failsafe),
    }


def last_problem(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The newest problem event, and whether (and when) it ended."""
    kinds = tuple(PROBLEM_KINDS)
    row = conn.execute(
        f"SELECT id, run_id, wall_s, kind, detail FROM events WHERE kind IN ({','.join('?' * len(kinds))}) "
        "ORDER BY id DESC LIMIT 1", kinds,
    ).fetchone()
    if row is None:
        return None
    event_id, run_id, wall_s, kind, detail = row
    ended = conn.execute(
        "SELECT wall_s, kind, detail FROM events WHERE id > ? AND run_id = ? AND kind IN (?, 'stop') "
        "ORDER BY id LIMIT 1", (event_id, run_id, PROBLEM_KINDS[kind]),
    ).fetchone()
    return {
        "wall_s": wall_s, "kind": kind, "detail": detail,
        "ended_s": None if ended is None else ended[0],
        "ended_by": None if ended is None else ended[1],
    }


def today_kwh(conn: sqlite3.Connection, now_s: float) -> float:
    """Heater energy of the local day of now_s: rows since local midnight, a row's span cut at midnight.

    One indexed query (the history holds months of rows; `pvheater stats` reads them all): rows written while
    the clock was unset are not counted here (`pvheater stats` dates them through their run's monotonic clock).
    """
    day = datetime.datetime.fromtimestamp(now_s).date()
    midnight_s = datetime.datetime.combine(day, datetime.time()).timestamp()
    next_s = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time()).timestamp()
    row = conn.execute(
        "SELECT SUM(heater_wh * CASE WHEN span_s <= 0 OR wall_s - span_s >= ? THEN 1.0 "
        "ELSE (wall_s - ?) / span_s END) FROM ticks WHERE wall_s >= ? AND wall_s < ?",
        (midnight_s, midnight_s, midnight_s, next_s),
    ).fetchone()
    return round((row[0] or 0.0) / 1000.0, 3)


# --- the screen ------------------------------------------------------------------


def _clock(wall_s: float | None) -> str:
    if wall_s is None or not clock_is_set(wall_s):
        return "(clock unset)"
    return datetime.datetime.fromtimestamp(wall_s).strftime("%Y-%m-%d %H:%M:%S")


def _ago(now_s: float, wall_s: float | None) -> str:
    if wall_s is None or not clock_is_set(wall_s):
        return "at an unknown time"
    age_s = max(0.0, now_s - wall_s)
    if age_s < 90:
        return f"{age_s:.0f} s ago"
    if age_s < 5400:
        return f"{age_s / 60:.0f} min ago"
    if age_s < 2 * 86400:
        return f"{age_s / 3600:.1f} h ago"
    return f"{age_s / 86400:.0f} days ago"


def _w(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "?"
    return f"{value:+.0f} W" if signed else f"{value:.0f} W"


def format_screen(r: dict[str, Any]) -> str:
    """The one screen of `pvheater status`."""
    now_s = r["now_s"]
    lines = []
    if r["running"] is None:
        lines.append(f"service      unknown: {r['service_problem']}")
    elif r["running"]:
        svc = r["service"] or {}
        started = svc.get("started_s")
        up = "" if started is None else f", started {_ago(now_s, started)}"
        lines.append(f"service      running (pid {svc.get('pid', '?')}, pvheater {svc.get('version', '?')}{up})")
    else:
        lines.append(f"service      not running: {r['service_problem']}")
    s = r["state"]
    if s is None:
        lines.append("values       none yet" + ("" if r["running"] else " (the history has no rows)"))
    else:
        if r["source"] == "service":
            lines.append(f"values       live, from the service's last tick ({_ago(now_s, s.get('wall_s'))})")
        else:
            lines.append(f"values       from the history's last row, {_clock(s.get('wall_s'))} "
                         f"({_ago(now_s, s.get('wall_s'))}) -- not live")
        soc = "?" if s.get("soc_pct") is None else f"{s['soc_pct']:.0f} %"
        lines += [
            f"  PV           {_w(s.get('pv_w')):>9}   DC power of the solar chargers",
            f"  battery      {_w(s.get('battery_w'), True):>9}   + = charging, - = discharging; SoC {soc}",
            f"  grid         {_w(s.get('grid_w'), True):>9}   + = importing from the grid, - = exporting",
            f"  AC loads     {_w(s.get('consumption_w')):>9}   house and heater together (the GX cannot tell "
            "them apart)",
        ]
        servo = "-" if s.get("servo_deg") is None else f"{s['servo_deg']:.0f} deg"
        asked = "" if r["source"] == "service" else f"; the controller asked for {_w(s.get('heater_request_w'))}"
        if not s.get("relay_on"):
            lines.append(f"  heater       {'0 W':>9}   relay open: the heater gets nothing (servo {servo}){asked}")
        else:
            if s.get("heater_command_w") is not None:
                lines.append(f"  heater       {_w(s['heater_command_w']):>9}   commanded: relay closed, servo {servo}")
            else:
                lines.append(f"  heater       {'':>9}   relay closed, servo {servo}{asked}")
            lines.append(f"               {_w(s.get('heater_calibrated_w')):>9}   by the calibration at that angle "
                         "(an estimate, not measured)")
            if s.get("heater_measured_w") is not None:
                lines.append(f"               {_w(s['heater_measured_w']):>9}   measured: what the GX's consumption "
                             "says the heater draws (0 W: tank full)")
        lines.append(f"  reason       {s.get('reason') or '-'}")
        if s.get("fault"):
            lines.append(f"  fault        {s['fault']}")
        if s.get("mode") is not None:
            extra = ""
            if s.get("boost_left_s") is not None:
                extra += f", boost {s['boost_left_s'] / 60:.0f} min left"
            if s.get("forced") is not None:
                extra += f", heating with the grid allowed ({s['forced']})"
            if s.get("tank_temp_c") is not None:
                extra += f", tank {s['tank_temp_c']:.1f} degC"
            lines.append(f"  mode         {s['mode']}{extra}")
    if r["today_heater_kwh"] is not None:
        lines.append(f"today        {r['today_heater_kwh']:.2f} kWh into the heater (history, since local midnight)")
    elif r["history_problem"]:
        lines.append(f"today        unknown: {r['history_problem']}")
    p = r["last_problem"]
    if p is None:
        lines.append("last problem none recorded" if r["history_problem"] is None else "last problem unknown")
    else:
        if p["ended_s"] is not None:
            ended = f"ended {_ago(now_s, p['ended_s'])}" + (" (service stopped)" if p["ended_by"] == "stop" else "")
        else:
            ended = "still going"
        lines.append(f"last problem {_clock(p['wall_s'])} {p['kind']}: {p['detail']} [{ended}]")
    return "\n".join(lines)

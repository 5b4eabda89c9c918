"""What MQTT and the status page cost the control tick: CPU per tick with none, MQTT, web, both (BENCHMARKS.md).

Each variant runs `pvheater run`'s service (run_service) for --seconds of
real time at poll.interval_s 1 s on the simulated installation (scenario
clouds: the values change every second), with the history on (a temporary
file), in a fresh process of its own. What pvheater itself spends is the
process's CPU time (all its threads: the tick, the history, the MQTT
client's threads, the page's server) minus the CPU of the simulator's own
threads (the live plant and the GX simulator, which a real installation does
not run on the Pi), read from /proc between the first and the last tick.

- MQTT: a real mosquitto on a loopback port (started here), discovery on,
  the state published on every change;
- web: the page served on loopback with a token; a phone-like client in
  another process (one kept-alive connection, as a browser) loads the page, then asks /api/state every refresh_s
  (2 s) and /api/summary and /chart.svg every 60 s, as app.js does.

    nice -n 10 python bench/frontends_cpu.py --write    # 3 x 4 x 90 s, rewrites BENCHMARKS.md's section

A run shorter than 70 s misses the page's once-a-minute summary and chart requests.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import write_section  # noqa: E402

VARIANTS = ("none", "mqtt", "web", "both")
SIM_THREADS = ("pvheater-live-plant", "gx-simulator")
TOKEN = "bench-token-0123456789abcdef"
#: Ticks left out at the start (counted apart as the start-up): the connect, discovery and first page are done.
WARMUP_TICKS = 6
BEGIN, END = "<!-- frontends -->", "<!-- /frontends -->"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _thread_cpu_s(native_id: int) -> float:
    """CPU time of one thread of this process, in seconds (the scheduler's nanosecond count, not sampled ticks)."""
    return int(Path(f"/proc/self/task/{native_id}/schedstat").read_text().split()[0]) / 1e9


def _sim_threads_cpu_s() -> float:
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith(SIM_THREADS) and thread.native_id is not None:
            with contextlib.suppress(OSError):
                total += _thread_cpu_s(thread.native_id)
    return total


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_variant(variant: str, seconds: float, mqtt_port: int | None, web_port: int | None) -> dict[str, float]:
    """One variant in this process: the service for `seconds`; pvheater's CPU per tick between first and last tick."""
    from pvheater.config import Config
    from pvheater.service.rig import Rig
    from pvheater.service.runtime import run_service
    from pvheater.sim.scenarios import build_day, get_scenario

    os.environ["PVHEATER_BENCH_TOKEN"] = TOKEN
    cfg = Config()
    if mqtt_port is not None:
        cfg = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, enabled=True, host="127.0.0.1",
                                                                port=mqtt_port))
    if web_port is not None:
        cfg = dataclasses.replace(cfg, web=dataclasses.replace(cfg.web, listen=f"127.0.0.1:{web_port}",
                                                               token_env="PVHEATER_BENCH_TOKEN"))
    marks: list[tuple[float, float, float]] = []

    def on_tick(_report: object) -> None:
        marks.append((time.monotonic(), _process_cpu_s(), _sim_threads_cpu_s()))

    with tempfile.TemporaryDirectory(prefix="pvheater-bench-") as tmp:
        cfg = dataclasses.replace(cfg, service=dataclasses.replace(cfg.service, socket_file=None))
        rig = Rig.simulated(build_day(get_scenario("clouds")), cfg, start_s=12 * 3600.0, realtime=True)
        rig.config = dataclasses.replace(rig.config, history=dataclasses.replace(
            rig.config.history, file=str(Path(tmp) / "history.db")))
        assert rig.simulation is not None
        rig.simulation.live.start()
        run_service(rig, seconds, Path(tmp) / "config.yaml", on_tick=on_tick)
    # Steady state from tick WARMUP_TICKS on: the start-up (MQTT's connect and its ~30 discovery messages with
    # their acknowledgements, the phone's first page, script, style, chart and summary) happens once, not per
    # tick; its cost is reported apart (ticks 1..WARMUP_TICKS).
    start, first, last = marks[1], marks[WARMUP_TICKS], marks[-1]
    ticks = len(marks) - 1 - WARMUP_TICKS
    own_s = (last[1] - first[1]) - (last[2] - first[2])
    startup_s = (first[1] - start[1]) - (first[2] - start[2])
    return {"ticks": ticks, "wall_s": last[0] - first[0], "cpu_ms_per_tick": 1000.0 * own_s / ticks,
            "sim_ms_per_tick": 1000.0 * (last[2] - first[2]) / ticks,
            "startup_ms": 1000.0 * startup_s}


def phone(port: int, seconds: float) -> None:
    """A phone with the page open (one kept-alive connection, as a browser): the page, then /api/state every 2 s,
    /api/summary and /chart.svg every 60 s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(path: str) -> None:
        try:
            conn.request("GET", path)
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()  # the next request opens a new connection
            raise

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # wait for the server
        try:
            get("/")
            break
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
    for path in ("/app.js", "/style.css", "/chart.svg", "/api/summary"):
        get(path)
    next_slow = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            get("/api/state")
            if time.monotonic() >= next_slow:
                get("/api/summary")
                get("/chart.svg")
                next_slow += 60.0
        time.sleep(2.0)


class Broker:
    """mosquitto on a free loopback port, anonymous, no persistence."""

    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = _free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.1)
        raise RuntimeError("mosquitto did not start")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)


def measure(variant: str, seconds: float) -> dict[str, float]:
    """Run one variant in a child process (with a broker and a phone as it needs); its numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp)) if variant in ("mqtt", "both") else None
        web_port = _free_port() if variant in ("web", "both") else None
        args = [sys.executable, __file__, "--child", variant, "--seconds", str(seconds)]
        if broker is not None:
            args += ["--mqtt-port", str(broker.port)]
        if web_port is not None:
            args += ["--web-port", str(web_port)]
        child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        phone_proc = None
        if web_port is not None:
            phone_proc = subprocess.Popen([sys.executable, __file__, "--phone", str(web_port),
                                           "--seconds", str(seconds + 5)])
        out, _ = child.communicate(timeout=seconds + 120)
        if phone_proc is not None:
            phone_proc.kill()
            phone_proc.wait()
        if broker is not None:
            broker.close()
    if child.returncode != 0:
        raise RuntimeError(f"variant {variant} failed with exit {child.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def render(results: dict[str, dict[str, float]], spread: dict[str, tuple[float, float]], seconds: float,
           repeat: int, command: str) -> str:
    base = results["none"]["cpu_ms_per_tick"]
    lines = [
        "## Front-ends: what MQTT and the status page cost a tick (bench/frontends_cpu.py)",
        "",
        f"`{command}`: each variant runs {repeat} times (interleaved; the median run counts) for {seconds:.0f} s "
        "of real time at 1 s ticks on the simulated "
        "installation (scenario clouds, history on), in a process of its own. pvheater's CPU = the process's CPU "
        f"minus the simulator's own threads (plant, GX simulator), from tick {WARMUP_TICKS} to the last tick: the "
        f"steady state; the start-up before it (MQTT's connect with ~30 discovery messages and their "
        f"acknowledgements, the page's first load) is done once and shown apart. MQTT: a "
        "real mosquitto on loopback, discovery on. Web: a phone-like client in another process (one kept-alive "
        "connection) asks /api/state every 2 s and /api/summary and /chart.svg every 60 s. Target: MQTT and web "
        "on together cost <= 10 % more than neither.",
        "",
        "| variant | ticks | pvheater CPU per tick (median) | range over the runs | vs none | simulator CPU per tick "
        f"(not counted) | start-up, ticks 1-{WARMUP_TICKS} (once) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        r = results[name]
        rel = 100.0 * (r["cpu_ms_per_tick"] / base - 1.0)
        low, high = spread[name]
        lines.append(f"| {name} | {r['ticks']:.0f} | {r['cpu_ms_per_tick']:.2f} ms | {low:.2f}-{high:.2f} ms | "
                     f"{rel:+.1f} % | {r['sim_ms_per_tick']:.2f} ms | {r.get('startup_ms', float('nan')):.0f} ms |")
    both = 100.0 * (results["both"]["cpu_ms_per_tick"] / base - 1.0)
    verdict = "meets" if both <= 10.0 else "MISSES"
    lines += ["", f"MQTT and web together: {both:+.1f} % per tick ({verdict} the 10 % target).", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant, interleaved (the median counts)")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--phone", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mqtt-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--web-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phone is not None:
        phone(args.phone, args.seconds)
        return 0
    if args.child is not None:
        print(json.dumps(run_variant(args.child, args.seconds, args.mqtt_port, args.web_port)))
        return 0
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeat):
        for variant in VARIANTS:
            runs[variant].append(measure(variant, args.seconds))
            print(variant, runs[variant][-1], flush=True)
    results = {v: sorted(rs, key=lambda r: r["cpu_ms_per_tick"])[len(rs) // 2] for v, rs in runs.items()}
    spread = {v: (min(r["cpu_ms_per_tick"] for r in rs), max(r["cpu_ms_per_tick"] for r in rs))
              for v, rs in runs.items()}
    command = "nice -n 10 python bench/frontends_cpu.py" + (f" --seconds {args.seconds:g}"
                                                            if args.seconds != 90.0 else "") + (
        f" --repeat {args.repeat}" if args.repeat != 3 else "") + " --write"
    text = render(results, spread, args.seconds, args.repeat, command)
    print(text)
    if args.write:
        write_section(HERE.parent / "BENCHMARKS.md", f"{BEGIN}\n{text}{END}", BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())

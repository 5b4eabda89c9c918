"""The service runtime: the control tick on a monotonic timer, wall-clock jobs, signals, reload, PID file.

`Service` runs a ControlLoop every `poll.interval_s` (time.monotonic; APScheduler
runs the wall-clock jobs), handles SIGINT/SIGTERM (heater off, clean stop) and
SIGHUP (re-read the config through `ConfigReloader`), keeps the history and
speaks sd_notify when systemd started it (pvheater/systemd.py: READY,
watchdog pings after healthy ticks, STOPPING). `run_service` wires it to the
rig (pvheater/service/rig.py): the real GX and pins, or the simulated ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import logging.handlers
import math
import os
import select
import signal
import socket
import sys
import threading
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from pvheater import __version__
from pvheater.config import Config, LogConfig, load_config
from pvheater.control.timeofday import clock_is_set
from pvheater.errors import ConfigError, PvHeaterError
from pvheater.forecast import ForecastFetcher
from pvheater.history import History, HistoryRecorder
from pvheater.hot_water_store import HotWaterStore
from pvheater.service.channel import Channel, channel_for
from pvheater.service.hot_water import HotWater, register
from pvheater.service.hub import Frontend, Hub
from pvheater.service.instance import Instance
from pvheater.service.loop import STATUS_LEGEND, ControlLoop, HeaterPort, TickReport
from pvheater.service.rig import Rig, trusted_local_time
from pvheater.service.state import tick_state
from pvheater.systemd import Notifier
from pvheater.tank_sensor import TankSensor, TankSensorThread
from pvheater.web import web_frontend

log = logging.getLogger("pvheater")


class _StopNow(BaseException):
    """Raised by the SIGINT/SIGTERM handler into a tick in flight; not an Exception, so no `except` swallows it."""


#: Longest wait at shutdown for the servo to reach zero before its pins are released.
_PARK_WAIT_S = 1.0
#: How often the independent fail-safe timer checks the age of the last fresh snapshot.
FAILSAFE_PERIOD_S = 0.2


def configure_logging(cfg: LogConfig, console_level: str | None = None) -> None:
    """Console handler, plus a rotating file when configured; pymodbus' own connect errors muted."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    console.setLevel(console_level or cfg.level)
    root.addHandler(console)
    if cfg.file:
        try:
            file_handler = LogFileHandler(cfg.file, maxBytes=cfg.max_bytes, backupCount=cfg.backups, encoding="utf-8")
        except OSError as exc:
            raise PvHeaterError(f"log.file: cannot open {cfg.file!r} ({exc.strerror})") from None
        file_handler.setFormatter(fmt)
        file_handler.setLevel(cfg.level)
        root.addHandler(file_handler)
    root.setLevel(min(logging.getLevelName(cfg.level), logging.getLevelName(console_level or cfg.level)))
    # The reader reports GX failures once per episode; pymodbus would log every reconnect attempt.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


class _AppendFile:
    """An unbuffered append-only text file: a failed write loses that record only (nothing stays buffered)."""

    def __init__(self, path: str, encoding: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.encoding = encoding

    def write(self, text: str) -> int:
        """Write text with one system call per chunk (O_APPEND: whole records, no interleaving)."""
        data = memoryview(text.encode(self.encoding, "replace"))
        while data:
            data = data[os.write(self.fd, data):]
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the file position (RotatingFileHandler seeks to the end before tell())."""
        return os.lseek(self.fd, offset, whence)

    def tell(self) -> int:
        """The current position: the file size in append mode."""
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def close(self) -> None:
        """Close the file."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class LogFileHandler(logging.handlers.RotatingFileHandler):
    """The rotating log file; when it cannot be written (a full disk) one line on stderr, no traceback per record.

    Records go on to the console while the file fails; each new record tries
    the file again, and a line on stderr says when it works again.
    """

    def __init__(self, filename: str, **kwargs: typing.Any) -> None:
        super().__init__(filename, **kwargs)
        self.failing = False

    def _open(self) -> typing.Any:
        return _AppendFile(self.baseFilename, self.encoding or "utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record (rotating when due); a failure is reported once per episode."""
        self._failed_now = False
        super().emit(record)
        if self.failing and not self._failed_now:
            self.failing = False
            sys.stderr.write(f"pvheater: log.file {self.baseFilename}: written again\n")

    def handleError(self, record: logging.LogRecord) -> None:
        """One line on stderr for the first failure of an episode; the record is lost from the file only."""
        self._failed_now = True
        exc = sys.exc_info()[1]
        if not self.failing:
            self.failing = True
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            with contextlib.suppress(Exception):
                sys.stderr.write(f"pvheater: log.file {self.baseFilename}: cannot write ({reason}); "
                                 "logging to the console only until it works again\n")

    def close(self) -> None:
        """Close the file; a failure here changes nothing (the service is ending)."""
        with contextlib.suppress(OSError):
            super().close()


class Service:
    """The service side: the control tick on a monotonic timer, wall-clock jobs on APScheduler, signals, a clean stop.

    The tick is timed with time.monotonic, not by APScheduler: APScheduler 3
    times its jobs by the wall clock, which NTP moves by years on a Pi without
    RTC (forward, an interval job would enumerate every missed second; back,
    the tick would stop until the clock caught up). APScheduler runs the jobs
    that belong to the wall clock: the daily history housekeeping and the
    forecast fetches (forecast.fetch_times, when forecast.enabled).

    SIGINT/SIGTERM stop it (heater off), SIGHUP re-reads the config before the
    next tick (see ConfigReloader). With a Notifier it tells systemd READY,
    pings the watchdog after healthy ticks and says STOPPING.
    """

    def __init__(
        self,
        loop: ControlLoop,
        interval_s: float,
        local_time: Callable[[], datetime.time | None] = trusted_local_time,
        on_tick: Callable[[TickReport], None] | None = None,
        *,
        notifier: Notifier | None = None,
        recorder: HistoryRecorder | None = None,
        reloader: ConfigReloader | None = None,
        retention_days: int | None = None,
        wall_clock: Callable[[], float] = time.time,
        forecast: ForecastFetcher | None = None,
        channel: Channel | None = None,
        frontends: Sequence[Frontend] = (),
    ) -> None:
        self.loop = loop
        self.interval_s = interval_s
        self.local_time = local_time
        self.on_tick = on_tick
        self.notifier = notifier if notifier is not None else Notifier({})
        self.recorder = recorder
        self.reloader = reloader
        self.retention_days = retention_days
        self.wall_clock = wall_clock
        self.forecast = forecast
        #: The local control channel (pvheater status), started by run(); None: none.
        self.channel = channel
        #: The newest state and the command table every front-end shares (the channel's, when there is one).
        self.hub = channel.hub if channel is not None else Hub()
        #: Further front-ends (MQTT, the status page): started by run() after the channel, closed at shutdown.
        self.frontends: list[Frontend] = list(frontends)
        self._started: list[Frontend] = []
        self.scheduler = BackgroundScheduler()
        self._tick_lock = threading.Lock()
        self._stopping = False
        self._stop_requested = False
        self._reload_requested = False
        self._deadline_s: float | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._failsafe_stop = threading.Event()
        self._in_tick = False
        self._interrupted = False
        #: Signal handlers to put back after the shutdown (see hold_signals()).
        self._saved_handlers: dict[int, object] = {}
        self._hold_signals = False
        self._ignored_logged: set[int] = set()

    def job(self) -> TickReport | None:
        """The poll+control job: one tick of the loop (a plain function tests call directly)."""
        with self._tick_lock:
            if self._stopping:
                return None
            now_s = time.monotonic()
            self._in_tick = True  # a stop signal now abandons the tick (a GX read may hang for seconds)
            try:
                report = self.loop.tick(now_s, self.local_time(), self.wall_clock())
            finally:
                self._in_tick = False
        status = report.status(self.loop.heater.servo_angle_deg)
        took_s = time.monotonic() - now_s
        if report.loop_error:
            self.notifier.status(f"loop error, heater off: {report.fault}")
        elif took_s > self.loop.guard_settings.stale_after_s:  # an overrun tick is not a healthy one
            self.notifier.status(f"tick took {took_s:.1f} s: {status}")
        else:
            self.notifier.healthy(now_s, status)
        if self._deadline_s is not None and now_s >= self._deadline_s:
            self.stop()
        self.hub.publish_from(lambda: tick_state(report, self.loop.heater, self.wall_clock()))
        if self.on_tick is not None:
            self.on_tick(report)
        return report

    def housekeeping(self) -> None:
        """The daily job: delete history older than retention_days (not while the wall clock is unset)."""
        if self.recorder is None or self.retention_days is None:
            return
        now_s = self.wall_clock()
        if not clock_is_set(now_s):
            log.debug("history housekeeping skipped: the wall clock is not set yet")
            return
        self.recorder.history.purge(now_s - self.retention_days * 86400.0)

    def forecast_job(self) -> None:
        """The forecast cron job: fetch within the rate limit and cache it (never raises; not with an unset clock)."""
        if self.forecast is None:
            return
        if self.local_time() is None:
            log.debug("forecast fetch skipped: the wall clock is not set yet")
            return
        self.forecast.run(self.wall_clock())

    def reload(self) -> bool:
        """Re-read the config file and apply what can change while running; False when rejected (old config stays)."""
        if self.reloader is None:
            log.warning("config reload is not supported here; restart to change the config")
            return False
        now_s = time.monotonic()
        self.notifier.reloading(now_s)
        try:
            new_config, changed, need_restart = self.reloader.load()
        except ConfigError as exc:
            log.error("config reload rejected, the running config stays: %s", exc)
            if self.recorder is not None:
                self.recorder.event(now_s, "config_rejected", str(exc))
            self.notifier.ready()
            return False
        with self._tick_lock:
            self.loop.apply_config(new_config)
            self.interval_s = new_config.poll.interval_s
            self.retention_days = new_config.history.retention_days
            if self.recorder is not None:
                self.recorder.row_every_s = new_config.history.row_every_s
        self.reloader.accept()
        log.info("config reloaded from %s: %s", self.reloader.path, ", ".join(changed) or "nothing changed")
        if need_restart:
            log.warning("config reload: %s changed; that takes effect at the next restart", ", ".join(need_restart))
        if self.recorder is not None:
            detail = ", ".join(changed) or "nothing changed"
            if need_restart:
                detail += f"; at next restart: {', '.join(need_restart)}"
            self.recorder.event(now_s, "config_reload", detail)
        self.notifier.ready()
        return True

    def run(self, duration_s: float | None = None) -> None:
        """Tick every interval until SIGINT/SIGTERM or duration_s; the heater is off afterwards."""
        self._deadline_s = None if duration_s is None else time.monotonic() + duration_s
        self._wake = socket.socketpair()
        for sock in self._wake:
            sock.setblocking(False)
        if self.recorder is not None and self.retention_days is not None:
            self.scheduler.add_job(
                self.housekeeping, "interval", hours=24, max_instances=1, coalesce=True, id="housekeeping",
                next_run_time=datetime.datetime.now() + datetime.timedelta(minutes=5),
            )
        if self.forecast is not None:
            self.forecast.schedule(self.scheduler, self.forecast_job, datetime.datetime.now().astimezone())
        handlers = {signal.SIGINT: self._on_signal, signal.SIGTERM: self._on_signal, signal.SIGHUP: self._on_sighup}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        if not self._saved_handlers:
            self._saved_handlers = previous
        reason = "stopped"
        self._failsafe_stop.clear()
        failsafe = threading.Thread(target=self._failsafe_timer, name="pvheater-failsafe", daemon=True)
        try:
            try:
                failsafe.start()
                self.scheduler.start()
                if self.channel is not None:
                    self.channel = self.channel.serve(
                        pid=os.getpid(), version=__version__, started_s=self.wall_clock(), interval_s=self.interval_s
                    )
                self._start_frontends()
                if self.recorder is not None:
                    self.recorder.start(time.monotonic(), f"pvheater {__version__}")
                self.notifier.ready("running")
                self._tick_loop()
            except _StopNow:
                pass  # a stop signal abandoned the tick in flight; the heater goes off just below
        except BaseException as exc:
            reason = f"stopped by {type(exc).__name__}"
            raise
        finally:
            # From here on signals are logged and ignored: a second Ctrl-C, a SIGHUP or another SIGTERM must
            # not cut the shutdown short (the last history row, the stop event, the PID file).
            for sig in previous:
                signal.signal(sig, self._on_signal_while_stopping)
            with self._tick_lock:  # a tick in flight in another thread finishes first; none starts after this
                self._stopping = True
                now_s = time.monotonic()
                self.loop.shutdown(now_s)  # relay open first, then everything else
                if self.recorder is not None:
                    self.recorder.stop(now_s, reason)
            self._failsafe_stop.set()  # the relay is open: the fail-safe timer has done its job
            if failsafe.is_alive():
                failsafe.join(timeout=2 * FAILSAFE_PERIOD_S + 1.0)
            self.notifier.stopping()
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            for sock in self._wake:
                sock.close()
            self._wake = None
            if self.channel is not None:
                self.channel.close()
            self._close_frontends()
            if not self._hold_signals:
                self.restore_signals()

    def _start_frontends(self) -> None:
        """Start each front-end; one that cannot start is logged in one line and left out (control goes on)."""
        for frontend in self.frontends:
            try:
                frontend.start(self.hub)
            except PvHeaterError as exc:
                log.error("%s; control goes on without it", exc)
            else:
                self._started.append(frontend)

    def _close_frontends(self) -> None:
        """Close the started front-ends (after the relay is open); a failure is logged, never raised."""
        while self._started:
            frontend = self._started.pop()
            try:
                frontend.close()
            except Exception as exc:  # shutting down: log and go on with the rest
                log.error("closing a front-end failed: %s: %s", type(exc).__name__, exc)

    def hold_signals(self) -> None:
        """Keep ignoring stop signals after run() returns, until restore_signals() (the caller still cleans up)."""
        self._hold_signals = True

    def restore_signals(self) -> None:
        """Put back the signal handlers that were installed before run()."""
        for sig, handler in self._saved_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._saved_handlers = {}

    def stop(self) -> None:
        """Stop after the tick in flight (from a job, a signal or another thread)."""
        self._stop_requested = True
        self._poke()

    def request_reload(self) -> None:
        """Re-read the config before the next tick (what SIGHUP does)."""
        self._reload_requested = True
        self._poke()

    def _failsafe_timer(self) -> None:
        """Independent of the tick (it never takes the tick lock): relay open when the data are older than
        relay.stale_after_s, e.g. while a read hangs. Its own errors are logged once and it goes on."""
        failed = ""
        while not self._failsafe_stop.wait(FAILSAFE_PERIOD_S):
            try:
                self.loop.failsafe(time.monotonic())
            except Exception as exc:  # the pins failing here are reported by the tick too; keep watching
                if str(exc) != failed:
                    failed = str(exc)
                    log.critical("fail-safe timer cannot switch the heater off: %s", exc)
            else:
                failed = ""

    def _tick_loop(self) -> None:
        next_s = time.monotonic()
        while not self._stop_requested:
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
                continue
            self.job()
            next_s += self.interval_s
            now_s = time.monotonic()
            if next_s <= now_s:  # the tick overran (a GX timeout): skip the missed ticks, keep the cadence
                next_s += (math.floor((now_s - next_s) / self.interval_s) + 1) * self.interval_s
            self._sleep(next_s - now_s)

    def _sleep(self, seconds: float) -> None:
        """Wait up to seconds (monotonic), or until stop() / a reload request pokes the wake-up socket."""
        if self._wake is None or self._stop_requested or self._reload_requested:
            return
        reader = self._wake[0]
        ready, _, _ = select.select([reader], [], [], max(0.0, seconds))
        if ready:
            with contextlib.suppress(BlockingIOError):
                while reader.recv(64):
                    pass

    def _poke(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(OSError):  # full (already poked) or closed
                self._wake[1].send(b"\0")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._interrupted:
            return
        log.info("%s received: stopping", signal.Signals(signum).name)
        self.stop()
        # A tick waiting for the GX may take seconds: leave it now, the heater goes off at once. Only the read is
        # abandoned: raising inside the history write or the pins' apply would leave them half done.
        if self._in_tick and self.loop.reading:
            self._interrupted = True
            raise _StopNow

    def _on_signal_while_stopping(self, signum: int, frame: FrameType | None) -> None:
        if signum not in self._ignored_logged:
            self._ignored_logged.add(signum)
            log.info("%s received while stopping: ignored (the heater is off)", signal.Signals(signum).name)

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        log.info("SIGHUP received: re-reading the config")
        self.request_reload()


#: Config keys that a reload applies at once; every other change waits for a restart.
LIVE_SECTIONS = ("control", "relay", "poll")
NOT_LIVE_KEYS = ("relay.pin", "relay.active_high")
LIVE_KEYS = ("history.retention_days", "history.row_every_s")


def _flatten(obj: object, prefix: str = "") -> dict[str, object]:
    """A config as {dotted.key: value}."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(_flatten(value, key + "."))
        else:
            out[key] = value
    return out


def _is_live(key: str) -> bool:
    if key in NOT_LIVE_KEYS:
        return False
    return key in LIVE_KEYS or key.split(".", 1)[0] in LIVE_SECTIONS


class ConfigReloader:
    """Re-reads the config file and merges what may change while running into the running config."""

    def __init__(self, path: Path, file_config: Config, active: Config | None = None) -> None:
        self.path = path
        #: The config as read from the file at start (for what needs a restart) and at the last reload.
        self.started = file_config
        self.last = file_config
        #: The config the loop runs with (the simulation adjusts some sections).
        self.active = active if active is not None else file_config
        self._pending: tuple[Config, Config] | None = None

    def load(self) -> tuple[Config, list[str], list[str]]:
        """(config to run with, live keys changed, keys that need a restart); ConfigError when the file is bad."""
        new = load_config(self.path)
        a = self.active
        merged = dataclasses.replace(
            a,
            control=new.control,
            poll=new.poll,
            relay=dataclasses.replace(new.relay, pin=a.relay.pin, active_high=a.relay.active_high),
            history=dataclasses.replace(
                a.history, retention_days=new.history.retention_days, row_every_s=new.history.row_every_s
            ),
        )
        for key, message in merged.check():
            raise ConfigError(f"{self.path}: {key}: {message} (with the settings that need a restart unchanged)")
        new_flat, last_flat, started_flat = _flatten(new), _flatten(self.last), _flatten(self.started)
        changed = [k for k in new_flat if _is_live(k) and new_flat[k] != last_flat.get(k)]
        need_restart = [k for k in new_flat if not _is_live(k) and new_flat[k] != started_flat.get(k)]
        self._pending = (new, merged)
        return merged, changed, need_restart

    def accept(self) -> None:
        """The config returned by the last load() is now running."""
        if self._pending is not None:
            self.last, self.active = self._pending
            self._pending = None


def exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Before the scheduler runs: leave through the finally blocks (they switch the heater off)."""
    raise SystemExit(0)


def run_service(
    rig: Rig,
    duration_s: float | None,
    path: Path,
    file_config: Config | None = None,
    on_tick: Callable[[TickReport], None] | None = None,
    instance: Instance | None = None,
    keep_signals_ignored: bool = False,
    frontends: Sequence[Frontend] | None = None,
) -> int:
    """Run the service on a rig until stopped (or for duration_s); the rig is closed afterwards.

    `frontends`: the MQTT client and the status page, built by the caller (frontends_for) before it
    started anything; None: built here from the rig's config.

    `keep_signals_ignored`: the process ends when this returns (the console
    script): stop signals stay logged-and-ignored to the end, so a late one
    cannot turn a clean exit 0 into a kill. Otherwise the handlers from before
    are put back (tests and callers that run more in the same process).

    `file_config` is the config as read from `path` (default: the rig's);
    a reload re-reads `path` and keeps what the rig adjusted. `instance`:
    the single-instance lock taken before the rig's pins (Instance.acquire);
    without it, it is taken here. Either way it is released, and the PID file
    removed, at the end.
    """
    cfg = rig.config
    history: History | None = None
    notifier = Notifier() if rig.simulation is None else Notifier({})
    service: Service | None = None
    tank: TankSensorThread | None = None
    try:
        if instance is None:
            instance = Instance.acquire(cfg.service.pid_file, cfg.history.file)
        if frontends is None:  # a missing library or password stops it here
            frontends = [] if rig.dry_run else frontends_for(cfg)
        history = None if cfg.history.file is None else History(cfg.history.file)
        recorder = None
        if history is not None:
            recorder = HistoryRecorder(history, rig.heater, time.time, cfg.history.row_every_s)
        forecast = ForecastFetcher.from_config(cfg) if cfg.forecast.enabled else None
        if cfg.tank_sensor.enabled:  # read in its own thread: a reading takes the kernel ~0.75 s
            tank = TankSensorThread(TankSensor.from_config(cfg.tank_sensor), cfg.tank_sensor.read_interval_s)
            tank.start()
        store = None if rig.dry_run else HotWaterStore(cfg.hot_water.state_file)
        hot_water = HotWater(cfg, tank=tank, store=store)
        loop = ControlLoop(rig.reader, rig.heater, cfg, on_report=recorder, forecast=forecast, hot_water=hot_water)
        log.info(
            "pvheater %s: GX %s, every %.1f s, relay %s, %s %s, history %s, config %s",
            "DRY RUN (no pin touched, no history written)" if rig.dry_run else "running",
            rig.reader.endpoint, cfg.poll.interval_s, cfg.relay.pin, cfg.heater.actuator,
            cfg.actuator_pin, cfg.history.file or "off", path,
        )
        log.info("%s", STATUS_LEGEND)
        _check_watchdog(notifier, cfg)
        service = Service(
            loop, cfg.poll.interval_s, local_time=rig.local_time, on_tick=on_tick, notifier=notifier,
            recorder=recorder, reloader=ConfigReloader(path, file_config or cfg, active=cfg),
            retention_days=cfg.history.retention_days, forecast=forecast,
            channel=channel_for(cfg.service.socket_file), frontends=frontends,
        )
        register(service.hub, hot_water)  # mode and boost from `pvheater mode/boost`, MQTT, the page
        service.hold_signals()  # signals stay ignored until the history is closed and the PID file gone
        service.run(duration_s)
        if rig.simulation is None and not rig.dry_run:  # a simulated or dry-run knob needs no time to reach zero
            _park(rig.heater, cfg)
    finally:
        rig.close()
        if tank is not None:
            tank.stop()
        if history is not None:
            history.close()
        if instance is not None:
            instance.release()
        notifier.close()
        if service is not None and not keep_signals_ignored:
            service.restore_signals()
    log.info("pvheater stopped: relay open, knob at zero")
    if keep_signals_ignored:  # SIG_IGN, not a Python handler: the interpreter's exit would reset that to a kill
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
    return 0


def frontends_for(cfg: Config) -> list[Frontend]:
    """The optional front-ends the config turns on (none by default); ConfigError/PvHeaterError in one line."""
    frontends: list[Frontend] = []
    if cfg.mqtt.enabled:
        from pvheater.mqtt import MqttFrontend

        frontends.append(MqttFrontend.from_config(cfg))
    web = web_frontend(cfg)
    if web is not None:
        frontends.append(web)
    return frontends


def _check_watchdog(notifier: Notifier, cfg: Config) -> None:
    """Warn when a tick that times out on the GX could outlast half the systemd watchdog."""
    if notifier.watchdog_s is not None and cfg.poll.interval_s + cfg.gx.timeout_s > notifier.watchdog_s / 2:
        log.warning("poll.interval_s + gx.timeout_s is long for the systemd watchdog (%.0f s): "
                    "run `pvheater install-service` again to size it", notifier.watchdog_s)


def _park(heater: HeaterPort, cfg: Config) -> None:
    """Give the servo a moment to reach zero before its pins are released (the relay is already open)."""
    if cfg.heater.actuator != "servo":
        return  # a duty or an SSR is at zero the moment it is set there
    deadline = time.monotonic() + min(cfg.servo.detach_after_s, _PARK_WAIT_S)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        heater.tick(time.monotonic())



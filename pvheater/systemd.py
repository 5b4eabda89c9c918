"""systemd: the sd_notify protocol (stdlib only) and the unit file `pvheater install-service` writes.

sd_notify is one datagram of `KEY=value` lines to the unix socket named by
$NOTIFY_SOCKET (a leading '@' means the abstract namespace). pvheater sends
READY=1 once the loop runs, WATCHDOG=1 after healthy ticks, STATUS=... with
them, RELOADING=1 around a config reload, and STOPPING=1 when it stops.
Without $NOTIFY_SOCKET (not started by systemd) every call does nothing.

What "healthy" means for the watchdog: the tick ran to its end -- read,
decide, guard, apply -- whatever the GX did. A GX outage with the relay
safely open is the loop doing its job, so it still pings; restarting would
not bring the GX back. An error inside the loop (the pins fail, a bug) does
not ping, and neither does a loop that hangs: after WatchdogSec systemd kills
and restarts the service, and the relay is opened at start.
"""

from __future__ import annotations

import getpass
import grp
import logging
import math
import os
import shlex
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("pvheater")

UNIT_PATH = Path("/etc/systemd/system/pvheater.service")
#: Shortest watchdog period and stop timeout the unit gets.
MIN_WATCHDOG_S = 30
MIN_TIMEOUT_STOP_S = 15


def watchdog_seconds(interval_s: float, gx_timeout_s: float) -> int:
    """WatchdogSec for a loop ticking every interval_s whose tick may wait gx_timeout_s for the GX."""
    return max(MIN_WATCHDOG_S, math.ceil(2 * (interval_s + gx_timeout_s)) + 10)


def timeout_stop_seconds(gx_timeout_s: float) -> int:
    """TimeoutStopSec: a tick in flight (a GX timeout) plus parking the servo, with room."""
    return max(MIN_TIMEOUT_STOP_S, math.ceil(gx_timeout_s) + 10)


class Notifier:
    """Sends sd_notify messages to systemd; does nothing when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        self.watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid.isdigit() or int(pid) == os.getpid()):
            self.watchdog_s = int(usec) / 1_000_000
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._failed = False
        self._last_ping_s: float | None = None
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        """True when systemd listens ($NOTIFY_SOCKET set)."""
        return self._sock is not None

    @property
    def ping_every_s(self) -> float:
        """How often healthy ticks ping the watchdog (a quarter of its period, at most every 5 s)."""
        return 5.0 if self.watchdog_s is None else min(5.0, self.watchdog_s / 4)

    def notify(self, *fields: str) -> bool:
        """Send KEY=value lines in one datagram; False when not sent (a failure is logged once)."""
        if self._sock is None or self.address is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8", "replace"), socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notify socket %s: %s (watchdog pings may be missing)", self.address, exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str = "") -> None:
        """The service is up: READY=1."""
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def healthy(self, now_s: float, status: str = "") -> None:
        """A healthy tick: WATCHDOG=1 (and STATUS) at most every ping_every_s."""
        if self._last_ping_s is not None and now_s - self._last_ping_s < self.ping_every_s:
            return
        fields = ["WATCHDOG=1"] if self.watchdog_s is not None else []
        if status:
            fields.append(f"STATUS={status}")
        if fields and self.notify(*fields):
            self._last_ping_s = now_s
            self._last_status = status

    def status(self, text: str) -> None:
        """STATUS= only (no watchdog ping), when it changed."""
        if text != self._last_status and self.notify(f"STATUS={text}"):
            self._last_status = text

    def reloading(self, monotonic_s: float) -> None:
        """RELOADING=1 before a config reload (send ready() after it)."""
        self.notify("RELOADING=1", f"MONOTONIC_USEC={int(monotonic_s * 1_000_000)}")

    def stopping(self) -> None:
        """STOPPING=1."""
        self.notify("STOPPING=1", "STATUS=stopping: relay open, knob to zero")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def pvheater_executable() -> list[str]:
    """The command that starts this pvheater: the venv's console script, else this Python with -m."""
    script = Path(sys.executable).parent / "pvheater"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "pvheater.cli"]


def default_user() -> str:
    """The user the service should run as: the one who ran sudo, else the current one."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def gpio_group_exists() -> bool:
    """True when the system has a gpio group (Raspberry Pi OS; Armbian may not)."""
    try:
        grp.getgrnam("gpio")
    except KeyError:
        return False
    return True


def unit_file(
    command: list[str],
    config_path: Path,
    user: str,
    *,
    watchdog_s: int = MIN_WATCHDOG_S,
    timeout_stop_s: int = MIN_TIMEOUT_STOP_S,
    gpio_group: bool = True,
) -> str:
    """The systemd unit text for running `pvheater run` with a config, as user."""
    config = config_path.resolve()
    run = shlex.join([*command, "run", "--config", str(config)])
    groups = "SupplementaryGroups=gpio\n" if gpio_group else ""
    return f"""\
# pvheater: solar surplus into the water heater. Written by `pvheater install-service`.
# Install: sudo pvheater install-service --write   (or copy this to {UNIT_PATH})
#          sudo systemctl daemon-reload && sudo systemctl enable --now pvheater
# Logs:    journalctl -u pvheater -f
[Unit]
Description=pvheater: solar surplus into the water heater
Wants=network-online.target
After=network-online.target time-sync.target

[Service]
Type=notify
NotifyAccess=main
User={user}
{groups}WorkingDirectory={config.parent}
ExecStart={run}
ExecReload=/bin/kill -HUP $MAINPID
# The loop pings the watchdog after every healthy tick; a hung or failing loop is killed and restarted.
WatchdogSec={watchdog_s}
Restart=on-failure
RestartSec=10
# Exit 2 is a bad configuration: restarting would not help.
RestartPreventExitStatus=2
# SIGTERM opens the relay and returns the knob to zero before pvheater exits.
KillSignal=SIGTERM
TimeoutStopSec={timeout_stop_s}
Environment=PYTHONUNBUFFERED=1
NoNewPrivileges=yes
ProtectSystem=full
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""

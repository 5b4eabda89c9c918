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
import ipaddress
import logging
import math
import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pvheater.errors import PvHeaterError

log = logging.getLogger("pvheater")

UNIT_PATH = Path("/etc/systemd/system/pvheater.service")
#: Shortest watchdog period and stop timeout the unit gets.
MIN_WATCHDOG_S = 30
MIN_TIMEOUT_STOP_S = 15


def watchdog_seconds(interval_s: float, gx_timeout_s: float) -> int:
    """WatchdogSec for a loop ticking every interval_s whose tick may wait gx_timeout_s for the GX."""
    return max(MIN_WATCHDOG_S, math.ceil(2 * (interval_s + gx_timeout_s)) + 10)


#: What a stop may take besides a forecast fetch: the servo park (1 s), the history writer's last
#: commit (History.close waits up to 10 s on a slow SD card), a host-name lookup in flight (the resolver's
#: 5 s default, not interruptible), and the interpreter's exit.
STOP_WORK_S = 1 + 10 + 5 + 2


def timeout_stop_seconds(forecast_fetch_s: float = 0.0) -> int:
    """TimeoutStopSec: the shutdown's worst case (a GX read in flight is abandoned at once, so not the GX's
    timeout) plus a forecast fetch in flight (forecast.timeout_s per plane; the process waits for it at exit)."""
    return max(MIN_TIMEOUT_STOP_S, math.ceil(STOP_WORK_S + forecast_fetch_s))


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


class UnitValueError(PvHeaterError):
    """A value cannot be written into the unit safely (a newline, a control character, ...)."""


#: What systemd accepts as a user name (its strict rules), or a numeric UID.
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,30}\$?|[0-9]{1,10}")


def _checked(what: str, text: str) -> str:
    """text when it has no control character (a newline would start a new directive); else UnitValueError."""
    bad = next((c for c in text if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise UnitValueError(f"{what}: {text!r} holds a control character ({bad!r}); it cannot go into a unit file")
    return text


def exec_arg(text: str, what: str, *, program: bool = False) -> str:
    """One ExecStart= word, double-quoted with systemd's escapes (systemd.service(5), systemd.syntax(7)).

    % becomes %%, \\ and " get a backslash, $ becomes $$ -- except in the program
    path, where systemd expands no variables (so $ stays) and refuses quotes
    and backslashes (so they are refused here, with a clearer message).
    """
    _checked(what, text)
    if program:
        if any(c in text for c in "\\\"'"):
            raise UnitValueError(f"{what}: {text!r} cannot be the program of a unit (systemd refuses quotes and "
                                 "backslashes there); install pvheater in a path without them")
        return '"' + text.replace("%", "%%") + '"'
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def path_value(path: Path, what: str) -> str:
    """A path for WorkingDirectory= and the like: % doubled; refused when systemd would read it differently."""
    text = _checked(what, str(path))
    if not path.is_absolute() or "\\" in text or '"' in text or "'" in text or text != text.strip():
        raise UnitValueError(f"{what}: {text!r} cannot go into a unit file (needs an absolute path without "
                             "backslashes, quotes or leading/trailing blanks)")
    return text.replace("%", "%%")


def quoted_path(path: Path, what: str) -> str:
    """A path in a space-separated list (ReadWritePaths=): double-quoted, % doubled."""
    return f'"{path_value(path, what)}"'


def user_value(user: str) -> str:
    """A User= value: a plain user name or a numeric UID, nothing else."""
    _checked("--user", user)
    if not _USER_NAME.fullmatch(user):
        raise UnitValueError(f"--user: expected a user name (letters, digits, '_' or '-', at most 32) or a UID, "
                             f"got {user!r}")
    return user


def ip_allow_value(host: str) -> str | None:
    """The IPAddressAllow= entry for gx.host when it is an IP address (no scope); None for a host name."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return str(address)


def unit_file(
    command: list[str],
    config_path: Path,
    user: str,
    *,
    watchdog_s: int = MIN_WATCHDOG_S,
    timeout_stop_s: int = MIN_TIMEOUT_STOP_S,
    gpio_group: bool = True,
    writable_dirs: Sequence[Path] = (),
    gx_host: str | None = None,
    other_hosts: bool = False,
) -> str:
    """The systemd unit text for running `pvheater run` with a config, as user.

    Every value from outside (paths, the user, the GX address) is escaped by
    systemd's rules or refused with UnitValueError. writable_dirs: where
    pvheater writes besides the config's directory (log, history, PID file,
    forecast cache). gx_host: when an IP address, the only address besides
    localhost the service may talk to; other_hosts: it needs more (the forecast).
    """
    config = config_path.resolve()
    words = [*command, "run", "--config", str(config)]
    run = " ".join(exec_arg(arg, "ExecStart", program=i == 0) for i, arg in enumerate(words))
    workdir = path_value(config.parent, "the config's directory")
    rw_dirs: list[Path] = []
    for directory in (config.parent, *writable_dirs):
        if directory not in rw_dirs:
            rw_dirs.append(directory)
    read_write = " ".join(quoted_path(d, "a directory pvheater writes to") for d in rw_dirs)
    groups = "SupplementaryGroups=gpio\n" if gpio_group else ""
    gx_ip = None if gx_host is None else ip_allow_value(gx_host)
    if gx_ip is not None and not other_hosts:
        network = (
            "# Network: only the GX and this machine (pigpio talks to pigpiod on localhost); nothing else.\n"
            f"IPAddressAllow=localhost {gx_ip}\n"
            "IPAddressDeny=any\n"
        )
    elif gx_ip is not None:
        network = ("# No IPAddressAllow/IPAddressDeny: the forecast needs api.forecast.solar, whose address is not "
                   "known here.\n")
    else:
        network = ("# No IPAddressAllow/IPAddressDeny: gx.host is a host name, its address (and the DNS or mDNS "
                   "server) is not known here.\n# Set gx.host to the GX's IP address and write the unit again to "
                   "limit the service to it.\n")
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
User={user_value(user)}
{groups}WorkingDirectory={workdir}
ExecStart={run}
ExecReload=/bin/kill -HUP $MAINPID
# The loop pings the watchdog after every healthy tick; a hung or failing loop is killed and restarted.
WatchdogSec={watchdog_s}
Restart=on-failure
RestartSec=10
# Exit 2 is a bad configuration, or another pvheater on the same PID/history file: restarting would not help.
RestartPreventExitStatus=2
# SIGTERM opens the relay at once (a GX read in flight is abandoned), parks the knob, closes the history.
KillSignal=SIGTERM
# Sized from that worst case: the servo park, the history's last write, a forecast fetch in flight.
TimeoutStopSec={timeout_stop_s}
Environment=PYTHONUNBUFFERED=1

# --- Hardening (systemd.exec(5)); `systemd-analyze security pvheater` rates it. ---
# No privileges: no setuid gains, no capabilities at all, not even in the bounding set.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
# The whole file system is read-only except the directories pvheater writes to (log, history, PID file)...
ProtectSystem=strict
ReadWritePaths={read_write}
# ...and /home, /root and /run/user are read-only too (the venv and the config may live there).
ProtectHome=read-only
# A private /tmp; no access to other users' processes in /proc.
PrivateTmp=yes
ProtectProc=invisible
# Files it creates are not world-readable.
UMask=0027
# Devices: only the pseudo devices plus the GPIO chips (lgpio) and /dev/gpiomem (RPi.GPIO, native).
# Not PrivateDevices=yes: that would hide the GPIO devices.
DevicePolicy=closed
DeviceAllow=char-gpiochip rw
DeviceAllow=/dev/gpiomem rw
# The kernel stays as it is: no sysctl writes, no module loading, no kernel log, no cgroup writes, no clock changes.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# Sockets: IPv4/IPv6 to the GX (and pigpiod), unix sockets for sd_notify and the journal; no netlink, no raw.
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
{network}# No new namespaces, no realtime scheduling, no setuid/setgid files, no personality changes.
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
# No memory that is writable and executable at once (Python and its C extensions do not need it).
MemoryDenyWriteExecute=yes
# System calls: only what ordinary services use, none of the privileged ones, native architecture only;
# any other fails with EPERM.
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM
SystemCallArchitectures=native
# IPC objects it leaves behind are removed when it stops.
RemoveIPC=yes

[Install]
WantedBy=multi-user.target
"""

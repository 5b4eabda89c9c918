"""Make the running `pvheater run` re-read its config file (SIGHUP); a bad config is refused before sending.

`pvheater reload` validates the config file (the same --config the service
runs with; exit 2 and nothing sent when it is bad), finds the service's
process ID in `service.pid_file` (or `--pid`), checks that it is a pvheater
process and sends it SIGHUP. The service re-reads the file: the control and
relay settings (except the pins), poll.interval_s and the history's
retention_days and row_every_s change at once; other changes are logged as
needing a restart. A file that fails validation there is rejected with one
log line and the running config stays. Under systemd, `sudo systemctl reload
pvheater` sends the same signal.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from pvheater.errors import PvHeaterError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater reload`."""
    parser.add_argument("--pid", type=int, default=None, help="process ID of the service (default: service.pid_file)")


def read_pid(pid_file: str | None) -> int:
    """The process ID in the PID file; PvHeaterError saying why when there is none."""
    if pid_file is None:
        raise PvHeaterError("service.pid_file is null in the config: pass --pid, or use `systemctl reload pvheater`")
    path = Path(pid_file)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise PvHeaterError(f"{path}: no PID file: is `pvheater run` running here (same directory and config)?") \
            from None
    except OSError as exc:
        raise PvHeaterError(f"{path}: cannot be read ({exc.strerror})") from None
    if not text.isdigit():
        raise PvHeaterError(f"{path}: expected a process ID, got {text[:40]!r}")
    return int(text)


def _is_pvheater(pid: int) -> bool:
    """True when the process looks like pvheater (or when /proc cannot tell)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return b"pvheater" in cmdline


def run(args: argparse.Namespace) -> int:
    """Send SIGHUP to the running service."""
    pid = args.pid if args.pid is not None else read_pid(args.cfg.service.pid_file)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise PvHeaterError(f"no process {pid}: pvheater is not running (stale PID file?)") from None
    except PermissionError:
        raise PvHeaterError(f"process {pid} belongs to another user: run as that user or with sudo") from None
    if not _is_pvheater(pid):
        raise PvHeaterError(f"process {pid} is not pvheater (stale PID file?); nothing sent")
    os.kill(pid, signal.SIGHUP)
    print(f"sent SIGHUP to pvheater (PID {pid}); its log says whether the new config was taken")
    return 0

"""Make the running `pvheater run` re-read its config file (SIGHUP); a bad config is refused before sending.

`pvheater reload` validates the config file (the same --config the service
runs with; exit 2 and nothing sent when it is bad), finds the service's
process ID in `service.pid_file` (or `--pid`), checks that this process holds
the PID file's lock (pvheater/service/instance.py: a stale PID file pointing
at another process signals nothing) and is `pvheater run`, and sends it
SIGHUP. The service re-reads the file: the control and
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
from pvheater.service.instance import lock_holder, lock_path


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
    except (OSError, UnicodeDecodeError) as exc:
        raise PvHeaterError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not text.isdigit() or len(text) > 10:
        raise PvHeaterError(f"{path}: expected a process ID, got {text[:40]!r}")
    return int(text)


def verified_pid(pid_file: str) -> int:
    """The PID in pid_file when that process holds the PID file's lock (a pvheater of this file); else PvHeaterError."""
    pid = read_pid(pid_file)
    holder = lock_holder(lock_path(pid_file))
    if holder is None:
        raise PvHeaterError(f"pvheater is not running: no process holds {lock_path(pid_file)} "
                            f"(the PID file {pid_file} is stale, PID {pid}); nothing sent")
    if holder and holder != pid:
        raise PvHeaterError(f"{pid_file} says PID {pid}, but pvheater PID {holder} holds its lock; nothing sent "
                            f"(use --pid {holder} after checking, or restart the service)")
    return pid


def _cmdline(pid: int) -> list[str] | None:
    """The process's arguments from /proc; None when /proc cannot tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [arg.decode("utf-8", "replace") for arg in raw.split(b"\0") if arg]


def _is_pvheater_run(pid: int) -> bool:
    """True when the process is `pvheater run` (a pvheater program or module with the run command)."""
    argv = _cmdline(pid)
    if argv is None:
        return not Path("/proc/self").exists()  # no /proc at all: cannot tell, trust --pid
    names = [Path(arg).name for arg in argv[:3]]
    return "run" in argv and any(n == "pvheater" or n.startswith("pvheater.") for n in names)


def run(args: argparse.Namespace) -> int:
    """Send SIGHUP to the running service."""
    if args.pid is not None:
        pid = args.pid
    elif args.cfg.service.pid_file is None:
        raise PvHeaterError("service.pid_file is null in the config: pass --pid, or use `systemctl reload pvheater`")
    else:
        pid = verified_pid(args.cfg.service.pid_file)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise PvHeaterError(f"no process {pid}: pvheater is not running (stale PID file?)") from None
    except PermissionError:
        raise PvHeaterError(f"process {pid} belongs to another user: run as that user or with sudo") from None
    if not _is_pvheater_run(pid):
        raise PvHeaterError(f"process {pid} is not `pvheater run` (stale PID file?); nothing sent")
    os.kill(pid, signal.SIGHUP)
    print(f"sent SIGHUP to pvheater (PID {pid}); its log says whether the new config was taken")
    return 0

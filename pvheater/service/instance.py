"""One pvheater per PID file and history file: advisory locks that die with the process, and the PID file.

`pvheater run` takes an exclusive `flock` on a lock file next to each file it
must not share -- `<service.pid_file>.lock` and `<history.file>.lock` -- before
it touches a pin, and keeps it until it exits. The kernel drops the lock when
the process dies in any way (kill -9 included), so a stale lock cannot keep a
new start out, and a second instance on the same files is refused at once
without touching the first one's PID file. The holder deletes its lock files
when it exits normally (while still holding the lock); a start that locked a
file checks that the path still names it, else it locks the new one, so a
deleted lock file never lets two instances in. After kill -9 the file stays
and the next start simply locks it again.

The PID file is written while the lock is held and removed by its holder
only. `pvheater reload` signals the PID in the PID file only when that
process holds the lock (`lock_holder`: /proc/locks, or a probe of the lock
plus the PID recorded in the lock file where /proc/locks cannot tell).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

from pvheater.errors import ConfigError

log = logging.getLogger("pvheater")

#: How long a start retries a lock held only briefly (a `pvheater reload` probing it) before giving up.
LOCK_RETRY_S = 0.5


class AlreadyRunning(ConfigError):
    """Another pvheater holds the lock of this PID file or history file (a usage error: exit 2, no restart)."""


def lock_path(file: str | Path) -> Path:
    """The lock file that guards file: file name + '.lock', in the same directory."""
    path = Path(file)
    return path.with_name(path.name + ".lock")


def read_pid(path: Path) -> int | None:
    """The process ID written in path; None when absent, unreadable or not a number."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and len(text) < 12 else None


def _proc_locks_pids(st: os.stat_result) -> set[int] | None:
    """PIDs holding a flock on the file with this stat, from /proc/locks; None when /proc/locks is unreadable."""
    try:
        lines = Path("/proc/locks").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = set()
    for line in lines:
        cols = line.split()
        if len(cols) >= 6 and cols[1] == "FLOCK" and cols[5] == want and cols[4].isdigit():
            pids.add(int(cols[4]))  # "->" lines (waiters) have the columns shifted and do not match
    return pids


def lock_holder(lock: Path) -> int | None:
    """PID of the process holding the flock on lock (0 when held by an unknown one); None when nobody holds it."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        pids = _proc_locks_pids(os.fstat(fd))
        if pids:
            return min(pids)
        try:  # /proc/locks cannot tell (unreadable, or another device numbering): probe the lock itself
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_pid(lock) or 0
        return None
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    """True when path still names the file open as fd."""
    try:
        st, now = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)


class Instance:
    """The locks of one running pvheater and its PID file; release() (or process death) gives them up."""

    def __init__(self) -> None:
        self._locks: list[tuple[int, Path]] = []
        self.pid_file: Path | None = None

    @classmethod
    def acquire(cls, pid_file: str | None, history_file: str | None) -> Instance:
        """Lock the PID file's and the history file's lock files, then write the PID file; AlreadyRunning if held."""
        instance = cls()
        try:
            for key, file in (("service.pid_file", pid_file), ("history.file", history_file)):
                if file is not None:
                    instance._lock(key, Path(file))
            if pid_file is not None:
                instance._write_pid_file(Path(pid_file))
        except BaseException:
            instance.release()
            raise
        return instance

    def _lock(self, key: str, file: Path) -> None:
        lock = lock_path(file)
        deadline_s = time.monotonic() + LOCK_RETRY_S
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY, 0o644)
            except OSError as exc:
                log.warning("%s: cannot create the lock file %s (%s); a second pvheater on %s would not be noticed",
                            key, lock, exc.strerror, file)
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline_s:
                    holder = lock_holder(lock)
                    who = f"PID {holder}" if holder else "PID unknown"
                    raise AlreadyRunning(
                        f"another pvheater runs with this {'PID' if key == 'service.pid_file' else 'history'} "
                        f"file {file} ({who}); stop it first, or give this one its own service.pid_file "
                        "and history.file"
                    ) from None
                time.sleep(0.02)
                continue
            if _same_file(fd, lock):
                break
            os.close(fd)  # its holder removed it while we waited: lock the file that is there now
        self._locks.append((fd, lock))
        with contextlib.suppress(OSError):  # the holder's PID, for lock_holder() where /proc/locks cannot tell
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def _write_pid_file(self, path: Path) -> None:
        """Write our process ID for `pvheater reload`; a failure is logged, not fatal."""
        try:
            path.write_text(f"{os.getpid()}\n", encoding="ascii")
        except OSError as exc:
            log.warning("service.pid_file: cannot write %s (%s); `pvheater reload` will not find this process",
                        path, exc.strerror)
            return
        self.pid_file = path

    def release(self) -> None:
        """Remove our PID file (when it still holds our PID), then drop the locks."""
        if self.pid_file is not None:
            with contextlib.suppress(OSError):
                if read_pid(self.pid_file) == os.getpid():
                    self.pid_file.unlink()
            self.pid_file = None
        for fd, lock in self._locks:
            with contextlib.suppress(OSError):
                if _same_file(fd, lock):
                    lock.unlink()  # still locked: a start waiting for it sees the file gone and locks a new one
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the last descriptor releases the flock
        self._locks = []

"""The local control channel: a Unix-domain socket in the service's directory, one JSON object per line.

Only the service's user can use it: the socket is created with mode 0600
(umask around bind, then chmod), in the directory the service runs in
(`service.socket_file`, null: none). It is not a network socket: nothing
reaches it from another machine.

Protocol: the client sends one JSON object on one line, e.g.
`{"cmd": "status"}`, and gets one JSON object on one line back:
`{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Commands are looked
up in the service's hub (pvheater.service.hub: one table of handlers for
every front-end), so new commands (mode, boost) only add a handler there.
Built in: `status` -> the latest published state and what the service says
about itself.

The server runs in its own thread and never holds up a control tick: the
tick only hands over a new state dict (`publish`, one assignment under a
lock); requests are bounded in size (`MAX_REQUEST_BYTES`) and time
(`timeout_s` per connection). Errors are logged once per episode. A socket
file left by a crash is replaced after a connect test shows nobody answers;
a live one, or a file that is no socket, is left alone (ChannelError). The
socket file is removed at close when it is still ours.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pvheater.errors import PvHeaterError
from pvheater.service.hub import Handler, Hub

log = logging.getLogger("pvheater")

#: Longest request line accepted, in bytes (a command is a few dozen).
MAX_REQUEST_BYTES = 4096
#: Longest answer a client reads, in bytes.
MAX_RESPONSE_BYTES = 1 << 20
#: Longest path of a Unix socket on Linux (sun_path is 108 bytes with the final NUL).
MAX_SOCKET_PATH_BYTES = 107



class ChannelError(PvHeaterError):
    """The channel cannot be opened, or a client cannot talk to it."""


class NoService(ChannelError):
    """No pvheater service answers at the socket path."""


class Channel:
    """The service's side: a listening Unix socket served by one thread; handlers by command name."""

    def __init__(self, path: Path | str, *, timeout_s: float = 1.0, max_request_bytes: int = MAX_REQUEST_BYTES,
                 info: dict[str, Any] | None = None, hub: Hub | None = None) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.max_request_bytes = max_request_bytes
        #: Fixed facts about the service (pid, version, start time) sent with each status.
        self.info: dict[str, Any] = dict(info or {})
        #: The state and the command table shared with the other front-ends.
        self.hub = hub if hub is not None else Hub()
        self.hub.add_handler("status", self._status)
        self._sock: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._problem: str | None = None
        #: Requests answered (ok or not), for tests and the log.
        self.requests = 0

    # --- the service's side ------------------------------------------------------

    def add_handler(self, cmd: str, handler: Handler) -> None:
        """Answer requests {"cmd": cmd, ...} with handler(request) (runs in the channel's thread)."""
        self.hub.add_handler(cmd, handler)

    def publish(self, state: dict[str, Any]) -> None:
        """Hand over the newest state (called by the control tick; never blocks for long)."""
        self.hub.publish(state)

    def publish_from(self, make_state: Callable[[], dict[str, Any]]) -> None:
        """Publish make_state(); a failure is logged once (until it works again) and never reaches the caller."""
        self.hub.publish_from(make_state)

    def serve(self, **info: Any) -> Channel | None:
        """Start with these facts about the service; None (after one log line) when it cannot start."""
        self.info.update(info)
        try:
            return self.start()
        except PvHeaterError as exc:
            log.error("%s; `pvheater status` will not reach this service (control goes on)", exc)
            return None

    def start(self) -> Channel:
        """Bind the socket (mode 0600), replacing a stale one, and start serving; ChannelError when it cannot."""
        raw = os.fsencode(self.path)
        if len(raw) > MAX_SOCKET_PATH_BYTES:
            raise ChannelError(f"service.socket_file: {self.path} is longer than {MAX_SOCKET_PATH_BYTES} bytes, "
                               "the limit of a Unix socket path; use a shorter (relative) path")
        self._clear_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            raise ChannelError(f"service.socket_file: cannot create {self.path} ({exc.strerror})") from None
        finally:
            os.umask(old_umask)
        try:
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            sock.listen(8)
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise ChannelError(f"service.socket_file: cannot use {self.path} ({exc.strerror})") from None
        sock.setblocking(False)
        self._sock = sock
        self._inode = (st.st_dev, st.st_ino)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="pvheater-channel", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and remove the socket file (when it is still the one we made)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._inode is not None:
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            self._inode = None

    def __enter__(self) -> Channel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _clear_stale(self) -> None:
        """Remove a socket file nobody answers on; refuse a live one or a file that is not a socket."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ChannelError(f"service.socket_file: cannot check {self.path} ({exc.strerror})") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ChannelError(f"service.socket_file: {self.path} exists and is not a socket; "
                               "move it away or choose another path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(self.timeout_s)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("channel: removing the stale socket %s (left by a pvheater that did not stop cleanly)",
                     self.path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        except OSError as exc:
            raise ChannelError(f"service.socket_file: cannot check {self.path} ({exc.strerror})") from None
        finally:
            probe.close()
        raise ChannelError(f"service.socket_file: another pvheater answers on {self.path}; "
                           "is the service already running in this directory?")

    # --- the channel's thread ----------------------------------------------------

    def _serve(self) -> None:
        assert self._sock is not None
        listener = self._sock
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([listener], [], [], 0.2)
                if not ready:
                    continue
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:  # closed under us, or out of file descriptors
                if self._stop.is_set():
                    return
                self._episode(f"accept failed ({exc})")
                time.sleep(0.2)
                continue
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        """Answer the request lines of one connection until it closes, goes quiet or misbehaves."""
        conn.setblocking(True)
        deadline = time.monotonic() + self.timeout_s
        buffer = b""
        try:
            while True:
                newline = buffer.find(b"\n")
                if newline < 0:
                    if len(buffer) > self.max_request_bytes:
                        self._answer(conn, {"ok": False, "error": f"request longer than {self.max_request_bytes} "
                                                                  "bytes"}, problem="request too long")
                        return
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._episode("a client sent no complete request in time")
                        return
                    conn.settimeout(left)
                    chunk = conn.recv(self.max_request_bytes + 1)
                    if not chunk:
                        return
                    buffer += chunk
                    continue
                line, buffer = buffer[:newline], buffer[newline + 1:]
                if len(line) > self.max_request_bytes:
                    self._answer(conn, {"ok": False, "error": f"request longer than {self.max_request_bytes} bytes"},
                                 problem="request too long")
                    return
                response, problem = self._dispatch(line)
                self._answer(conn, response, problem)
        except TimeoutError:
            self._episode("a client sent no complete request in time")
        except OSError as exc:
            self._episode(f"a client connection failed ({exc})")

    def _dispatch(self, line: bytes) -> tuple[dict[str, Any], str | None]:
        """The answer to one request line and the problem to log (None when it was fine)."""
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {"ok": False, "error": "expected one JSON object per line"}, "a request was not JSON"
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'expected {"cmd": NAME, ...}'}, "a request had no cmd"
        cmd = request["cmd"]
        if cmd not in self.hub.commands():
            return self.hub.dispatch(request), "an unknown cmd"
        answer = self.hub.dispatch(request)
        if not answer["ok"] and str(answer.get("error", "")).startswith(f"{cmd} failed: "):
            return answer, f"the {cmd} handler failed"
        return answer, None

    def _answer(self, conn: socket.socket, response: dict[str, Any], problem: str | None) -> None:
        self.requests += 1
        if problem is None:
            self._problem = None
        else:
            self._episode(problem)
        conn.settimeout(self.timeout_s)
        conn.sendall(json.dumps(response, separators=(",", ":")).encode() + b"\n")

    def _episode(self, problem: str) -> None:
        """Log the first problem of an episode (until a request is answered fine again)."""
        if self._problem is None:
            log.warning("channel %s: %s (further problems are not logged until a request works)", self.path, problem)
        self._problem = problem

    def _status(self, request: dict[str, Any]) -> dict[str, Any]:
        state = self.hub.latest()
        return {"service": {**self.info, "now_s": round(time.time(), 3)}, "state": state}


def channel_for(socket_file: str | None, info: dict[str, Any] | None = None, hub: Hub | None = None) -> Channel | None:
    """The channel of service.socket_file, or None when it is null."""
    return None if socket_file is None else Channel(socket_file, info=info, hub=hub)


def request(path: Path | str, message: dict[str, Any], timeout_s: float = 3.0) -> dict[str, Any]:
    """Send one request to the service at path and return its answer; NoService / ChannelError in one line."""
    path = Path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise NoService(f"no pvheater service is running here (no socket at {path})") from None
        except ConnectionRefusedError:
            raise NoService(f"no pvheater service is running here ({path} is left from a service that did not "
                            "stop cleanly; the next start replaces it)") from None
        except PermissionError:
            raise ChannelError(f"permission denied on {path}: the service runs as another user; run this as that "
                               "user (e.g. sudo -u USER pvheater status)") from None
        except OSError as exc:
            raise ChannelError(f"cannot connect to {path} ({exc.strerror or exc})") from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_RESPONSE_BYTES:
                raise ChannelError(f"{path}: the answer is longer than {MAX_RESPONSE_BYTES} bytes")
    except TimeoutError:
        raise ChannelError(f"{path}: the service did not answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise ChannelError(f"{path}: the connection failed ({exc.strerror or exc})") from None
    finally:
        sock.close()
    try:
        answer = json.loads(data.split(b"\n", 1)[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ChannelError(f"{path}: the answer is not JSON; is it a pvheater socket?") from None
    if not isinstance(answer, dict):
        raise ChannelError(f"{path}: the answer is not a JSON object; is it a pvheater socket?")
    if not answer.get("ok"):
        raise ChannelError(f"the service refused {message.get('cmd')!r}: {answer.get('error', 'no reason given')}")
    return answer

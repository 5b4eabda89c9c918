"""The hub between the control tick and its front-ends (local channel, MQTT, status page).

The tick publishes its state here once per tick (`publish`, one assignment
under a lock, then the subscribers are called); front-ends read the newest
state (`latest`, or `latest_json`: its JSON, encoded once per state however
many front-ends ask) and send commands (`dispatch`) that are looked up in one
table of handlers, so `pvheater mode`, an MQTT `set` topic and a button on
the page all reach the same code. A command is a JSON-ready dict
``{"cmd": NAME, ...}``; the answer is ``{"ok": True, ...}`` or
``{"ok": False, "error": "one line"}`` -- `dispatch` never raises.

Subscribers (`subscribe`) are called in the tick's thread with each new
state: they must only hand it over (e.g. put it in a bounded queue) and
never block; an exception from one is logged once per episode and never
reaches the tick. Front-ends with a lifetime (`Frontend`) are started and
closed by the service.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from pvheater.errors import PvHeaterError

log = logging.getLogger("pvheater")

Handler = Callable[[dict[str, Any]], dict[str, Any]]
Subscriber = Callable[[dict[str, Any]], None]


class Frontend(Protocol):
    """A front-end the service starts after its first tick is possible and closes at shutdown."""

    def start(self, hub: Hub) -> None:
        """Begin serving (own thread); raise PvHeaterError with one line when it cannot."""
        ...

    def close(self) -> None:
        """Stop serving and release what it holds; never raises."""
        ...


class Hub:
    """The newest state, the subscribers that want each new one, and the command table."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, Any] | None = None
        self._handlers: dict[str, Handler] = {}
        self._subscribers: list[Subscriber] = []
        self._failing: set[int] = set()
        self._publish_failed = False
        #: The state the cached JSON belongs to, and that JSON (None: not encoded yet, or not encodable).
        self._json_of: dict[str, Any] | None = None
        self._json: bytes | None = None

    # --- the tick's side ---------------------------------------------------------

    def publish(self, state: dict[str, Any]) -> None:
        """Take the newest state and hand it to every subscriber (their errors are logged once, never raised)."""
        with self._lock:
            self._state = state
            subscribers = list(self._subscribers)
        for index, subscriber in enumerate(subscribers):
            try:
                subscriber(state)
            except Exception as exc:  # a front-end must never break control
                if index not in self._failing:
                    log.error("a front-end failed to take the state (%s: %s); control goes on",
                              type(exc).__name__, exc)
                self._failing.add(index)
            else:
                self._failing.discard(index)

    def publish_from(self, make_state: Callable[[], dict[str, Any]]) -> None:
        """Publish make_state(); its failure is logged once (until it works again) and never reaches the caller."""
        try:
            state = make_state()
        except Exception as exc:  # the state is a convenience: the control tick must go on
            if not self._publish_failed:
                log.error("cannot build the state for the front-ends (%s: %s); control goes on",
                          type(exc).__name__, exc)
            self._publish_failed = True
            return
        self._publish_failed = False
        self.publish(state)

    # --- the front-ends' side ------------------------------------------------------

    def latest(self) -> dict[str, Any] | None:
        """The newest published state (None before the first tick)."""
        with self._lock:
            return self._state

    def json_of(self, state: dict[str, Any]) -> bytes:
        """state as compact JSON bytes, the same for every front-end (MQTT's payload, the page's /api/state);
        encoded once for the newest state. TypeError/ValueError when it cannot be (e.g. a NaN)."""
        with self._lock:
            if self._json_of is state and self._json is not None:
                return self._json
        text = json.dumps(state, separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")
        with self._lock:
            if self._state is state:  # only the newest is worth keeping
                self._json_of, self._json = state, text
        return text

    def latest_json(self) -> bytes | None:
        """The newest state as JSON (json_of(latest())); None before the first tick."""
        state = self.latest()
        return None if state is None else self.json_of(state)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call subscriber(state) in the tick's thread after each publish (it must not block)."""
        with self._lock:
            self._subscribers.append(subscriber)

    def add_handler(self, cmd: str, handler: Handler) -> None:
        """Answer commands {"cmd": cmd, ...} with handler(request); it raises PvHeaterError to refuse in one line."""
        with self._lock:
            self._handlers[cmd] = handler

    def commands(self) -> list[str]:
        """The names of the commands known."""
        with self._lock:
            return sorted(self._handlers)

    def dispatch(self, request: object) -> dict[str, Any]:
        """The answer to one command: {"ok": True, ...} or {"ok": False, "error": ...}; never raises."""
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'expected {"cmd": NAME, ...}'}
        cmd = request["cmd"]
        with self._lock:
            handler = self._handlers.get(cmd)
            known = ", ".join(sorted(self._handlers))
        if handler is None:
            return {"ok": False, "error": f"unknown cmd {cmd[:40]!r} (known: {known})"}
        try:
            answer = handler(request)
        except PvHeaterError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a handler's bug must not end the front-end
            log.error("the %s command failed: %s: %s", cmd[:40], type(exc).__name__, exc)
            return {"ok": False, "error": f"{cmd} failed: {type(exc).__name__}: {exc}"}
        return {"ok": True, **answer}

"""The hub every front-end shares: one command table that never raises, the newest state, subscribers, and
front-ends that the service starts and closes (one that cannot start is one log line)."""

from __future__ import annotations

import logging

import pytest

from pvheater.config import Config
from pvheater.errors import PvHeaterError
from pvheater.service.hub import Hub
from pvheater.service.runtime import Service
from pvheater.sim.live import SimulatedRig
from pvheater.sim.scenarios import constant_day


def test_dispatch_answers_every_request_with_ok_or_one_error_line() -> None:
    hub = Hub()

    def mode(req: dict[str, object]) -> dict[str, object]:
        if req.get("mode") not in ("auto", "off"):
            raise PvHeaterError("mode must be auto or off")
        return {"mode": req["mode"]}

    hub.add_handler("mode", mode)
    assert hub.dispatch({"cmd": "mode", "mode": "off"}) == {"ok": True, "mode": "off"}
    assert hub.dispatch({"cmd": "mode", "mode": "x"}) == {"ok": False, "error": "mode must be auto or off"}
    assert hub.dispatch({"cmd": "nope"}) == {"ok": False, "error": "unknown cmd 'nope' (known: mode)"}
    assert hub.dispatch(["not", "a", "dict"])["ok"] is False
    assert hub.dispatch({"cmd": 3})["ok"] is False
    hub.add_handler("bug", lambda req: {"x": 1 / 0})
    assert hub.dispatch({"cmd": "bug"}) == {"ok": False, "error": "bug failed: ZeroDivisionError: division by zero"}


def test_subscribers_get_each_state_in_order() -> None:
    hub = Hub()
    seen: list[object] = []
    hub.subscribe(lambda state: seen.append(state["n"]))
    assert hub.latest() is None
    for n in range(3):
        hub.publish({"n": n})
    assert seen == [0, 1, 2] and hub.latest() == {"n": 2}


class _Frontend:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.events: list[str] = []

    def start(self, hub: Hub) -> None:
        if self.fail:
            raise PvHeaterError("web.listen: cannot bind 127.0.0.1:1 (permission denied)")
        self.events.append("start")
        hub.subscribe(lambda state: self.events.append("state"))

    def close(self) -> None:
        self.events.append("close")


def test_the_service_starts_and_closes_front_ends_and_one_that_fails_is_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="pvheater")
    good, bad = _Frontend(False), _Frontend(True)
    with SimulatedRig(constant_day(3000, 300, seconds=3600), Config(), start_s=43200.0) as rig:
        service = Service(rig.loop, 1.0, local_time=rig.local_time, frontends=[bad, good])
        service.run(duration_s=2.5)
    assert good.events[0] == "start" and good.events[-1] == "close" and "state" in good.events
    assert bad.events == []
    assert [r.getMessage() for r in caplog.records] == [
        "web.listen: cannot bind 127.0.0.1:1 (permission denied); control goes on without it"]

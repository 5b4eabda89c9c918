"""The forecast: parsing, the client against a loopback HTTP server, rate limits, cache, and the reserve."""

from __future__ import annotations

import datetime
import http.server
import itertools
import json
import logging
import math
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from pvheater.config import Config, ForecastConfig, PlaneConfig, config_from_dict
from pvheater.control.controller import ControllerSettings, ControllerState
from pvheater.control.controller import step as controller_step
from pvheater.control.guard import GuardSettings, GuardState
from pvheater.control.guard import step as guard_step
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeatRequest
from pvheater.control.reserve import (
    Forecast,
    ReserveAdvice,
    ReserveSettings,
    ReserveState,
    StaticForecast,
    battery_share_needed,
    reserve_step,
    sum_curves,
)
from pvheater.control.timeofday import parse_fetch_times
from pvheater.errors import ConfigError
from pvheater.forecast import (
    ForecastClient,
    ForecastError,
    ForecastFetcher,
    RateBook,
    latest_slot,
    parse_estimate,
    parse_timestamp,
)

REPO = Path(__file__).resolve().parents[1]
LAT, LON = 48.1486, 17.1077
DAY = datetime.datetime(2024, 6, 20, tzinfo=datetime.UTC)
DAY_S = DAY.timestamp()
H = 3600.0


def at(hh: float) -> float:
    """UTC epoch seconds of 2024-06-20 at a UTC hour."""
    return DAY_S + hh * H


# --- recorded-style answers -----------------------------------------------------------------


def estimate_body(scale: float = 1.0, *, remaining: int = 11, naive_zone: str | None = None) -> bytes:
    """An /estimate answer shaped like forecast.solar's (time=utc): sunrise, whole hours, sunset; today and tomorrow."""
    watts: dict[str, int] = {}
    for day in (0, 1):
        base = DAY + datetime.timedelta(days=day)
        stamps = [base + datetime.timedelta(hours=2, minutes=51)]
        stamps += [base + datetime.timedelta(hours=h) for h in range(3, 19)]
        stamps.append(base + datetime.timedelta(hours=18, minutes=52))
        rise, set_ = stamps[0], stamps[-1]
        for t in stamps:
            frac = (t - rise) / (set_ - rise)
            w = round(scale * 2000 * math.sin(math.pi * frac) ** 1.5) if 0 < frac < 1 else 0
            if naive_zone is None:
                key = t.isoformat()
            else:
                key = t.astimezone(datetime.timezone(datetime.timedelta(hours=2))).strftime("%Y-%m-%d %H:%M:%S")
            watts[key] = w
    keys = list(watts)
    periods = {keys[0]: 0}
    for a, b in itertools.pairwise(keys):
        periods[b] = round((watts[a] + watts[b]) / 2)  # near enough for a recording
    info = {"latitude": LAT, "longitude": LON, "place": "Bratislava", "timezone": naive_zone or "Europe/Bratislava"}
    return json.dumps({
        "result": {"watts": watts, "watt_hours_period": periods, "watt_hours": {}, "watt_hours_day": {}},
        "message": {"code": 0, "type": "success", "text": "", "info": info,
                    "ratelimit": {"zone": "IP 127.0.0.1", "period": 3600, "limit": 12, "remaining": remaining}},
    }).encode()


def rate_limited_body(retry_at: datetime.datetime | None) -> bytes:
    rate: dict[str, Any] = {"period": 3600, "limit": 12}
    if retry_at is not None:
        rate["retry-at"] = retry_at.isoformat()
    return json.dumps({"result": None, "message": {"code": 429, "type": "error",
                                                   "text": "Rate limit for API calls reached.", "ratelimit": rate}
                       }).encode()


# --- a loopback forecast.solar ------------------------------------------------------------------


@dataclass
class FakeSolar:
    """A forecast.solar stand-in: answers from a script (status, body); records request paths."""

    port: int = 0
    script: list[tuple[int, bytes]] = field(default_factory=list)
    default: tuple[int, bytes] = (200, b"")
    paths: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def solar() -> Iterator[FakeSolar]:
    fake = FakeSolar(default=(200, estimate_body()))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.paths.append(self.path)
            fake.agents.append(self.headers.get("User-Agent", ""))
            status, body = fake.script.pop(0) if fake.script else fake.default
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def make_fetcher(tmp_path: Path, base_url: str, **overrides: Any) -> ForecastFetcher:
    cfg = replace(ForecastConfig(), enabled=True, base_url=base_url, cache_file=str(tmp_path / "forecast.json"),
                  **overrides)
    return ForecastFetcher(cfg, LAT, LON, client=ForecastClient(cfg.base_url, 2.0))


# --- parsing and the forecast's arithmetic ---------------------------------------------------------


def test_parse_recorded_answer() -> None:
    points, rate = parse_estimate(estimate_body())
    assert points[0] == (at(2 + 51 / 60), 0.0)
    assert points[1][0] == at(3)
    assert all(b[0] > a[0] for a, b in itertools.pairwise(points))
    assert max(w for _, w in points) == pytest.approx(2000, abs=5)
    assert (rate.period_s, rate.limit, rate.remaining) == (3600, 12, 11)


def test_parse_local_times_in_the_answers_time_zone() -> None:
    utc_points, _ = parse_estimate(estimate_body())
    local_points, _ = parse_estimate(estimate_body(naive_zone="Etc/GMT-2"))  # UTC+2 without offsets in the keys
    assert local_points == utc_points


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"result": {"watts": {}}}', "no result.watts"),
        (b'{"result": null, "message": {"code": 0}}', "no result.watts"),
        (b'{"result": {"watts": {"2024-06-20T03:00:00+00:00": -5, "2024-06-20T04:00:00+00:00": 1}}}', "not a power"),
        (b'{"result": {"watts": {"2024-06-20T03:00:00+00:00": "x", "2024-06-20T04:00:00+00:00": 1}}}', "not a power"),
        (b'{"result": {"watts": {"yesterday": 1, "today": 2}}}', "unreadable time"),
        (b'{"result": {}, "message": {"code": 1, "text": "wrong azimuth"}}', "wrong azimuth"),
    ],
)
def test_parse_garbage(body: bytes, message: str) -> None:
    with pytest.raises(ForecastError, match=message):
        parse_estimate(body)


def test_parse_timestamp_forms() -> None:
    assert parse_timestamp("1718852400") == 1718852400.0
    assert parse_timestamp("2024-06-20T03:00:00+00:00") == at(3)
    assert parse_timestamp("2024-06-20 05:00:00", datetime.timezone(datetime.timedelta(hours=2))) == at(3)


def test_forecast_power_energy_and_end_of_day() -> None:
    fc = Forecast(((at(4), 0.0), (at(6), 1000.0), (at(8), 1000.0), (at(10), 0.0), (at(28), 0.0), (at(30), 500.0)), 0)
    assert fc.power_w(at(5)) == 500.0
    assert fc.power_w(at(3)) is None and fc.power_w(at(31)) is None
    assert fc.energy_wh(at(4), at(10)) == pytest.approx(4000.0)
    assert fc.energy_wh(at(5), at(7)) == pytest.approx(750 + 1000)  # 5-6 h: 500 -> 1000 W; 6-7 h: 1000 W
    assert fc.energy_wh(at(0), at(40)) == fc.energy_wh(at(4), at(30))
    assert fc.energy_wh(at(7), at(5)) == 0.0
    assert fc.solar_day_end_s(at(7)) == at(10)
    assert fc.solar_day_end_s(at(12)) is None  # night
    assert fc.solar_day_end_s(at(29)) == at(30)


def test_hourly_forecast_keeps_its_energy() -> None:
    hourly = [0.0] * 5 + [100.0, 800.0, 1500.0, 1500.0, 800.0, 100.0] + [0.0] * 13
    fc = Forecast.from_hourly(DAY_S, hourly, DAY_S)
    assert fc.energy_wh(DAY_S, DAY_S + 24 * H) == pytest.approx(sum(hourly), rel=0.03)
    assert fc.power_w(DAY_S + 7.5 * H) == 1500.0


def test_planes_are_summed_on_the_union_of_their_times() -> None:
    a = [(0.0, 0.0), (10.0, 100.0), (20.0, 0.0)]
    b = [(5.0, 0.0), (15.0, 50.0), (25.0, 0.0)]
    total = dict(sum_curves([a, b]))
    assert list(total) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
    assert total[10.0] == pytest.approx(100 + 25)
    assert total[15.0] == pytest.approx(50 + 50)
    assert total[25.0] == 0.0


# --- fetching over loopback ----------------------------------------------------------------------------


def test_fetch_success_caches_and_names_the_plane(tmp_path: Path, solar: FakeSolar) -> None:
    fetcher = make_fetcher(tmp_path, solar.base_url)
    assert fetcher.latest() is None
    assert fetcher.run(at(8)) is True
    assert solar.paths == ["/estimate/48.1486/17.1077/35/0/2.5?time=utc"]
    assert solar.agents[0].startswith("pvheater")
    fc = fetcher.latest()
    assert fc is not None and fc.fetched_utc_s == at(8)
    assert fc.power_w(at(11)) == pytest.approx(2000, abs=60)
    cached = json.loads((tmp_path / "forecast.json").read_text())
    assert cached["fetched_utc_s"] == at(8) and cached["requests_utc_s"] == [at(8)]


def test_two_planes_two_requests_summed(tmp_path: Path, solar: FakeSolar) -> None:
    solar.script = [(200, estimate_body(1.0)), (200, estimate_body(0.5))]
    planes = (PlaneConfig(30.0, -90.0, 1.5), PlaneConfig(30.0, 90.0, 1.0))
    fetcher = make_fetcher(tmp_path, solar.base_url, planes=planes)
    assert fetcher.run(at(8))
    assert solar.paths == [
        "/estimate/48.1486/17.1077/30/-90/1.5?time=utc",
        "/estimate/48.1486/17.1077/30/90/1?time=utc",
    ]
    fc = fetcher.latest()
    assert fc is not None and fc.power_w(at(11)) == pytest.approx(3000, abs=80)


def test_429_retry_at_is_honoured_without_further_requests(
    tmp_path: Path, solar: FakeSolar, caplog: pytest.LogCaptureFixture
) -> None:
    retry = DAY + datetime.timedelta(hours=9)
    solar.script = [(429, rate_limited_body(retry))]
    fetcher = make_fetcher(tmp_path, solar.base_url)
    with caplog.at_level(logging.DEBUG, logger="pvheater"):
        assert fetcher.run(at(8)) is False
        assert fetcher.run(at(8.5)) is False  # before retry-at: not even a request
        restarted = make_fetcher(tmp_path, solar.base_url)  # the block survives a restart
        assert restarted.run(at(8.9)) is False
    assert len(solar.paths) == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2 and "429" in warnings[0].getMessage()  # once per fetcher (episode)
    assert restarted.run(at(9)) is True
    assert len(solar.paths) == 2


def test_429_without_retry_at_waits_an_hour(tmp_path: Path, solar: FakeSolar) -> None:
    solar.script = [(429, b"Too Many Requests")]
    fetcher = make_fetcher(tmp_path, solar.base_url)
    assert fetcher.run(at(8)) is False
    assert fetcher.run(at(8.99)) is False
    assert len(solar.paths) == 1
    assert fetcher.run(at(9.01)) is True


def test_our_own_request_limit_per_sliding_hour_survives_restarts(tmp_path: Path, solar: FakeSolar) -> None:
    fetcher = make_fetcher(tmp_path, solar.base_url, max_requests_per_hour=2)
    assert fetcher.run(at(8.0)) and fetcher.run(at(8.2))
    assert fetcher.run(at(8.4)) is False
    restarted = make_fetcher(tmp_path, solar.base_url, max_requests_per_hour=2)
    assert restarted.run(at(8.9)) is False
    assert len(solar.paths) == 2
    assert restarted.run(at(9.05)) is True  # the first request has left the hour
    # Two planes need two requests: with one left in the hour, none is made.
    two = make_fetcher(tmp_path, solar.base_url, max_requests_per_hour=2, planes=(PlaneConfig(), PlaneConfig()))
    assert two.run(at(9.1)) is False
    assert len(solar.paths) == 3


def test_service_limit_used_up_stops_the_remaining_planes(tmp_path: Path, solar: FakeSolar) -> None:
    solar.script = [(200, estimate_body(remaining=0))]
    fetcher = make_fetcher(tmp_path, solar.base_url, planes=(PlaneConfig(), PlaneConfig()))
    assert fetcher.run(at(8)) is False
    assert len(solar.paths) == 1
    assert fetcher.run(at(8.5)) is False
    assert len(solar.paths) == 1


def test_garbage_is_logged_once_and_the_last_good_forecast_stays(
    tmp_path: Path, solar: FakeSolar, caplog: pytest.LogCaptureFixture
) -> None:
    fetcher = make_fetcher(tmp_path, solar.base_url)
    assert fetcher.run(at(4))
    good = fetcher.latest()
    solar.script = [(200, b"{not json"), (200, b'{"result": {"watts": {}}}'), (502, b"<html>bad gateway</html>")]
    with caplog.at_level(logging.WARNING, logger="pvheater"):
        assert fetcher.run(at(9)) is False
        assert fetcher.run(at(12)) is False
        assert fetcher.run(at(15)) is False
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["forecast not fetched: answer is not JSON"]
    assert fetcher.latest() is good
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pvheater"):
        assert fetcher.run(at(16))
    assert "fetched again" in caplog.records[-1].getMessage()


def test_refused_connection_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    fetcher = make_fetcher(tmp_path, f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, logger="pvheater"):
        assert fetcher.run(at(8)) is False
        assert fetcher.run(at(9)) is False
    assert len(caplog.records) == 1 and "cannot connect" in caplog.records[0].getMessage()
    assert fetcher.latest() is None


def test_timeout_is_a_failure_not_a_hang(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    silent = socket.socket()  # accepts connections (backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        cfg = replace(ForecastConfig(), base_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
                      cache_file=str(tmp_path / "f.json"))
        fetcher = ForecastFetcher(cfg, LAT, LON, client=ForecastClient(cfg.base_url, 0.3))
        with caplog.at_level(logging.WARNING, logger="pvheater"):
            assert fetcher.run(at(8)) is False
            assert fetcher.run(at(9)) is False
    finally:
        silent.close()
    assert len(caplog.records) == 1
    assert "0.3 s" in caplog.records[0].getMessage() or "timed out" in caplog.records[0].getMessage()


def test_cache_prevents_a_refetch_on_restart(tmp_path: Path, solar: FakeSolar) -> None:
    zone = datetime.timezone(datetime.timedelta(hours=2))
    local = DAY.astimezone(zone).replace(hour=10, minute=30)  # after the 10:20 fetch time
    fetcher = make_fetcher(tmp_path, solar.base_url)
    assert fetcher.needs_fetch(local)
    assert fetcher.run(local.timestamp())
    restarted = make_fetcher(tmp_path, solar.base_url)
    assert restarted.latest() == fetcher.latest()
    assert not restarted.needs_fetch(local.replace(hour=13, minute=0))
    assert restarted.needs_fetch(local.replace(hour=13, minute=25))  # the 13:20 fetch is due

    class Scheduler:
        def __init__(self) -> None:
            self.jobs: list[dict[str, Any]] = []

        def add_job(self, func: object, trigger: object = None, **kw: Any) -> None:
            self.jobs.append({"trigger": trigger, **kw})

    fresh, stale = Scheduler(), Scheduler()
    restarted.schedule(fresh, lambda: None, local.replace(hour=12))
    restarted.schedule(stale, lambda: None, local.replace(hour=14))
    assert [j["id"] for j in fresh.jobs] == ["forecast"]
    assert [j["id"] for j in stale.jobs] == ["forecast", "forecast_start"]
    assert len(solar.paths) == 1


def test_cache_of_other_planes_or_a_broken_file_is_not_used(tmp_path: Path, solar: FakeSolar) -> None:
    assert make_fetcher(tmp_path, solar.base_url).run(at(8))
    other = make_fetcher(tmp_path, solar.base_url, planes=(PlaneConfig(kwp=5.0),))
    assert other.latest() is None and other.book.recent(at(8.1)) == 1  # the request count still applies
    (tmp_path / "forecast.json").write_text("{broken", encoding="utf-8")
    assert make_fetcher(tmp_path, solar.base_url).latest() is None


def test_fetch_times_and_slots() -> None:
    times = parse_fetch_times("13:20, 05:20,10:20")
    assert [t.hour for t in times] == [5, 10, 13]
    with pytest.raises(ValueError, match="'5:20'"):
        parse_fetch_times("5:20")
    zone = datetime.UTC
    early = datetime.datetime(2024, 6, 20, 4, 0, tzinfo=zone)
    assert latest_slot(early, times) == datetime.datetime(2024, 6, 19, 13, 20, tzinfo=zone)
    assert latest_slot(early.replace(hour=11), times) == datetime.datetime(2024, 6, 20, 10, 20, tzinfo=zone)


def test_rate_book() -> None:
    book = RateBook().record(0.0).record(100.0)
    assert book.recent(200.0) == 2
    assert book.refusal(200.0, 1, 2) is not None
    assert book.refusal(3700.0, 1, 2) is None
    assert "until" in (book.block(5000.0).refusal(4000.0, 1, 12) or "")


# --- config --------------------------------------------------------------------------------------------


def test_forecast_config() -> None:
    cfg = config_from_dict({"site": {"latitude_deg": LAT, "longitude_deg": LON},
                            "forecast": {"enabled": True, "planes": [{"kwp": 3}, {"azimuth_deg": -90, "kwp": 1.2}]}})
    assert cfg.forecast.planes == (PlaneConfig(kwp=3.0), PlaneConfig(azimuth_deg=-90.0, kwp=1.2))
    assert ForecastFetcher.from_config(replace(cfg, forecast=replace(cfg.forecast, cache_file="/nonexistent/x.json")))
    for data, message in [
        ({"forecast": {"enabled": True}}, "forecast.enabled: needs site.latitude_deg"),
        ({"forecast": {"planes": []}}, "forecast.planes: expected a non-empty list, got an empty list"),
        ({"forecast": {"planes": [{"kwpp": 1}]}}, "forecast.planes[0].kwpp: unknown key"),
        ({"forecast": {"planes": [{"azimuth_deg": 200}]}}, "forecast.planes[0].azimuth_deg: expected a number"),
        ({"forecast": {"fetch_times": "5:20"}}, "forecast.fetch_times: expected times HH:MM"),
        ({"forecast": {"max_requests_per_hour": 13}}, "forecast.max_requests_per_hour: expected an integer from 1"),
    ]:
        with pytest.raises(ConfigError) as info:
            config_from_dict(data)
        assert message in str(info.value)


def test_plane_keys_are_documented_in_the_shipped_config() -> None:
    text = (REPO / "config.yaml").read_text(encoding="utf-8")
    assert all(f"{key}:" in text for key in ("declination_deg", "azimuth_deg", "kwp", "latitude_deg"))


# --- the reserve (pure) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("soc", "forecast_wh", "hours", "house_w", "safety", "share"),
    [
        (60.0, 10_000.0, 10.0, 250.0, 0.7, 1920.0 / (7000.0 - 2500.0)),  # plenty: the heater may take ~57 %
        (95.0, 1_000.0, 2.0, 250.0, 0.7, 240.0 / (700.0 - 500.0)),  # > 1: the battery needs more than is left
        (100.0, 0.0, 2.0, 250.0, 0.7, 0.0),  # full: needs nothing
        (60.0, 3_000.0, 10.0, 250.0, 0.7, math.inf),  # the house eats all of it
        (60.0, 10_000.0, 10.0, 250.0, 1.0, 1920.0 / 7500.0),  # no safety factor
    ],
)
def test_battery_share_needed(soc: float, forecast_wh: float, hours: float, house_w: float, safety: float,
                              share: float) -> None:
    assert battery_share_needed(soc, 4800.0, forecast_wh, hours, house_w, safety) == pytest.approx(share)


def pv_meas(t: float, soc: float, pv: float, *, mode: int = 2, battery: float = 500.0) -> Measurements:
    return Measurements(time_s=t, values={"battery_soc_pct": soc, "pv_dc_w": pv, "mppt_operation_mode": mode,
                                          "mppt_state": 3, "grid_l1_w": 0.0, "battery_power_w": battery})


def bell(peak_w: float = 2000.0) -> Forecast:
    """A clear day 04:00-20:00 UTC, hourly points."""
    pts = [(at(h), peak_w * max(0.0, math.sin(math.pi * (h - 4) / 16)) ** 1.5) for h in range(4, 21)]
    return Forecast(tuple(pts), at(3))


def feed(state: ReserveState, fc: Forecast, start_h: float, end_h: float, soc: float, pv_scale: float,
         settings: ReserveSettings, **kw: Any) -> tuple[ReserveState, ReserveAdvice | None]:
    """Run the reserve every 10 s with PV = pv_scale x the forecast."""
    advice = None
    t = at(start_h)
    while t <= at(end_h):
        power = fc.power_w(t) or 0.0
        state, advice = reserve_step(state, pv_meas(t, soc, pv_scale * power, **kw), fc, t, settings)
        t += 10.0
    return state, advice


SETTINGS = ReserveSettings()


@pytest.mark.parametrize(
    ("case", "soc", "pv_scale", "until_h", "early", "reason"),
    [
        ("forecast right, battery low", 60.0, 1.0, 8.0, True, "battery needs"),
        ("reality behind the forecast", 60.0, 0.7, 8.0, False, "PV at 70 % of the forecast"),
        ("not enough sun yet to judge", 60.0, 1.0, 4.4, False, "waiting for enough sun"),
        ("battery above min_soc: plain rule", 96.0, 1.0, 8.0, False, "plain rule"),
        ("afternoon: too little left", 40.0, 1.0, 16.0, False, "battery needs"),
        ("too late: after sunset - margin", 90.0, 1.0, 18.5, False, "too late in the day"),
        ("PV better than forecast", 60.0, 1.3, 8.0, True, "battery needs"),
    ],
)
def test_reserve_table(case: str, soc: float, pv_scale: float, until_h: float, early: bool, reason: str) -> None:
    settings = replace(SETTINGS, max_age_s=24 * H)  # the forecast is from 03:00
    _, advice = feed(ReserveState(), bell(), 4.0, until_h, soc, pv_scale, settings)
    assert advice is not None
    assert advice.early is early, advice.reason
    assert reason in advice.reason
    if early:
        assert advice.min_soc_pct == SETTINGS.early_min_soc_pct
        assert 0.0 < advice.battery_share <= 0.8
    else:
        assert advice.min_soc_pct == SETTINGS.min_soc_pct


def test_reserve_share_uses_what_is_left_and_reality() -> None:
    fc = bell()
    _, advice = feed(ReserveState(), fc, 4.0, 8.0, 60.0, 1.0, SETTINGS)
    assert advice is not None and advice.reality_ratio == pytest.approx(1.0, abs=0.02)
    deadline = fc.solar_day_end_s(at(8)) - SETTINGS.fill_margin_s
    remaining = fc.energy_wh(at(8), deadline) * min(1.0, advice.reality_ratio)
    expected = battery_share_needed(60.0, 4800.0, remaining, (deadline - at(8)) / H, 250.0, 0.7)
    assert advice.battery_share == pytest.approx(expected, rel=1e-6)


def test_reserve_hysteresis_on_share_and_reality() -> None:
    fc = bell()
    state, advice = feed(ReserveState(), fc, 4.0, 8.0, 60.0, 1.0, SETTINGS)
    assert advice is not None and advice.early
    # PV at 82 % of the forecast: an early run goes on (>= 0.80) ...
    state2, advice = feed(state, fc, 8.0, 10.0, 60.0, 0.82, SETTINGS)
    assert advice is not None and advice.early
    # ... but it would not have started there (needs 0.85).
    _, fresh = feed(ReserveState(), fc, 4.0, 10.0, 60.0, 0.82, SETTINGS)
    assert fresh is not None and not fresh.early
    # Share between START_SHARE and 1: continues when early, does not start when not.
    settings = replace(SETTINGS, safety_factor=0.4)
    _, running = reserve_step(replace(state2, early=True), pv_meas(at(10), 62.0, fc.power_w(at(10)) or 0.0), fc,
                              at(10), settings)
    _, stopped = reserve_step(replace(state2, early=False), pv_meas(at(10), 62.0, fc.power_w(at(10)) or 0.0), fc,
                              at(10), settings)
    assert running is not None and stopped is not None
    assert 0.8 < running.battery_share < 1.0 and running.early and not stopped.early


def test_reserve_without_a_usable_forecast_gives_no_advice() -> None:
    m = pv_meas(at(8), 60.0, 1000.0)
    assert reserve_step(ReserveState(), m, None, at(8), SETTINGS)[1] is None
    assert reserve_step(ReserveState(), m, bell(), None, SETTINGS)[1] is None  # clock not trusted
    assert reserve_step(ReserveState(), None, bell(), at(8), SETTINGS)[1] is None
    old = replace(bell(), fetched_utc_s=at(8) - SETTINGS.max_age_s - 1)
    assert reserve_step(ReserveState(), m, old, at(8), SETTINGS)[1] is None
    assert reserve_step(ReserveState(), m, bell(), at(30), SETTINGS)[1] is None  # beyond the forecast


def test_reserve_ignores_pv_while_the_mppt_holds_it_back() -> None:
    fc = bell()
    state, _ = feed(ReserveState(), fc, 4.0, 8.0, 60.0, 1.0, SETTINGS)
    held, _ = feed(state, fc, 8.0, 9.0, 60.0, 0.3, SETTINGS, mode=1)
    assert held.actual_w == state.actual_w and held.forecast_w == state.forecast_w
    assert held.last_utc_s is not None and held.last_utc_s > (state.last_utc_s or 0)


# --- controller and guard with and without the reserve ---------------------------------------------------


CTRL = ControllerSettings.from_config(Config())


def ctrl_meas(t: float, soc: float, battery: float) -> Measurements:
    return Measurements(time_s=t, values={"battery_soc_pct": soc, "grid_l1_w": 0.0, "battery_power_w": battery,
                                          "mppt_operation_mode": 2, "mppt_state": 3})


def test_controller_early_heating_takes_only_what_the_battery_can_spare() -> None:
    early = ReserveAdvice(True, 30.0, 0.3, "forecast")
    state, request = controller_step(ControllerState(), ctrl_meas(0, 70.0, 1000.0), CTRL, 0.0, False)
    assert not request.want_heat and "charging battery first" in request.reason
    state, request = controller_step(ControllerState(), ctrl_meas(0, 70.0, 1000.0), CTRL, 0.0, False, early)
    assert request.want_heat and state.error_w == pytest.approx(700.0)
    # With the heater at 700 W and the battery at 300 W the split is as planned: hold.
    state = replace(state, power_w=700.0, integral_w=700.0, last_sample_s=0.0)
    state, request = controller_step(state, ctrl_meas(1, 70.0, 300.0), CTRL, 1.0, True, early)
    assert state.error_w == 0.0 and request.power_w == pytest.approx(700.0)
    # The battery gets less than its share: back off.
    state, request = controller_step(state, ctrl_meas(2, 70.0, 100.0), CTRL, 2.0, True, early)
    assert state.error_w < 0 and request.power_w < 700.0
    # Below early_min_soc_pct nothing, forecast or not.
    _, request = controller_step(ControllerState(), ctrl_meas(0, 20.0, 1000.0), CTRL, 0.0, False, early)
    assert not request.want_heat


def test_controller_above_min_soc_ignores_the_share() -> None:
    early = ReserveAdvice(True, 30.0, 0.3, "forecast")
    plain = controller_step(ControllerState(soc_ok=True), ctrl_meas(0, 98.0, 1000.0), CTRL, 0.0, False)
    advised = controller_step(ControllerState(soc_ok=True), ctrl_meas(0, 98.0, 1000.0), CTRL, 0.0, False, early)
    assert plain == advised


def test_guard_takes_the_lowered_limit_only_when_given() -> None:
    settings = replace(GuardSettings(), confirm_samples=2)
    want = HeatRequest(True, 500.0, "forecast")
    state, out = GuardState(), None
    for t in range(3):
        m = ctrl_meas(float(t), 70.0, 500.0)
        state, out = guard_step(state, want, m, settings, float(t), datetime.time(12), min_soc_pct=30.0)
    assert out is not None and out.relay_on
    state, out = guard_step(state, want, ctrl_meas(3.0, 70.0, 500.0), settings, 3.0, datetime.time(12))
    assert not out.relay_on and out.reason == "SoC 70 % below 95 %"


# --- the loop and the simulated day ---------------------------------------------------------------------------


def _run_window(day: Any, strategy: Any, end_h: float = 20.5) -> Any:
    from pvheater.sim.day import run_day

    return run_day(day, strategy, start_s=5 * H, end_s=end_h * H, soc_pct=60.0)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class _Pair:
    """One simulated window of a forecast scenario without and with the forecast, and the latter's log lines."""

    plain: Any
    forecast: Any
    lines: list[str]


_PAIRS: dict[str, _Pair] = {}


def _pair(scenario: str) -> _Pair:
    """The scenario's two runs (05:00-20:30), simulated once for every test of this module that reads them."""
    if scenario not in _PAIRS:
        from pvheater.sim.controller_strategy import ControllerStrategy, _with_forecast
        from pvheater.sim.scenarios import build_day

        day = build_day(scenario)
        strategy = _with_forecast(day)
        handler = _Lines()
        strategy.loop.log = logging.getLogger(f"pvheater.test.reserve.{scenario}")
        strategy.loop.log.addHandler(handler)
        strategy.loop.log.setLevel(logging.INFO)
        try:
            forecast = _run_window(day, strategy)
        finally:
            strategy.loop.log.removeHandler(handler)
        _PAIRS[scenario] = _Pair(_run_window(day, ControllerStrategy(day)), forecast, handler.lines)
    return _PAIRS[scenario]


def test_without_a_forecast_exactly_the_plain_rule() -> None:
    from pvheater.sim.controller_strategy import ControllerStrategy
    from pvheater.sim.scenarios import build_day

    day = build_day("morning60_forecast_good")
    plain = _pair("morning60_forecast_good").plain  # the window to 20:30; compared up to 12:00
    none = ControllerStrategy(day, name="none")
    none.loop.forecast = StaticForecast(None)  # enabled, but nothing fetched
    # A forecast 60 % too high never passes the reality check.
    too_high_day = replace(day, forecast_w=tuple(1.6 * w for w in day.forecast_w))
    too_high = ControllerStrategy(too_high_day, name="too_high", forecast=True)
    for other in (none, too_high):
        run = _run_window(day, other, end_h=12.0)
        n = len(run.series.heater_w)
        assert n > 6 * 3600
        assert list(run.series.heater_w) == list(plain.series.heater_w)[:n]
        assert list(run.series.soc_pct) == list(plain.series.soc_pct)[:n]


@pytest.mark.parametrize("scenario", ["morning60_forecast_good", "morning60_forecast_over"])
def test_forecast_reserve_on_the_simulated_pair(scenario: str) -> None:
    pair = _pair(scenario)
    plain, fc = pair.plain, pair.forecast
    heat = sum(fc.series.heater_w) / 3.6e6
    assert heat > sum(plain.series.heater_w) / 3.6e6
    assert max(fc.series.soc_pct) >= 98.0
    assert fc.end_soc_pct >= plain.end_soc_pct - 5.0
    early = [h for s, h in zip(fc.series.soc_pct, fc.series.heater_w, strict=True) if s < 90.0]
    assert max(early) > 500.0  # it did heat early


def test_loop_logs_start_and_end_of_early_heating_once() -> None:
    lines = [line for line in _pair("morning60_forecast_over").lines if "early" in line or "allowed" in line]
    assert lines[0].startswith("heating below 95 % SoC allowed: forecast: battery needs")
    assert any(line.startswith("early heating ended, plain min_soc rule: PV at") for line in lines)
    assert len(lines) <= 6


def test_service_forecast_job_waits_for_a_set_clock(tmp_path: Path, solar: FakeSolar) -> None:
    from pvheater.service.runtime import Service

    fetcher = make_fetcher(tmp_path, solar.base_url)
    loop: Any = object()  # the forecast job does not touch the control loop
    Service(loop, 1.0, local_time=lambda: None, wall_clock=lambda: at(8), forecast=fetcher).forecast_job()
    assert solar.paths == []
    Service(loop, 1.0, local_time=lambda: datetime.time(10), wall_clock=lambda: at(8), forecast=fetcher).forecast_job()
    assert len(solar.paths) == 1 and fetcher.latest() is not None

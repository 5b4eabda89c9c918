"""The forecast.solar client: fetching, disk cache, rate-limit book (pure forecast + reserve: control/reserve.py).

**Fetching** (`ForecastFetcher.run`, an APScheduler cron job at
   `forecast.fetch_times`): one GET per configured plane of
   ``{base_url}/estimate/{lat}/{lon}/{dec}/{az}/{kwp}?time=utc``, the planes'
   power curves summed into one :class:`Forecast`, written with the rate-limit
   book to `forecast.cache_file`. A restart reads the cache and fetches only
   when the cache predates the latest scheduled fetch time. Requests are
   counted on disk: never more than `max_requests_per_hour` in any sliding
   hour, none before an HTTP 429's ``retry-at``. A failure (timeout, refused,
   HTTP error, garbage) is logged once per episode; the last good forecast
   stays in use until it is older than `max_age_h`.
"""

from __future__ import annotations

import datetime
import http.client
import json
import logging
import math
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pvheater import __version__
from pvheater.config import Config, ForecastConfig, PlaneConfig, SiteConfig
from pvheater.control.reserve import Forecast, sum_curves
from pvheater.control.timeofday import parse_fetch_times
from pvheater.errors import PvHeaterError

log = logging.getLogger("pvheater")

#: The sliding window of the request limit, seconds.
RATE_WINDOW_S = 3600.0
#: How long to wait after a 429 that names no retry time, seconds.
DEFAULT_BLOCK_S = 3600.0
#: Largest response body read, bytes.
_MAX_BODY_BYTES = 1_000_000
_CACHE_VERSION = 1
USER_AGENT = f"pvheater/{__version__}"


class ForecastError(PvHeaterError):
    """The forecast could not be fetched or read."""


class ForecastRateLimited(ForecastError):
    """The forecast service answered 429: no requests before `retry_at_utc_s` (None: not given)."""

    def __init__(self, message: str, retry_at_utc_s: float | None) -> None:
        super().__init__(message)
        self.retry_at_utc_s = retry_at_utc_s


# --- forecast.solar responses -------------------------------------------------------


@dataclass(frozen=True)
class RateInfo:
    """What a response said about the rate limit."""

    period_s: float | None = None
    limit: int | None = None
    remaining: int | None = None
    retry_at_utc_s: float | None = None


def _zone(name: object) -> datetime.tzinfo | None:
    if not isinstance(name, str):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def parse_timestamp(text: str, zone: datetime.tzinfo | None = None) -> float:
    """A forecast.solar timestamp -> UTC epoch s: ISO 8601 with offset, epoch seconds, or local 'YYYY-MM-DD HH:MM:SS'.

    A timestamp without offset is in `zone` (the response's time zone), else in
    the system's local time.
    """
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ForecastError(f"unreadable time {text[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone) if zone is not None else when.astimezone()
    return when.timestamp()


def _rate_info(message: dict[str, Any], zone: datetime.tzinfo | None) -> RateInfo:
    rate = message.get("ratelimit")
    if not isinstance(rate, dict):
        return RateInfo()

    def number(key: str) -> float | None:
        value = rate.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    retry_at = None
    retry_text = rate.get("retry-at")
    if isinstance(retry_text, str):
        try:
            retry_at = parse_timestamp(retry_text, zone)
        except ForecastError:
            retry_at = None
    limit, remaining = number("limit"), number("remaining")
    return RateInfo(
        period_s=number("period"),
        limit=None if limit is None else int(limit),
        remaining=None if remaining is None else int(remaining),
        retry_at_utc_s=retry_at,
    )


def parse_estimate(body: bytes | str) -> tuple[list[tuple[float, float]], RateInfo]:
    """A forecast.solar /estimate JSON body -> (sorted (UTC s, W) points, rate info); ForecastError when unusable."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ForecastError("answer is not JSON") from None
    if not isinstance(data, dict):
        raise ForecastError("answer is not a JSON object")
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    info = message.get("info") if isinstance(message.get("info"), dict) else {}
    zone = _zone(info.get("timezone"))
    rate = _rate_info(message, zone)
    code = message.get("code", 0)
    if code not in (0, None):
        raise ForecastError(f"service says: {str(message.get('text') or code)[:120]}")
    result = data.get("result")
    watts = result.get("watts") if isinstance(result, dict) else None
    if not isinstance(watts, dict) or len(watts) < 2:
        raise ForecastError("answer has no result.watts series")
    points: dict[float, float] = {}
    for key, value in watts.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ForecastError(f"result.watts[{key!r}] is not a power: {value!r}")
        points[parse_timestamp(str(key), zone)] = float(value)
    return sorted(points.items()), rate


# --- HTTP -------------------------------------------------------------------------------


class ForecastClient:
    """GETs forecast.solar estimates with urllib; turns every failure into a ForecastError."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def url(self, latitude_deg: float, longitude_deg: float, plane: PlaneConfig) -> str:
        """The estimate URL of one plane (timestamps requested in UTC)."""
        return (
            f"{self.base_url}/estimate/{latitude_deg:.4f}/{longitude_deg:.4f}/"
            f"{round(plane.declination_deg)}/{round(plane.azimuth_deg)}/{plane.kwp:g}?time=utc"
        )

    def fetch(self, url: str) -> tuple[list[tuple[float, float]], RateInfo]:
        """One request: the plane's (UTC s, W) points and the rate info; ForecastError / ForecastRateLimited."""
        request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read(_MAX_BODY_BYTES)
        except urllib.error.HTTPError as exc:
            body = b""
            try:
                body = exc.read(_MAX_BODY_BYTES)
            except OSError:
                pass
            finally:
                exc.close()
            if exc.code == 429:
                retry_at = None
                try:
                    retry_at = parse_estimate_rate(body).retry_at_utc_s
                except ForecastError:
                    retry_at = None
                raise ForecastRateLimited("HTTP 429: too many requests", retry_at) from None
            raise ForecastError(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise ForecastError(f"cannot connect: {exc.reason}") from None
        except TimeoutError:
            raise ForecastError(f"no answer within {self.timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ForecastError(f"connection failed: {type(exc).__name__} {exc}") from None
        return parse_estimate(body)


def parse_estimate_rate(body: bytes | str) -> RateInfo:
    """Only the rate info of a (possibly error) answer; ForecastError when it is not JSON."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ForecastError("answer is not JSON") from None
    message = data.get("message") if isinstance(data, dict) and isinstance(data.get("message"), dict) else {}
    info = message.get("info") if isinstance(message.get("info"), dict) else {}
    return _rate_info(message, _zone(info.get("timezone")))


# --- rate-limit book ----------------------------------------------------------------------


@dataclass(frozen=True)
class RateBook:
    """Our own request accounting, kept on disk: request times of the last hour and a 429 block."""

    requests_utc_s: tuple[float, ...] = ()
    blocked_until_utc_s: float | None = None

    def recent(self, now_utc_s: float) -> int:
        """Requests within the sliding hour ending now."""
        return sum(1 for t in self.requests_utc_s if now_utc_s - RATE_WINDOW_S < t <= now_utc_s + 1.0)

    def refusal(self, now_utc_s: float, count: int, limit_per_hour: int) -> str | None:
        """Why `count` more requests may not be made now (None: they may)."""
        if self.blocked_until_utc_s is not None and now_utc_s < self.blocked_until_utc_s:
            until = datetime.datetime.fromtimestamp(self.blocked_until_utc_s, tz=datetime.UTC)
            return f"rate limited by the service until {until:%Y-%m-%d %H:%M} UTC"
        used = self.recent(now_utc_s)
        if used + count > limit_per_hour:
            return f"request limit: {used} of {limit_per_hour} per hour used, {count} needed"
        return None

    def record(self, now_utc_s: float) -> RateBook:
        """The book with one more request at now (older than an hour forgotten)."""
        kept = tuple(t for t in self.requests_utc_s if now_utc_s - RATE_WINDOW_S < t <= now_utc_s + 1.0)
        return replace(self, requests_utc_s=(*kept, now_utc_s))

    def block(self, until_utc_s: float) -> RateBook:
        """The book with no requests allowed before until_utc_s."""
        return replace(self, blocked_until_utc_s=until_utc_s)


# --- fetcher: cron job, cache, latest forecast -----------------------------------------


def latest_slot(now: datetime.datetime, times: Iterable[datetime.time]) -> datetime.datetime | None:
    """The latest scheduled fetch time at or before `now` (aware, local), today or yesterday."""
    slots = [
        datetime.datetime.combine(now.date() - datetime.timedelta(days=back), t, tzinfo=now.tzinfo)
        for back in (0, 1)
        for t in times
    ]
    past = [s for s in slots if s <= now]
    return max(past) if past else None


def cron_trigger(times: Sequence[datetime.time]) -> Any:
    """An APScheduler trigger firing at each time of day (local time)."""
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    triggers = [CronTrigger(hour=t.hour, minute=t.minute) for t in times]
    return triggers[0] if len(triggers) == 1 else OrTrigger(triggers)


class ForecastFetcher:
    """The forecast job: fetch every plane within the rate limit, cache on disk, hand out the latest forecast.

    `run(now_utc_s)` is the cron job (a plain method; tests call it with their
    own times). `latest()` is what the control loop reads every tick.
    """

    def __init__(
        self,
        cfg: ForecastConfig,
        latitude_deg: float,
        longitude_deg: float,
        *,
        client: ForecastClient | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.cfg = cfg
        self.latitude_deg = latitude_deg
        self.longitude_deg = longitude_deg
        self.client = client or ForecastClient(cfg.base_url, cfg.timeout_s)
        self.log = logger
        self.cache_path = Path(cfg.cache_file)
        self.times = parse_fetch_times(cfg.fetch_times)
        self.book = RateBook()
        self.forecast: Forecast | None = None
        self._problem: str | None = None
        self.load()

    @classmethod
    def from_config(cls, config: Config) -> ForecastFetcher:
        """The fetcher for config.forecast at config.site (which must have a latitude and longitude)."""
        site: SiteConfig = config.site
        if site.latitude_deg is None or site.longitude_deg is None:
            raise PvHeaterError("forecast.enabled needs site.latitude_deg and site.longitude_deg")
        return cls(config.forecast, site.latitude_deg, site.longitude_deg)

    @property
    def key(self) -> str:
        """What the cached forecast was fetched for: place and planes."""
        planes = ";".join(f"{p.declination_deg:g}/{p.azimuth_deg:g}/{p.kwp:g}" for p in self.cfg.planes)
        return f"{self.latitude_deg:.4f},{self.longitude_deg:.4f}|{planes}"

    def latest(self) -> Forecast | None:
        """The newest good forecast (max_age_h is judged by the reserve, which knows the time)."""
        return self.forecast

    def needs_fetch(self, now: datetime.datetime) -> bool:
        """True when the cache holds no forecast fetched since the latest scheduled time (now: aware local)."""
        if self.forecast is None:
            return True
        slot = latest_slot(now, self.times)
        return slot is not None and self.forecast.fetched_utc_s < slot.timestamp()

    def run(self, now_utc_s: float) -> bool:
        """Fetch all planes if the rate limit allows; cache and keep the result. Never raises; True on success."""
        planes = self.cfg.planes
        refusal = self.book.refusal(now_utc_s, len(planes), self.cfg.max_requests_per_hour)
        if refusal is not None:
            self._trouble("limit", f"forecast not fetched: {refusal}")
            return False
        curves = []
        for k, plane in enumerate(planes):
            self.book = self.book.record(now_utc_s)
            try:
                points, rate = self.client.fetch(self.client.url(self.latitude_deg, self.longitude_deg, plane))
            except ForecastRateLimited as exc:
                until = exc.retry_at_utc_s if exc.retry_at_utc_s is not None else now_utc_s + DEFAULT_BLOCK_S
                self.book = self.book.block(max(until, now_utc_s))
                self._save()
                self._trouble("limit", f"forecast not fetched: {exc}; next try after "
                              f"{datetime.datetime.fromtimestamp(until, tz=datetime.UTC):%H:%M} UTC")
                return False
            except ForecastError as exc:
                self._save()
                self._trouble("fetch", f"forecast not fetched: {exc}")
                return False
            curves.append(points)
            if rate.remaining == 0 and k < len(planes) - 1:
                self.book = self.book.block(now_utc_s + (rate.period_s or DEFAULT_BLOCK_S))
                self._save()
                self._trouble("limit", "forecast not fetched: the service's request limit is used up")
                return False
        try:
            forecast = Forecast(tuple(sum_curves(curves)), now_utc_s)
        except ValueError as exc:
            self._save()
            self._trouble("fetch", f"forecast not fetched: {exc}")
            return False
        self.forecast = forecast
        self._save()
        next_day_wh = forecast.energy_wh(now_utc_s, now_utc_s + 86400.0)
        again = " again" if self._problem is not None else ""
        self.log.info("forecast fetched%s: %.1f kWh of PV in the next 24 h", again, next_day_wh / 1000)
        self._problem = None
        return True

    def schedule(self, scheduler: Any, job: Callable[[], object], now: datetime.datetime) -> None:
        """Add `job` to an APScheduler scheduler at the fetch times, and once at once when the cache is stale."""
        scheduler.add_job(job, cron_trigger(self.times), id="forecast", max_instances=1, coalesce=True,
                          misfire_grace_time=600)
        if self.needs_fetch(now):
            scheduler.add_job(job, id="forecast_start", next_run_time=now)
        else:
            assert self.forecast is not None
            fetched = datetime.datetime.fromtimestamp(self.forecast.fetched_utc_s, tz=datetime.UTC)
            self.log.info("forecast from the cache (fetched %s UTC); next fetch at the next of %s",
                          f"{fetched:%Y-%m-%d %H:%M}", self.cfg.fetch_times)

    # --- cache ----------------------------------------------------------------------

    def load(self) -> None:
        """Read the cache file (forecast and rate book); a missing or bad file means an empty cache."""
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.log.warning("forecast cache %s unreadable, ignored: %s", self.cache_path, exc)
            return
        try:
            if data.get("version") != _CACHE_VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            self.book = RateBook(
                requests_utc_s=tuple(float(t) for t in data.get("requests_utc_s", ())),
                blocked_until_utc_s=None if data.get("blocked_until_utc_s") is None
                else float(data["blocked_until_utc_s"]),
            )
            points = data.get("points")
            if points and data.get("key") == self.key:
                self.forecast = Forecast(tuple((float(t), float(w)) for t, w in points), float(data["fetched_utc_s"]))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            self.log.warning("forecast cache %s unreadable, ignored: %s", self.cache_path, exc)

    def _save(self) -> None:
        """Write forecast and rate book atomically; a failure is logged (once) and otherwise ignored."""
        data: dict[str, Any] = {
            "version": _CACHE_VERSION,
            "key": self.key,
            "requests_utc_s": list(self.book.requests_utc_s),
            "blocked_until_utc_s": self.book.blocked_until_utc_s,
        }
        if self.forecast is not None:
            data["fetched_utc_s"] = self.forecast.fetched_utc_s
            data["points"] = [list(p) for p in self.forecast.points]
        tmp = self.cache_path.with_name(self.cache_path.name + ".tmp")
        try:
            if self.cache_path.parent != Path(""):
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.cache_path)
        except OSError as exc:
            self._trouble("cache", f"forecast cache {self.cache_path} not written: {exc.strerror or exc}")

    def _trouble(self, kind: str, text: str) -> None:
        """Log a problem once per episode: a run of the same kind of problem logs once, at its start."""
        if self._problem != kind:
            self.log.warning("%s (heating falls back to the plain min_soc rule without a forecast)", text)
            self._problem = kind
        else:
            self.log.debug("%s", text)



"""The PV forecast: forecast.solar client, disk cache, rate-limit book, and the forecast-aware battery reserve.

Three parts, one direction of data:

1. **Fetching** (`ForecastFetcher.run`, an APScheduler cron job at
   `forecast.fetch_times`): one GET per configured plane of
   ``{base_url}/estimate/{lat}/{lon}/{dec}/{az}/{kwp}?time=utc``, the planes'
   power curves summed into one :class:`Forecast`, written with the rate-limit
   book to `forecast.cache_file`. A restart reads the cache and fetches only
   when the cache predates the latest scheduled fetch time. Requests are
   counted on disk: never more than `max_requests_per_hour` in any sliding
   hour, none before an HTTP 429's ``retry-at``. A failure (timeout, refused,
   HTTP error, garbage) is logged once per episode; the last good forecast
   stays in use until it is older than `max_age_h`.
2. **The forecast** (:class:`Forecast`): PV power at instants (UTC epoch
   seconds), linear in between, zero outside the sun's hours. Pure data.
3. **The reserve** (:func:`reserve_step`, pure): may the heater start before
   the battery reaches `control.min_soc_pct`? Yes when the forecast energy
   still to come before the battery must be full (the end of the solar day
   minus `fill_margin_h`), times `safety_factor`, less the house's base load,
   leaves more than the battery needs -- and while measured PV keeps up with
   the forecast (`reality_factor`). The answer is a share: the part of the
   charge power (battery + heater) the battery must keep so that it is still
   full in time; the heater may take the rest. When the share reaches 1, or
   reality falls behind, or there is no usable forecast, the plain
   `min_soc_pct` rule applies exactly as without a forecast.
"""

from __future__ import annotations

import bisect
import datetime
import http.client
import json
import logging
import math
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pvheater import __version__
from pvheater.errors import PvHeaterError
from pvheater.measurements import MPPT_MODE_LIMITED, Measurements

if TYPE_CHECKING:
    from pvheater.config import Config, ForecastConfig, PlaneConfig, SiteConfig

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


# --- the forecast -------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    """PV power forecast: (UTC epoch s, W) points, sorted; linear between points, unknown outside them."""

    points: tuple[tuple[float, float], ...]
    #: When it was fetched (UTC epoch s).
    fetched_utc_s: float
    #: Energy from the first point to each point, Wh (derived).
    _cum_wh: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise ValueError("a forecast needs at least two points")
        cum = [0.0]
        for (t0, w0), (t1, w1) in zip(self.points, self.points[1:], strict=False):
            if not t1 > t0:
                raise ValueError(f"forecast points must be strictly increasing in time (at {t1})")
            cum.append(cum[-1] + (w0 + w1) / 2.0 * (t1 - t0) / 3600.0)
        object.__setattr__(self, "_cum_wh", tuple(cum))

    @property
    def start_utc_s(self) -> float:
        """First instant covered."""
        return self.points[0][0]

    @property
    def end_utc_s(self) -> float:
        """Last instant covered."""
        return self.points[-1][0]

    def power_w(self, utc_s: float) -> float | None:
        """Forecast PV power at an instant; None outside the forecast."""
        if not self.points[0][0] <= utc_s <= self.points[-1][0]:
            return None
        return _power_at(self.points, utc_s)

    def _cum_at(self, utc_s: float) -> float:
        pts = self.points
        t = min(max(utc_s, pts[0][0]), pts[-1][0])
        i = bisect.bisect_right(pts, (t, math.inf)) - 1
        if i >= len(pts) - 1:
            return self._cum_wh[-1]
        (t0, w0), (t1, w1) = pts[i], pts[i + 1]
        w = w0 + (w1 - w0) * (t - t0) / (t1 - t0)
        return self._cum_wh[i] + (w0 + w) / 2.0 * (t - t0) / 3600.0

    def energy_wh(self, start_utc_s: float, end_utc_s: float) -> float:
        """Forecast PV energy between two instants (the part inside the forecast), Wh."""
        if end_utc_s <= start_utc_s:
            return 0.0
        return self._cum_at(end_utc_s) - self._cum_at(start_utc_s)

    def solar_day_end_s(self, utc_s: float) -> float | None:
        """When the forecast power next falls to zero (sunset) at or after a daytime instant; None at night."""
        power = self.power_w(utc_s)
        if power is None or power <= 0.0:
            return None
        pts = self.points
        i = bisect.bisect_right(pts, (utc_s, math.inf))
        for t, w in pts[i:]:
            if w <= 0.0:
                return t
        return pts[-1][0]

    @classmethod
    def from_hourly(cls, day_start_utc_s: float, hourly_w: Sequence[float], fetched_utc_s: float) -> Forecast:
        """From mean powers of consecutive hours (e.g. a simulated day's): one point at each hour's middle."""
        points = [(day_start_utc_s, 0.0)]
        points += [(day_start_utc_s + (h + 0.5) * 3600.0, float(w)) for h, w in enumerate(hourly_w)]
        points.append((day_start_utc_s + len(hourly_w) * 3600.0, 0.0))
        return cls(tuple(points), fetched_utc_s)


def _power_at(points: Sequence[tuple[float, float]], t: float) -> float:
    """Linear interpolation in sorted (t, W) points; 0 W outside them."""
    if not points or not points[0][0] <= t <= points[-1][0]:
        return 0.0
    i = bisect.bisect_right(points, (t, math.inf)) - 1
    if i >= len(points) - 1:
        return points[-1][1]
    (t0, w0), (t1, w1) = points[i], points[i + 1]
    return w0 + (w1 - w0) * (t - t0) / (t1 - t0)


def sum_curves(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Sum power curves (one per plane) on the union of their instants; a curve is 0 W outside its span."""
    times = sorted({t for curve in curves for t, _ in curve})
    return [(t, sum(_power_at(curve, t) for curve in curves)) for t in times]


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


class ForecastProvider(Protocol):
    """Where the control loop gets the newest forecast (no I/O: in memory)."""

    def latest(self) -> Forecast | None:
        """The newest good forecast, or None."""
        ...


class StaticForecast:
    """A provider holding one forecast (the simulator's; tests)."""

    def __init__(self, forecast: Forecast | None) -> None:
        self.forecast = forecast

    def latest(self) -> Forecast | None:
        """The forecast given."""
        return self.forecast


def parse_fetch_times(text: str) -> list[datetime.time]:
    """'05:20,10:20' -> times of day; ValueError naming a bad entry."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            hours, minutes = part.split(":")
            if len(hours) != 2 or len(minutes) != 2:
                raise ValueError
            out.append(datetime.time(int(hours), int(minutes)))
        except ValueError:
            raise ValueError(f"expected times HH:MM separated by commas, got {part!r}") from None
    return sorted(out)


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


# --- the reserve (pure) --------------------------------------------------------------------

#: Early heating starts only when the battery needs at most this share of the coming PV ...
START_SHARE = 0.8
#: ... and stops when it needs all of it.
STOP_SHARE = 1.0
#: Once stopped for PV behind the forecast, early heating resumes only at reality_factor + this.
REALITY_HYSTERESIS = 0.05
#: Forecast power (smoothed) below which measured PV says nothing about the forecast yet, W.
_EVIDENCE_W = 150.0
#: Longest gap between two samples the smoothing trusts, seconds.
_MAX_GAP_S = 3600.0


@dataclass(frozen=True)
class ReserveSettings:
    """What the reserve needs from the config."""

    min_soc_pct: float = 95.0
    early_min_soc_pct: float = 30.0
    capacity_wh: float = 4800.0
    safety_factor: float = 0.7
    house_base_w: float = 250.0
    fill_margin_s: float = 2 * 3600.0
    reality_factor: float = 0.8
    reality_tau_s: float = 1800.0
    max_age_s: float = 12 * 3600.0

    @classmethod
    def from_config(cls, config: Config) -> ReserveSettings:
        """Build from the control and forecast sections."""
        f = config.forecast
        return cls(
            min_soc_pct=config.control.min_soc_pct,
            early_min_soc_pct=f.early_min_soc_pct,
            capacity_wh=f.battery_capacity_wh,
            safety_factor=f.safety_factor,
            house_base_w=f.house_base_w,
            fill_margin_s=f.fill_margin_h * 3600.0,
            reality_factor=f.reality_factor,
            reality_tau_s=f.reality_tau_min * 60.0,
            max_age_s=f.max_age_h * 3600.0,
        )


@dataclass(frozen=True)
class ReserveState:
    """What the reserve remembers: measured and forecast PV, smoothed alike, and whether it allowed early heat."""

    actual_w: float = 0.0
    forecast_w: float = 0.0
    last_utc_s: float | None = None
    early: bool = False


@dataclass(frozen=True)
class ReserveAdvice:
    """The reserve's answer for one tick.

    With `early` the controller and the guard use `min_soc_pct` (lowered) as
    their SoC limit and the heater may take what the battery does not need of
    the charge power: the battery keeps `battery_share` of (battery + heater).
    Without `early` they use the plain rule (the loop passes no advice at all).
    """

    early: bool
    min_soc_pct: float
    battery_share: float
    reason: str
    #: Measured PV over forecast PV, smoothed (None: not enough sun yet to tell).
    reality_ratio: float | None = None


def battery_share_needed(
    soc_pct: float,
    capacity_wh: float,
    forecast_wh: float,
    hours_left_h: float,
    house_base_w: float,
    safety_factor: float,
) -> float:
    """Share of the coming PV surplus the battery needs to be full in time (inf: it cannot get full).

    need = capacity x (100 - SoC) %; available = safety_factor x forecast
    energy until the deadline - house base load x hours left. Share = need /
    available; 0 when the battery is full.
    """
    need_wh = capacity_wh * max(0.0, 100.0 - soc_pct) / 100.0
    if need_wh <= 0.0:
        return 0.0
    available_wh = safety_factor * forecast_wh - house_base_w * max(0.0, hours_left_h)
    if available_wh <= 0.0:
        return math.inf
    return need_wh / available_wh


def update_reality(
    state: ReserveState, m: Measurements, forecast_now_w: float, utc_s: float, tau_s: float
) -> ReserveState:
    """Smooth measured and forecast PV alike (time constant tau_s); samples with PV held back are skipped."""
    pv_w = m.pv_w
    if pv_w is None or m.mppt_mode == MPPT_MODE_LIMITED:
        # The MPPT holds PV back: measured PV says nothing about the forecast.
        return ReserveState(state.actual_w, state.forecast_w, utc_s, state.early)
    if state.last_utc_s is None:
        alpha = 1.0
    else:
        alpha = 1.0 - math.exp(-min(max(utc_s - state.last_utc_s, 0.0), _MAX_GAP_S) / tau_s)
    return ReserveState(
        state.actual_w + alpha * (pv_w - state.actual_w),
        state.forecast_w + alpha * (forecast_now_w - state.forecast_w),
        utc_s,
        state.early,
    )


def reserve_step(
    state: ReserveState,
    m: Measurements | None,
    forecast: Forecast | None,
    utc_s: float | None,
    settings: ReserveSettings,
) -> tuple[ReserveState, ReserveAdvice | None]:
    """One tick of the reserve: new state, and advice (None: no usable forecast, the plain rule applies)."""
    if forecast is None or m is None or utc_s is None or utc_s - forecast.fetched_utc_s > settings.max_age_s:
        return replace(state, early=False), None
    forecast_now = forecast.power_w(utc_s)
    if forecast_now is None:
        return replace(state, early=False), None
    state = update_reality(state, m, forecast_now, utc_s, settings.reality_tau_s)
    ratio = state.actual_w / state.forecast_w if state.forecast_w >= _EVIDENCE_W else None

    def plain(reason: str) -> tuple[ReserveState, ReserveAdvice]:
        advice = ReserveAdvice(False, settings.min_soc_pct, 1.0, reason, ratio)
        return ReserveState(state.actual_w, state.forecast_w, state.last_utc_s, False), advice

    soc = m.soc_pct
    if soc is None:
        return plain("SoC unknown")
    if soc >= settings.min_soc_pct:
        return plain(f"SoC {soc:.0f} % >= {settings.min_soc_pct:g} %: plain rule")
    end_s = forecast.solar_day_end_s(utc_s)
    if end_s is None:
        return plain("no sun in the forecast now")
    deadline_s = end_s - settings.fill_margin_s
    if deadline_s <= utc_s:
        return plain("too late in the day to heat before the battery is full")
    if ratio is None:
        return plain("waiting for enough sun to compare PV with the forecast")
    if ratio < settings.reality_factor + (0.0 if state.early else REALITY_HYSTERESIS):
        return plain(f"PV at {100 * ratio:.0f} % of the forecast")
    remaining_wh = forecast.energy_wh(utc_s, deadline_s) * min(1.0, ratio)
    share = battery_share_needed(
        soc, settings.capacity_wh, remaining_wh, (deadline_s - utc_s) / 3600.0,
        settings.house_base_w, settings.safety_factor,
    )
    early = share <= START_SHARE or (state.early and share < STOP_SHARE)
    if not early:
        return plain(f"battery needs {_pct(share)} of the PV still to come")
    reason = f"forecast: battery needs {_pct(share)} of the PV still to come"
    early_state = ReserveState(state.actual_w, state.forecast_w, state.last_utc_s, True)
    return early_state, ReserveAdvice(True, settings.early_min_soc_pct, share, reason, ratio)


def _pct(share: float) -> str:
    return "more than all" if math.isinf(share) else f"{100 * share:.0f} %"


__all__ = [
    "Forecast",
    "ForecastClient",
    "ForecastError",
    "ForecastFetcher",
    "ForecastProvider",
    "ForecastRateLimited",
    "RateBook",
    "RateInfo",
    "ReserveAdvice",
    "ReserveSettings",
    "ReserveState",
    "StaticForecast",
    "battery_share_needed",
    "cron_trigger",
    "latest_slot",
    "parse_estimate",
    "parse_fetch_times",
    "parse_timestamp",
    "reserve_step",
    "sum_curves",
    "update_reality",
]

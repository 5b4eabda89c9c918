"""The forecast and the forecast-aware battery reserve (pure: no I/O, no clock).

**The forecast** (:class:`Forecast`): PV power at instants (UTC epoch
seconds), linear in between, zero outside the sun's hours. Pure data; the
forecast.solar client in pvheater/forecast.py fetches it.

**The reserve** (:func:`reserve_step`): may the heater start before the
battery reaches `control.min_soc_pct`? Yes when the forecast energy still to
come before the battery must be full (the end of the solar day minus
`fill_margin_h`), times `safety_factor`, less the house's base load, leaves
more than the battery needs -- and while measured PV keeps up with the
forecast (`reality_factor`). The answer is a share: the part of the charge
power (battery + heater) the battery must keep so that it is still full in
time; the heater may take the rest. When the share reaches 1, or reality
falls behind, or there is no usable forecast, the plain `min_soc_pct` rule
applies exactly as without a forecast.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from pvheater.config import Config
from pvheater.control.measurements import MPPT_MODE_LIMITED, Measurements

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

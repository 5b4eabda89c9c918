"""What the heater really draws, measured from the GX: drawing, not drawing (tank full) or drawing less.

The GX's AC consumption is house + heater. Over windows of
``window_samples`` samples in which the expected heater power (the calibration
at the command in force) moved by a worthwhile step (relay close, knob move),
consumption is fitted as house + slope x expected, the expected power taken
``lag_samples`` earlier (servo slew, the GX's publish). A window whose residuals
spread more than the house tolerance is dropped (the house moved at the same
moment); the next change repeats it. A flat response (slope ~0) over a big
span says "not drawing" after two such windows, or after one right after a
*spontaneous* drop of about the heater's power with the command steady (the
thermostat opening looks like that; so does a kettle ending, which the next
window -- the loop lowers the knob to the sense power -- tells apart). While
not drawing, a spontaneous rise of about the expected power, or a window that
follows the command, says the thermostat closed. Accepted slopes, per band of
expected power, are the online correction of the curve (mains voltage, linkage
wear, a straight-line default): its integral is the measured heater power.
Pure: the caller passes every sample and its time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DRAWING, NOT_DRAWING, LOW, UNKNOWN = "drawing", "not drawing", "drawing less than expected", "unknown"


@dataclass(frozen=True)
class ResponseSettings:
    """Thresholds of the heater-response observer."""

    #: The heater's power at full (the correction's bands span 0..max_power_w).
    max_power_w: float = 2000.0
    bands: int = 8
    #: Smallest expected change that counts as an observation, W.
    min_step_w: float = 150.0
    #: Samples between a change and its effect in consumption (servo slew, GX publish); samples per fit.
    lag_samples: int = 2
    window_samples: int = 6
    #: Consumption spread on a plateau that counts as the house moving, W.
    house_tolerance_w: float = 60.0
    #: A fitted slope below this is no response -- judged only over a span of verdict_span_frac of the
    #: heater's power reaching verdict_high_frac of it (a straight-line curve is flat at both ends of the knob).
    none_ratio: float = 0.15
    verdict_span_frac: float = 0.2
    verdict_high_frac: float = 0.4
    #: The full curve's gain below low_ratio: drawing less than expected.
    low_ratio: float = 0.8
    #: Weight of a new observation in a band's ratio.
    ratio_weight: float = 0.5
    #: A spontaneous step counts when it is at least this fraction of the expected power.
    spontaneous_frac: float = 0.6


@dataclass(frozen=True)
class ResponseState:
    """The observer's memory: recent samples (time, consumption, expected), the last plateau, the verdict."""

    samples: tuple[tuple[float, float, float], ...] = ()
    status: str = UNKNOWN
    status_s: float | None = None
    #: Measured watts per expected watt (the curve's slope) per band of expected power (None: not observed).
    ratios: tuple[float | None, ...] = ()
    observations: int = 0
    zero_responses: int = 0
    suspect: bool = False
    #: Sample time of the drop that made it suspect.
    suspect_s: float | None = None
    rejected: int = 0
    #: No new observation before this time (windows do not overlap).
    next_s: float | None = None


@dataclass(frozen=True)
class ResponseEvent:
    """A change of the heater state: the new status, when, and why."""

    status: str
    time_s: float
    reason: str


_KEEP = 12


def _band(expected_w: float, s: ResponseSettings) -> int:
    return min(s.bands - 1, max(0, int(expected_w / s.max_power_w * s.bands)))


def _slope(state: ResponseState, i: int) -> float:
    """The measured slope of band i (1 while it is not observed)."""
    if not state.ratios:
        return 1.0
    own = state.ratios[i] if i < len(state.ratios) else None
    return 1.0 if own is None else own


def _integral(state: ResponseState, expected_w: float, s: ResponseSettings) -> float:
    """The corrected curve: the integral of the bands' slopes from 0 to expected_w."""
    width = s.max_power_w / s.bands
    total, i = 0.0, 0
    while i < s.bands and (i + 1) * width <= expected_w:
        total += _slope(state, i) * width
        i += 1
    if i < s.bands:
        total += _slope(state, i) * (expected_w - i * width)
    else:
        total += _slope(state, s.bands - 1) * (expected_w - s.max_power_w)
    return max(0.0, total)


def slope_between(state: ResponseState, lo_w: float, hi_w: float, s: ResponseSettings) -> float:
    """The corrected curve's mean slope between two expected powers (1 when they are equal)."""
    if hi_w - lo_w < 1.0:
        return 1.0
    return max(0.05, (_integral(state, hi_w, s) - _integral(state, lo_w, s)) / (hi_w - lo_w))


def ratio_at(state: ResponseState, expected_w: float, s: ResponseSettings) -> float:
    """Measured / expected power at an expected power by the corrected curve (1 at zero)."""
    if expected_w <= 0.0:
        return 1.0
    return _integral(state, expected_w, s) / expected_w


def measured_heater_w(state: ResponseState, expected_w: float, s: ResponseSettings) -> float:
    """The heater's power by the observer: 0 while not drawing, else the corrected curve at the expected power."""
    if state.status == NOT_DRAWING or expected_w <= 0.0:
        return 0.0
    return _integral(state, expected_w, s)


def suspect_for_s(state: ResponseState) -> float:
    """How long (sample time) a drop has been waiting for its verdict; 0 when there is none."""
    if not state.suspect or state.suspect_s is None or not state.samples:
        return 0.0
    return state.samples[-1][0] - state.suspect_s


def step(
    state: ResponseState, time_s: float, consumption_w: float | None, expected_w: float, s: ResponseSettings
) -> tuple[ResponseState, ResponseEvent | None]:
    """Take one GX sample (consumption) with the heater power the calibration expects for the command in force."""
    if consumption_w is None or (state.samples and time_s <= state.samples[-1][0]):
        return state, None  # no value, or the same snapshot again
    samples = (*state.samples, (time_s, float(consumption_w), float(expected_w)))[-_KEEP:]
    state = replace(state, samples=samples)
    spont = _spontaneous(state, s)
    if spont is not None:
        return spont
    return _regress(state, s)


def _regress(state: ResponseState, s: ResponseSettings) -> tuple[ResponseState, ResponseEvent | None]:
    """Fit consumption = house + slope x expected (lagged) over the last window: the heater's response."""
    samples = state.samples
    w = s.window_samples
    if len(samples) < w + s.lag_samples:
        return state, None
    t = samples[-1][0]
    if state.next_s is not None and t < state.next_s:
        return state, None
    c = [x[1] for x in samples[-w:]]
    # the lag varies with the GX's period: of the lags whose fit is clean, the one with the strongest response
    # (a misaligned lag can fit a flat piece of consumption with slope 0)
    best: tuple[float, list[float]] | None = None
    tried = False
    for lag in (s.lag_samples,):  # (trying neighbouring lags fitted flat pieces of consumption: not done)
        if len(samples) < w + lag:
            continue
        e_l = [x[2] for x in samples[len(samples) - w - lag: len(samples) - lag]]
        span = max(e_l) - min(e_l)
        mid = min(e_l) + span / 2
        high = sum(1 for x in e_l if x > mid)
        if span < s.min_step_w or not 2 <= high <= w - 2:
            continue  # no step, or one sample on one side of it: a slope from a single point says nothing
        tried = True
        spread, slope = _fit(e_l, c)
        if spread > s.house_tolerance_w + 0.1 * span * max(slope, 0.0):
            continue
        if best is None or slope > best[0]:
            best = (slope, e_l)
    if not tried:
        return state, None
    state = replace(state, next_s=t + w)  # the next observation uses new samples
    if best is None:
        return replace(state, rejected=state.rejected + 1), None  # the house moved: the next change repeats it
    slope, e = best
    return _judge(state, slope, t, lo_w=min(e), hi_w=max(e), s=s)


def _fit(e: list[float], c: list[float]) -> tuple[float, float]:
    """Least squares c = a + slope x e: (spread of the residuals, slope)."""
    n = len(e)
    mc, me = sum(c) / n, sum(e) / n
    var = sum((x - me) ** 2 for x in e)
    slope = sum((x - me) * (y - mc) for x, y in zip(e, c, strict=True)) / var
    resid = [y - mc - slope * (x - me) for x, y in zip(e, c, strict=True)]
    return max(resid) - min(resid), slope


def _set(state: ResponseState, status: str, time_s: float, reason: str) -> tuple[ResponseState, ResponseEvent | None]:
    new = replace(state, status=status, status_s=time_s, suspect=False, zero_responses=0)
    if status == state.status:
        return new, None
    return new, ResponseEvent(status, time_s, reason)


def _spontaneous(state: ResponseState, s: ResponseSettings) -> tuple[ResponseState, ResponseEvent | None] | None:
    """A consumption step of about the heater's power with the command steady for the lag: a thermostat event?"""
    samples = state.samples
    if len(samples) < s.lag_samples + 2:
        return None
    recent = samples[-(s.lag_samples + 2):]
    e = recent[-1][2]
    if max(x[2] for x in recent) - min(x[2] for x in recent) > 0.15 * e or e < s.min_step_w / 2:
        return None  # the command moved by more than a trim: the step may be its own
    step_w = recent[-1][1] - recent[-2][1]
    t = recent[-1][0]
    r = ratio_at(state, e, s)
    lo, hi = s.spontaneous_frac * e * min(r, 1.0), 1.5 * e * max(r, 1.0) + s.house_tolerance_w
    if state.status == NOT_DRAWING:
        if lo <= step_w <= hi:
            return _set(state, DRAWING, t, f"consumption rose {step_w:.0f} W: thermostat closed")
        return None
    if lo <= -step_w <= hi:
        # judge from just after the drop: a kettle ending leaves the heater drawing, a thermostat does not
        return replace(state, suspect=True, suspect_s=t, zero_responses=0, next_s=t + s.window_samples - 1), None
    if state.suspect and state.suspect_s is not None and t - state.suspect_s > 25.0:
        return replace(state, suspect=False), None  # no plateau to judge by: give the drop up
    return None


def _judge(
    state: ResponseState, slope: float, t: float, lo_w: float, hi_w: float, s: ResponseSettings
) -> tuple[ResponseState, ResponseEvent | None]:
    """Judge a fitted slope (measured watts per expected watt) over expected lo_w..hi_w."""
    big = hi_w - lo_w >= s.verdict_span_frac * s.max_power_w and hi_w >= s.verdict_high_frac * s.max_power_w
    if slope < s.none_ratio and state.status != NOT_DRAWING and not big:
        return state, None  # a flat response low on the curve or over a small span: the curve's ends do that
    if slope < s.none_ratio:
        zeros = state.zero_responses + 1
        if zeros >= 2 or state.suspect or state.status == NOT_DRAWING:
            how = "after a drop of its power" if state.suspect else f"{zeros} changes without a response"
            return _set(state, NOT_DRAWING, t, f"heater does not draw ({how}): tank full")
        return replace(state, zero_responses=zeros), None
    if slope > 2.5:
        return replace(state, rejected=state.rejected + 1), None  # more than the element can give: the house
    slopes = list(state.ratios) if state.ratios else [None] * s.bands
    first, last = _band(lo_w, s), _band(max(lo_w, hi_w - 1e-6), s)
    r_new = min(max(slope, 0.0), 2.5)
    for i in range(first, last + 1):
        old = slopes[i]
        slopes[i] = r_new if old is None else old + s.ratio_weight * (r_new - old)
    state = replace(state, ratios=tuple(slopes), observations=state.observations + 1, zero_responses=0)
    gain = measured_heater_w(replace(state, status=DRAWING), s.max_power_w, s) / s.max_power_w
    status = LOW if gain < s.low_ratio else DRAWING
    why = "consumption follows the command" if status == DRAWING else f"draws {gain:.0%} of the expected power"
    if state.status == NOT_DRAWING:
        why = "consumption follows the command again: thermostat closed"
    return _set(state, status, t, why)

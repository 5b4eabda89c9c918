"""What the heater really draws, measured from the GX: drawing, not drawing (tank full) or drawing less.

The GX's AC consumption is house + heater. At each deliberate change of the
expected heater power (relay close, knob move) the change in consumption over
the next samples is compared with the change the calibration expects, aligned
by ``lag_samples`` (servo slew and the GX's publish). An observation is dropped
when the house visibly moved (consumption unsteady before the change, or the
samples after it disagree with one ratio) or when the change is too small; the
next change repeats it. Two zero responses in a row say "not drawing"; one is
enough right after a *spontaneous* drop of about the heater's power without a
command change (the thermostat opening looks like that; so does a kettle
switching off, which the next observation tells apart). While not drawing, a
spontaneous rise of about the expected power, or a deliberate change that the
consumption follows, says the thermostat closed. Accepted observations update
a ratio measured / expected (mains voltage, linkage wear), used for the
measured heater power. Pure: the caller passes every sample and its time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DRAWING, NOT_DRAWING, LOW, UNKNOWN = "drawing", "not drawing", "drawing less than expected", "unknown"


@dataclass(frozen=True)
class ResponseSettings:
    """Thresholds of the heater-response observer."""

    #: Smallest expected change that counts as an observation, W.
    min_step_w: float = 150.0
    #: Samples between the change and the command's effect in consumption (servo slew, GX publish).
    lag_samples: int = 2
    #: Samples after the change before it is judged (lag included), and samples it is judged over.
    settle_samples: int = 4
    judge_samples: int = 3
    #: Consumption spread (after removing the heater's share) that counts as the house moving, W.
    house_tolerance_w: float = 60.0
    #: Measured / expected below this: no response; below low_ratio: drawing less than expected.
    none_ratio: float = 0.3
    low_ratio: float = 0.85
    #: Weight of a new observation in the running ratio.
    ratio_weight: float = 0.3
    #: A spontaneous step counts when it is at least this fraction of the expected power.
    spontaneous_frac: float = 0.6


@dataclass(frozen=True)
class ResponseState:
    """The observer's memory: recent samples (time, consumption, expected), the pending change, the verdict."""

    samples: tuple[tuple[float, float, float], ...] = ()
    pending: int | None = None  # index (into samples) of the last sample before the change
    status: str = UNKNOWN
    status_s: float | None = None
    ratio: float = 1.0
    observations: int = 0
    zero_responses: int = 0
    suspect: bool = False
    rejected: int = 0


@dataclass(frozen=True)
class ResponseEvent:
    """A change of the heater state: the new status, when, and why."""

    status: str
    time_s: float
    reason: str


_KEEP = 16


def measured_heater_w(state: ResponseState, expected_w: float) -> float:
    """The heater's power by the observer: 0 while not drawing, else the expected power times the ratio."""
    if state.status == NOT_DRAWING:
        return 0.0
    return expected_w * state.ratio


def step(
    state: ResponseState, time_s: float, consumption_w: float | None, expected_w: float, s: ResponseSettings
) -> tuple[ResponseState, ResponseEvent | None]:
    """Take one GX sample (consumption) with the heater power the calibration expects for the command in force."""
    if consumption_w is None or (state.samples and time_s <= state.samples[-1][0]):
        return state, None  # no value, or the same snapshot again
    samples = (*state.samples, (time_s, float(consumption_w), float(expected_w)))
    pending = state.pending
    if len(samples) > _KEEP:
        cut = len(samples) - _KEEP
        samples = samples[cut:]
        pending = None if pending is None or pending < cut else pending - cut
    state = replace(state, samples=samples, pending=pending)
    n = len(samples)
    if n < 2:
        return state, None
    if pending is None and abs(samples[-1][2] - samples[-2][2]) >= 1.0:
        state = replace(state, pending=n - 2)
    event = _spontaneous(state, s)
    if event is not None:
        return event
    if state.pending is not None and n - 1 - state.pending >= s.settle_samples + s.judge_samples - 1:
        return _judge(state, s)
    return state, None


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
    if any(abs(x[2] - e) >= 1.0 for x in recent) or e < s.min_step_w / 2:
        return None
    step_w = recent[-1][1] - recent[-2][1]
    t = recent[-1][0]
    expected = e * state.ratio
    if state.status == NOT_DRAWING:
        if s.spontaneous_frac * expected <= step_w <= 1.5 * expected + s.house_tolerance_w:
            return _set(replace(state, pending=None), DRAWING, t, f"consumption rose {step_w:.0f} W: thermostat closed")
        return None
    if -step_w >= s.spontaneous_frac * expected and -step_w <= 1.5 * expected + s.house_tolerance_w:
        return replace(state, suspect=True), None
    return None


def _judge(state: ResponseState, s: ResponseSettings) -> tuple[ResponseState, ResponseEvent | None]:
    """Judge the pending change: the consumption's step against the expected one."""
    samples = state.samples
    i0 = state.pending
    assert i0 is not None
    _t0, c0, e0 = samples[i0]
    before = samples[max(0, i0 - 2): i0 + 1]
    judged = samples[-s.judge_samples:]
    start = len(samples) - s.judge_samples
    d_c = [c - c0 for _, c, _ in judged]
    d_e = [samples[max(i0, start + k - s.lag_samples)][2] - e0 for k in range(s.judge_samples)]
    nxt = None  # a later change in the window starts the next observation
    t = judged[-1][0]
    cleared = replace(state, pending=nxt)
    mean_e = sum(d_e) / len(d_e)
    if abs(mean_e) < s.min_step_w:
        return cleared, None
    spread_before = max(c for _, c, _ in before) - min(c for _, c, _ in before)
    ratio = sum(d_c) / sum(d_e)
    resid = [dc - ratio * de for dc, de in zip(d_c, d_e, strict=True)]
    tol = s.house_tolerance_w + 0.05 * abs(mean_e)
    if spread_before > tol or max(resid) - min(resid) > tol:
        return replace(cleared, rejected=state.rejected + 1), None  # the house moved: try the next change
    if ratio < s.none_ratio:
        zeros = state.zero_responses + 1
        if zeros >= 2 or state.suspect or state.status == NOT_DRAWING:
            how = "after a drop of its power" if state.suspect else f"{zeros} changes without a response"
            return _set(cleared, NOT_DRAWING, t, f"heater does not draw ({how}): tank full")
        return replace(cleared, zero_responses=zeros), None
    if ratio > 1.6:
        return replace(cleared, rejected=state.rejected + 1), None  # more than the element can give: the house
    seen = min(ratio, 1.3)
    new_ratio = state.ratio + s.ratio_weight * (seen - state.ratio) if state.observations else seen
    cleared = replace(cleared, ratio=new_ratio, observations=state.observations + 1)
    status = LOW if new_ratio < s.low_ratio else DRAWING
    why = "consumption follows the command" if status == DRAWING else f"draws {new_ratio:.0%} of the expected power"
    if state.status == NOT_DRAWING:
        why = "consumption follows the command again: thermostat closed"
    return _set(cleared, status, t, why)

"""What the heater really draws, measured from the GX: drawing, not drawing (tank full) or drawing less.

The GX's AC consumption is house + heater. Over windows of
``window_samples`` samples in which the expected heater power (the calibration
at the command in force) moved by a worthwhile step (relay close, knob move),
consumption is fitted as house + slope x expected, the expected power taken
0..``lag_samples`` earlier (servo slew, the GX's publish): the cleanest fit
tells the lag, and each such fit votes for its lag. A window whose residuals
spread more than the house tolerance is dropped (the house moved at the same
moment); the next change repeats it -- unless the expected power went one way
only (a relay close, a cut to zero, a climb) and consumption rises with it at
one lag with flat plateaus: through a dead zone and an S-curve the response
is bent, not straight, and those windows are the only ones that show the
curve's bottom. A flat response (slope ~0) over a big
span -- at the lag with the most votes, and at no lag a response -- says "not
drawing" after two such windows, or after one right after a *spontaneous* drop
of about the heater's power with the command steady, only rising, or moving by
far less than the drop (the thermostat opening looks like that; so does a
kettle ending, which the next window -- the loop lowers the knob to the sense
power -- tells apart, a response within the house's wobble telling nothing
and less than half the curve's move the verdict; and when the loop hands the
ended load's power to the heater at once, consumption rising with the knob
clears the suspicion at once). While not drawing, a
window that follows the command says the thermostat closed; so does a
spontaneous rise (over up to three samples) once it is checked: a house load
starting looks the same, and at the sense power the curve's bottom -- the
least known part of it, a straight-line default's dead zone -- may give far
less than it says. So a rise of at least the house's wobble (candidate_frac of
the curve at the command held) starts a check: the loop cuts the knob to
nothing (:func:`close_check_pending`), and a drop of check_frac of the rise
within the lag says it was the element -- a house load does not fall with the
knob. The drop, from the curve at the sense power's command to nothing, is
learned as an anchor of the curve's bottom.

The online correction of the curve (mains voltage, linkage wear, a
straight-line default against a regulator's dead zone and S-curve): each clean
window adds to a least squares of the slopes per band of expected power
(consumption minus its window mean = sum of slope x the band's share of the
expected power, centred), older windows fading, each band pulled weakly
towards its neighbours' trend (the data, not the straight line, shape the
parts the knob rarely visits), none negative, the whole pulled softly to the
rated power at full; windows from nothing count anchor_weight times. The windows tell the curve's shape, not
its level: for level_window_s after a change from nothing (the relay's close), consumption less the house seen
just before it is the heater's power wherever the command holds -- a level observation,
counted level_weight times, until the house visibly steps (then the house before the close says nothing any
more). Its integral is the measured heater power, and its inverse the command for a wanted power. A measured
calibration pulls each band MEASURED_PRIOR_X times as hard as the straight-line default does.
Pure: the caller passes every sample and its time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

DRAWING, NOT_DRAWING, LOW, UNKNOWN = "drawing", "not drawing", "drawing less than expected", "unknown"


@dataclass(frozen=True)
class ResponseSettings:
    """Thresholds of the heater-response observer."""

    #: The heater's power at full (the correction's bands span 0..max_power_w).
    max_power_w: float = 2000.0
    bands: int = 8
    #: Smallest expected change that counts as an observation, W.
    min_step_w: float = 80.0
    #: Most samples between a change and its effect in consumption (servo slew, GX publish; the fit finds the
    #: lag 0..lag_samples); samples per fit.
    lag_samples: int = 2
    window_samples: int = 6
    #: Consumption spread on a plateau that counts as the house moving, W.
    house_tolerance_w: float = 60.0
    #: A fitted slope below this is no response -- judged only over a span of verdict_span_frac of the
    #: heater's power reaching verdict_high_frac of it (a straight-line curve is flat at both ends of the knob).
    none_ratio: float = 0.15
    verdict_span_frac: float = 0.2
    verdict_high_frac: float = 0.4
    #: After a drop of about the heater's power (suspect), a flat window over which the corrected curve moves by
    #: at least this much is the verdict "not drawing", whatever its span in the straight line's watts, W.
    suspect_span_w: float = 150.0
    #: The full curve's gain below low_ratio: drawing less than expected.
    low_ratio: float = 0.8
    #: The bands' least squares: what each window's weight is kept per new window, and the pull of each band's
    #: slope towards 1 (the calibration), in W^2 of basis (a band crossed by one step of its width outweighs it).
    forget: float = 0.995
    prior_w2: float = 2.0e3
    #: The pull of the sum of the slopes towards the number of bands (full knob = max_power_w), per band pair, in
    #: W^2 of basis over the band width squared: it sets the bands the windows rarely cross (the relay's step from
    #: 0 spans several at once; mains voltage moves the whole curve, which the windows then outweigh).
    full_weight: float = 1.0
    #: The pull of neighbouring bands' slopes towards each other, W^2 of basis.
    smooth_w2: float = 5.0e2
    #: The pull of each band's slope towards the mean of its neighbours' (the curve's bend), W^2 of basis.
    curvature_w2: float = 2.0e3
    #: While not drawing, a rise of consumption of at least this fraction of the curve at the command held (and
    #: of house_tolerance_w) is checked as the thermostat's close (the curve's bottom is the least known part of
    #: it, and the sense power sits there: a straight-line default may read 200 W where the element gives 70 W).
    candidate_frac: float = 0.25
    #: The check: with the knob cut to nothing consumption falls by at least this fraction of the rise (and of
    #: half house_tolerance_w) within the lag (the one with the most votes) and a sample: the element; else a
    #: house load started.
    check_frac: float = 0.6
    #: After a check that found a house load, no new check for this long (sample time), s.
    check_block_s: float = 10.0
    #: How many windows a thermostat's close counts for in the least squares (from nothing to the curve at the
    #: command held: the bottom of the curve, where the sense power sits).
    anchor_weight: float = 4.0
    #: A spontaneous step counts when it is at least this fraction of the expected power.
    spontaneous_frac: float = 0.6
    #: Accept bent windows (monotone, not straight) as clean: only while the curve is the straight-line default,
    #: whose dead zone and S-curve they show; a measured curve already bends the expected power, so a window
    #: that is not straight in it is the house moving.
    bent_windows: bool = True
    #: For this long after the relay closes (or the knob leaves nothing), consumption less the house seen just
    #: before (nothing expected, steady) is the heater's power: a level observation wherever the command holds
    #: within level_hold_frac for the lag and two samples, counted level_weight times (the windows' differences
    #: tell the curve's shape; these tell its level -- a flat top of the knob is not a weaker element), s.
    level_window_s: float = 45.0
    level_hold_frac: float = 0.03
    level_weight: float = 3.0
    #: A level further than this fraction from the curve the windows learned is the house having moved, W/W --
    #: once level_doubt_after observations have shaped the curve (the first windows, a fast climb, can be far off).
    level_doubt_frac: float = 0.5
    level_doubt_after: int = 10
    #: The last level observation corrects the measured power near its command (the curve's shape from the
    #: windows, its level there from the level): fully at it, fading to nothing level_near_frac of the heater's
    #: power away and level_memory_s after it (sample time).
    level_near_frac: float = 0.15
    level_memory_s: float = 600.0
    #: Votes (decaying) for one lag from which windows are fitted only at it and its neighbours.
    lag_settled_votes: float = 3.0


#: A measured calibration's pull on each band's slope, as a multiple of the straight line's (prior_w2): the
#: table is within a few % of the element, the windows and levels read through a house that moves; a band
#: crossed by one step of its width counts 1/MEASURED_PRIOR_X of a straight-line one against it (on the family's
#: short runs a level read beside a pulsing hob took a measured 1 kW element's energy 5 % low at 1x).
MEASURED_PRIOR_X = 100.0


def settings_for(max_power_w: float, measured_curve: bool) -> ResponseSettings:
    """The observer's settings for a heater of max_power_w whose calibration is measured or the straight line."""
    if measured_curve:
        return ResponseSettings(max_power_w=max_power_w, bent_windows=False,
                                prior_w2=MEASURED_PRIOR_X * ResponseSettings.prior_w2)
    return ResponseSettings(max_power_w=max_power_w, bent_windows=True)


@dataclass(frozen=True)
class ResponseState:
    """The observer's memory: recent samples (time, consumption, expected), the last plateau, the verdict."""

    samples: tuple[tuple[float, float, float], ...] = ()
    status: str = UNKNOWN
    status_s: float | None = None
    #: Measured watts per expected watt (the curve's slope) per band of expected power (None: not observed).
    ratios: tuple[float | None, ...] = ()
    #: The bands' least squares so far: normal matrix (bands x bands, row-major) and moment vector.
    normal: tuple[float, ...] = ()
    moment: tuple[float, ...] = ()
    observations: int = 0
    zero_responses: int = 0
    suspect: bool = False
    #: Sample time of the drop that made it suspect.
    suspect_s: float | None = None
    rejected: int = 0
    #: No new observation before this time (windows do not overlap).
    next_s: float | None = None
    #: Per lag 0..lag_samples: decaying votes of the clean responses that fitted best at that lag.
    lag_votes: tuple[float, ...] = ()
    #: Flat windows in a row high on the curve, the knob climbing slowly: (lowest expected, consumption), W.
    flat_run: tuple[float, float] | None = None
    #: A rise while not drawing, being checked as the thermostat's close (the loop cuts the knob meanwhile):
    #: (sample time of the rise, rise W, expected power held W, consumption with it held W, samples with the cut).
    close_check: tuple[float, float, float, float, int] | None = None
    #: No new close check before this sample time.
    check_block_s: float | None = None
    #: The last change from nothing expected: (sample time, the house's consumption just before it, W).
    close_base: tuple[float, float] | None = None
    #: No new level observation before this sample time (they do not share samples).
    next_level_s: float | None = None
    #: The last level observation: (sample time, expected W, the heater's power W).
    last_level: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class ResponseEvent:
    """A change of the heater state: the new status, when, and why."""

    status: str
    time_s: float
    reason: str


_KEEP = 12
#: The steepest a band's slope may be, measured W per expected W (more is the house).
_MAX_RATIO = 2.5


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


def command_for(state: ResponseState, true_w: float, s: ResponseSettings, most_w: float) -> float:
    """The lowest expected power (command) at which the corrected curve gives true_w, at most most_w.

    The curve is straight within each band, so the band where it reaches true_w is solved directly (the loop
    asks this every tick)."""
    if true_w <= 0.0:
        return 0.0
    if _integral(state, most_w, s) <= true_w:
        return most_w
    width = s.max_power_w / s.bands
    total = 0.0
    for i in range(s.bands):
        slope = _slope(state, i)
        if slope > 0.0 and total + slope * width >= true_w:
            return min(i * width + (true_w - total) / slope, most_w)
        total += slope * width
    slope = _slope(state, s.bands - 1)  # beyond the bands the last one's slope goes on (as in _integral)
    return min(s.max_power_w + (true_w - total) / slope, most_w) if slope > 0.0 else most_w


def measured_heater_w(state: ResponseState, expected_w: float, s: ResponseSettings) -> float:
    """The heater's power by the observer: 0 while not drawing, else the corrected curve at the expected power,
    shifted towards the last level observation near its command (see ResponseSettings.level_near_frac)."""
    if state.status == NOT_DRAWING or expected_w <= 0.0:
        return 0.0
    curve_w = _integral(state, expected_w, s)
    level = state.last_level
    if level is None or not state.samples:
        return curve_w
    level_s, level_expected_w, level_w = level
    near = 1.0 - abs(expected_w - level_expected_w) / (s.level_near_frac * s.max_power_w)
    recent = 1.0 - (state.samples[-1][0] - level_s) / s.level_memory_s
    if near <= 0.0 or recent <= 0.0:
        return curve_w
    return max(0.0, curve_w + near * recent * (level_w - _integral(state, level_expected_w, s)))


def close_check_pending(state: ResponseState) -> bool:
    """True while a rise is being checked as the thermostat's close: the loop cuts the knob to nothing (relay kept
    closed) until it is decided -- a fall with the knob says the element, none a house load."""
    return state.close_check is not None


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
    state = _track_base(replace(state, samples=samples), s)
    if state.close_check is not None:
        return _check_close(state, s)
    spont = _spontaneous(state, s)
    if spont is not None:
        return spont
    state, event = _regress(state, s)
    state, level_event = _level(state, s)
    return state, level_event or event  # the later one is the state's


def _track_base(state: ResponseState, s: ResponseSettings) -> ResponseState:
    """At a change from nothing expected (the relay closing, the knob leaving zero), keep the house's consumption
    from the samples before it -- those past the lag, steady within half the house tolerance; forget it when the
    house steps."""
    samples = state.samples
    if state.close_base is not None and _house_stepped(samples, s):
        return replace(state, close_base=None)  # the house moved since: consumption less it says nothing now
    if len(samples) < 2 or samples[-2][2] > 0.0 or samples[-1][2] <= 0.0:
        return state
    zeros: list[float] = []
    for _, c, e in reversed(samples[:-1]):
        if e > 0.0:
            break
        zeros.append(c)
    # the latest three; not the first samples after a cut (they may still hold the heater)
    settled = zeros[: min(3, len(zeros) - s.lag_samples)]
    if len(settled) < 2 or max(settled) - min(settled) > s.house_tolerance_w / 2:
        return state  # a short cut: the house seen before it (if it has not moved since) still holds
    return replace(state, close_base=(samples[-1][0], sum(settled) / len(settled)), next_level_s=None)


def _house_stepped(samples: tuple[tuple[float, float, float], ...], s: ResponseSettings) -> bool:
    """Consumption stepped by more than the house tolerance against the command's moves over the lag (the other
    way, or with the command held), or by more than those moves could make at the curve's steepest: the house."""
    n = s.lag_samples + 2
    if len(samples) < n:
        return False
    e = [x[2] for x in samples[-n:]]
    step_w = samples[-1][1] - samples[-2][1]
    moves = [b - a for a, b in pairwise(e)]
    if step_w < -s.house_tolerance_w and all(d >= 0.0 for d in moves):
        return True  # consumption fell while the command held or rose: a load ended
    if step_w > s.house_tolerance_w and all(d <= 0.0 for d in moves):
        return True  # rose while the command held or fell: a load started
    return abs(step_w) > s.house_tolerance_w + _MAX_RATIO * (max(e) - min(e))


def _level(state: ResponseState, s: ResponseSettings) -> tuple[ResponseState, ResponseEvent | None]:
    """Shortly after a change from nothing, with the command held: consumption less the house before it is the
    heater's power at the command -- learned as a level observation (when it is plausible: no less than a
    response, no more than the element's rating -- a straight-line default reads an S-curve's middle well below
    what it gives)."""
    base = state.close_base
    if base is None or state.status == NOT_DRAWING or state.suspect:
        return state, None
    samples = state.samples
    t = samples[-1][0]
    if t - base[0] > s.level_window_s:
        return replace(state, close_base=None), None
    n = s.lag_samples + 2
    if len(samples) < n or (state.next_level_s is not None and t < state.next_level_s):
        return state, None
    e = [x[2] for x in samples[-n:]]
    c = [x[1] for x in samples[-(n - s.lag_samples):]]  # after the lag, whatever it is: the command held
    e_w = sum(e) / n
    if e_w < s.min_step_w or max(e) - min(e) > 2 * s.level_hold_frac * e_w:
        return state, None
    if max(c) - min(c) > s.house_tolerance_w / 2:
        return state, None
    heater_w = sum(c) / len(c) - base[1]
    if not s.none_ratio * e_w <= heater_w <= 1.1 * s.max_power_w:  # the element's rating (+10 % mains) at most
        return replace(state, next_level_s=t + n), None
    curve_w = _integral(state, e_w, s)
    established = state.observations >= s.level_doubt_after
    if established and abs(heater_w - curve_w) > s.level_doubt_frac * curve_w + s.house_tolerance_w:
        # far from what the day's windows learned: the house moved with the knob (a kettle that ends as the
        # heater climbs back -- the loop's own feed-forward makes them coincide); the house before says nothing
        return replace(state, close_base=None), None
    state = replace(_learn_level(state, e_w, heater_w, s), next_level_s=t + n, last_level=(t, e_w, heater_w))
    if state.status not in (DRAWING, LOW):
        return state, None
    gain = _integral(state, s.max_power_w, s) / s.max_power_w
    status = LOW if gain < s.low_ratio else DRAWING
    if status == state.status:
        return state, None
    why = (f"consumption less the house before the close: {heater_w:.0f} W at {e_w:.0f} W expected"
           f" ({gain:.0%} at full)")
    return _set(state, status, t, why)


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
    # the lag varies with the GX's period and phase: every lag 0..lag_samples with a step inside the window is
    # fitted, and the cleanest fit that shows a response (least residual spread) tells the lag; each such fit
    # votes for its lag. "No response" is believed only at the lag with the most votes (a lag that puts the
    # step early can see consumption already flat after it: slope 0) and when no lag shows a response
    fits: dict[int, tuple[float, float, bool, list[float]]] = {}  # lag -> (residual spread, slope, clean, expected)
    voted = _voted_lag(state, s)
    for lag in _plausible_lags(state, voted, s):
        e_l = [x[2] for x in samples[len(samples) - w - lag: len(samples) - lag]]
        span = max(e_l) - min(e_l)
        mid = min(e_l) + span / 2
        high = sum(1 for x in e_l if x > mid)
        if span < s.min_step_w or not 2 <= high <= w - 2:
            continue  # no step, or one sample on one side of it: a slope from a single point says nothing
        spread, slope = _fit(e_l, c)
        fits[lag] = (spread, slope, spread <= s.house_tolerance_w + 0.1 * span * max(slope, 0.0), e_l)
    if not fits:
        return state, None
    if s.bent_windows and not any(f[2] for f in fits.values()):
        # a relay close, a cut to zero, a climb: through the regulator's dead zone and S-curve the response is
        # bent, not a straight line -- still clean when consumption rises with the expected power at one lag,
        # plateaus flat (a house that moved breaks the order or a plateau; so does a wrong lag, by less than
        # the right one). These windows show the curve's bottom.
        bent = {lag: _monotone_spread(f[3], c) for lag, f in fits.items()
                if _one_way(f[3]) and _steps_plausible(f[3], c, s)}
        if bent:
            lag = min(bent, key=lambda k: bent[k])
            if bent[lag] <= s.house_tolerance_w / 2:
                fits[lag] = (bent[lag], fits[lag][1], True, fits[lag][3])
    drawing = {lag: f for lag, f in fits.items() if f[2] and f[1] >= s.none_ratio}
    best: tuple[float, list[float]] | None = None
    if drawing:
        lag = min(drawing, key=lambda k: drawing[k][0])
        best = (drawing[lag][1], drawing[lag][3])
        votes = list(state.lag_votes) if state.lag_votes else [0.0] * (s.lag_samples + 1)
        votes = [0.9 * v + (1.0 if k == lag else 0.0) for k, v in enumerate(votes)]
        state = replace(state, lag_votes=tuple(votes))
    else:
        f = fits.get(voted)
        if f is not None and f[2]:
            best = (f[1], f[3])
        elif f is None:
            return state, None  # the step is not inside the window at the lag believed: a later window judges
    state = replace(state, next_s=t + w)  # the next observation uses new samples
    if best is None:
        return replace(state, rejected=state.rejected + 1), None  # the house moved: the next change repeats it
    slope, e = best
    return _judge(state, slope, t, (e, c), s)


def _plausible_lags(state: ResponseState, voted: int, s: ResponseSettings) -> range:
    """The lags a window is fitted at: every one until the votes agree, then the voted lag and its neighbours
    (the GX's period and phase move it by a sample; a fit two samples off pairs the command's step with a house
    load's -- the loop cuts the knob as a hob pulses on, and the hob's end lines up with that cut later)."""
    votes = state.lag_votes
    if not votes or votes[voted] < s.lag_settled_votes:
        return range(s.lag_samples + 1)
    return range(max(0, voted - 1), min(s.lag_samples, voted + 1) + 1)


def _steps_plausible(e: list[float], c: list[float], s: ResponseSettings) -> bool:
    """No single step of consumption in a bent window beyond what the expected power's whole span could make at
    the steepest the curve may be (the bands' cap) and the house's wobble: a bigger one is a house load."""
    most_w = _MAX_RATIO * (max(e) - min(e)) + s.house_tolerance_w
    return all(abs(b - a) <= most_w for a, b in pairwise(c))


def _voted_lag(state: ResponseState, s: ResponseSettings) -> int:
    """The lag (samples) with the most votes from clean responses; lag_samples before any."""
    if not state.lag_votes or max(state.lag_votes) <= 0.0:
        return s.lag_samples
    return max(range(len(state.lag_votes)), key=lambda k: state.lag_votes[k])


def _fit(e: list[float], c: list[float]) -> tuple[float, float]:
    """Least squares c = a + slope x e: (spread of the residuals, slope)."""
    n = len(e)
    mc, me = sum(c) / n, sum(e) / n
    var = sum((x - me) ** 2 for x in e)
    slope = sum((x - me) * (y - mc) for x, y in zip(e, c, strict=True)) / var
    resid = [y - mc - slope * (x - me) for x, y in zip(e, c, strict=True)]
    return max(resid) - min(resid), slope


def _one_way(e: list[float]) -> bool:
    """The expected power only rose or only fell over the window (a relay close, a cut, a climb, a ramp down)."""
    rises = [b - a for a, b in pairwise(e)]
    return all(d >= 0.0 for d in rises) or all(d <= 0.0 for d in rises)


def _monotone_spread(e: list[float], c: list[float]) -> float:
    """Spread of the residuals of the best non-decreasing fit of c over e (pool adjacent violators), W."""
    order = sorted(range(len(e)), key=lambda i: (e[i], c[i]))
    blocks: list[list[float]] = []  # [sum, count, highest expected]: one level per block
    for i in order:
        same = bool(blocks) and e[i] - blocks[-1][2] < 1.0  # one expected power, one level
        blocks.append([c[i], 1.0, e[i]])
        while len(blocks) > 1 and (same or blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]):
            top = blocks.pop()
            blocks[-1][0] += top[0]
            blocks[-1][1] += top[1]
            blocks[-1][2] = top[2]
            same = False
    fitted: list[float] = []
    for total, count, _ in blocks:
        fitted += [total / count] * int(count)
    resid = [c[i] - f for i, f in zip(order, fitted, strict=True)]
    return max(resid) - min(resid)


def _set(state: ResponseState, status: str, time_s: float, reason: str) -> tuple[ResponseState, ResponseEvent | None]:
    new = replace(state, status=status, status_s=time_s, suspect=False, zero_responses=0, flat_run=None)
    if status == state.status:
        return new, None
    return new, ResponseEvent(status, time_s, reason)


def _spontaneous(state: ResponseState, s: ResponseSettings) -> tuple[ResponseState, ResponseEvent | None] | None:
    """A consumption step of about the heater's power with the command steady for the lag: a thermostat event?"""
    samples = state.samples
    if len(samples) < s.lag_samples + 2:
        return None
    recent = samples[-(s.lag_samples + 2):]
    if state.suspect and state.status != NOT_DRAWING and _follows_a_rise(state, recent, s):
        # the loop raised the knob after the drop (a house load's end hands its power to the heater at once) and
        # consumption rose with it: an element that follows the knob is drawing, the drop was the house
        return replace(state, suspect=False, next_s=None), None
    e = recent[-1][2]
    step_w = recent[-1][1] - recent[-2][1]
    if max(x[2] for x in recent) - min(x[2] for x in recent) > 0.15 * e or e < s.min_step_w / 2:
        # the command moved by more than a trim: the step may be its own -- unless consumption fell while the
        # command only rose (a thermostat opening as the loop raises the knob: the loop raises *because* the
        # element stopped): judged against what the heater drew before the rise
        rose_only = all(b[2] >= a[2] for a, b in pairwise(recent))
        # or fell by far more than the command's own moves can make (the probe's trim back as the element stops)
        own_w = _integral(state, max(x[2] for x in recent), s) - _integral(state, min(x[2] for x in recent), s)
        beyond = -step_w >= 2.0 * own_w + s.house_tolerance_w
        if not ((rose_only or beyond) and step_w < 0.0 and state.status != NOT_DRAWING
                and recent[0][2] >= s.min_step_w / 2):
            return None
        e, trim_w = recent[0][2], 0.0
    else:
        # the command steady: a drop counts beyond what the trim at the voted lag makes in this very step -- at a
        # steep part of the curve (a dead zone's edge) a trim moves consumption by far more than its share of the
        # power
        lag = _voted_lag(state, s)
        trim_w = abs(_integral(state, recent[-1 - lag][2], s) - _integral(state, recent[-2 - lag][2], s))
    t = recent[-1][0]
    r = ratio_at(state, e, s)
    # at least the house's own wobble: a curve learned flat there (a dead zone) makes no step of nothing
    lo = max(s.spontaneous_frac * e * min(r, 1.0), s.house_tolerance_w)
    hi = 1.5 * e * max(r, 1.0) + s.house_tolerance_w
    if state.status == NOT_DRAWING:
        # a close's rise may split over two samples (the GX averages): the rise from the lowest of the last few
        base_w = min(x[1] for x in recent[:-1])
        rise_w = recent[-1][1] - base_w
        blocked = state.check_block_s is not None and t < state.check_block_s
        if not blocked and max(s.candidate_frac * e * min(r, 1.0), s.house_tolerance_w) <= rise_w <= hi:
            # the element, or a house load starting? The loop cuts the knob: the next samples tell
            return replace(state, close_check=(t, rise_w, e, recent[-1][1], 0)), None
        return None
    if lo + trim_w <= -step_w <= hi and (state.status != UNKNOWN or e >= 2.0 * s.min_step_w):
        # (before the element was seen drawing, not at the bottom of the knob: there the straight line is a guess
        # -- 72 W asked in a dead zone, where the element gives nothing, and a house falling 116 W is no
        # thermostat; the first windows tell a full tank)
        # judge from just after the drop: a kettle ending leaves the heater drawing, a thermostat does not
        return replace(state, suspect=True, suspect_s=t, zero_responses=0, next_s=t + s.window_samples - 1), None
    if state.suspect and state.suspect_s is not None and t - state.suspect_s > 25.0:
        return replace(state, suspect=False), None  # no plateau to judge by: give the drop up
    return None


def _follows_a_rise(
    state: ResponseState, recent: tuple[tuple[float, float, float], ...], s: ResponseSettings
) -> bool:
    """Consumption rose from its lowest recent sample by at least spontaneous_frac of what the corrected curve
    gives for the command's rise since then (and by more than the house's wobble): the element follows the knob.
    A thermostat that opened does not -- the loop raising the knob on the export it leaves moves nothing."""
    low = min(range(len(recent) - 1), key=lambda i: recent[i][1])
    after = recent[low + 1:]
    e_from, e_to = recent[low][2], max(x[2] for x in after)
    if e_to - e_from < s.min_step_w:
        return False
    curve_rise_w = _integral(state, e_to, s) - _integral(state, e_from, s)
    rise_w = max(x[1] for x in after) - recent[low][1]
    return rise_w >= max(s.spontaneous_frac * curve_rise_w, s.house_tolerance_w)


def _check_close(state: ResponseState, s: ResponseSettings) -> tuple[ResponseState, ResponseEvent | None]:
    """A rise while not drawing, checked: the knob cut to nothing (by the loop) drops consumption by about the rise
    within the lag -- the thermostat closed, and the drop is the curve at the command held (an anchor of the
    curve's bottom) -- or it does not: a house load started, the tank is still full."""
    assert state.close_check is not None
    since_s, rise_w, held_w, on_w, cut_n = state.close_check
    t, c, e = state.samples[-1]
    if e >= s.min_step_w / 2 and cut_n == 0:
        if t - since_s > s.lag_samples + 1:  # the knob was not cut (relay opened, loop stopped): no verdict
            return replace(state, close_check=None), None
        return replace(state, close_check=(since_s, rise_w, held_w, c, 0)), None  # not cut yet: the level held
    cut_n += 1
    drop_w = on_w - c
    if max(s.check_frac * rise_w, s.house_tolerance_w / 2) <= drop_w <= rise_w + s.house_tolerance_w:
        window = ([held_w, held_w, 0.0, 0.0], [on_w, on_w, c, c])
        learned = _learn(replace(state, close_check=None), window, s, s.anchor_weight)
        why = f"consumption rose {rise_w:.0f} W and fell {drop_w:.0f} W with the knob cut: thermostat closed"
        return _set(learned, DRAWING, t, why)
    if cut_n > _voted_lag(state, s) or e >= s.min_step_w / 2:
        # no fall with the knob within the lag (a house that falls later is not the knob): a house load started,
        # or the knob came back before the lag showed it
        return replace(state, close_check=None, check_block_s=t + s.check_block_s), None
    return replace(state, close_check=(since_s, rise_w, held_w, on_w, cut_n)), None


def _judge(
    state: ResponseState, slope: float, t: float, window: tuple[list[float], list[float]], s: ResponseSettings
) -> tuple[ResponseState, ResponseEvent | None]:
    """Judge a fitted slope (measured watts per expected watt) over a window of (expected, consumption)."""
    lo_w, hi_w = min(window[0]), max(window[0])
    big = hi_w - lo_w >= s.verdict_span_frac * s.max_power_w and hi_w >= s.verdict_high_frac * s.max_power_w
    if slope < s.none_ratio and state.suspect and not big:
        # a drop of about the heater's power waits for its verdict, and the knob's move (to the sense power) is
        # small in the straight line's watts -- the thermostat opened with the knob low (evening, a cloud) -- but
        # by the corrected curve the heater should have moved by well more than the house's wobble: it does not
        curve_w = _integral(state, hi_w, s) - _integral(state, lo_w, s)
        big = curve_w >= s.suspect_span_w and slope * (hi_w - lo_w) < s.none_ratio * curve_w
    if slope < s.none_ratio and state.status != NOT_DRAWING and not big:
        # a flat response low on the curve: the curve's bottom does that (a dead zone), learned unless a drop of
        # about the heater's power is waiting for its verdict. Flat over a small span higher up says nothing yet
        # (a tank just full, the knob climbing slowly): the next sample tries a window with a bigger span
        # -- together with the flat windows before it, as long as consumption stays where it was
        if hi_w < s.verdict_high_frac * s.max_power_w:
            if state.suspect or (not s.bent_windows and _integral(state, hi_w, s) - _integral(state, lo_w, s)
                                 >= s.suspect_span_w):
                # a measured curve has its dead zone in it already: flat where it rises by well more than the
                # house's wobble is the element off (a thermostat open), not a bottom to learn -- learned, it
                # would put the sense power's command far up the curve, and a close would draw that much
                return state, None
            return _learn(state, window, s, _weight(window, s)), None
        mean_c = sum(window[1]) / len(window[1])
        run = state.flat_run
        if run is None or abs(mean_c - run[1]) > s.house_tolerance_w:
            run = (lo_w, mean_c)
        run = (min(run[0], lo_w), run[1])
        if hi_w - run[0] < s.verdict_span_frac * s.max_power_w:
            return replace(state, next_s=None, flat_run=run), None
        state, big = replace(state, flat_run=None), True
    if slope < s.none_ratio:
        zeros = state.zero_responses + 1
        if zeros >= 2 or state.suspect or state.status == NOT_DRAWING:
            how = "after a drop of its power" if state.suspect else f"{zeros} changes without a response"
            return _set(state, NOT_DRAWING, t, f"heater does not draw ({how}): tank full")
        return replace(state, zero_responses=zeros), None
    if slope > _MAX_RATIO:
        return replace(state, rejected=state.rejected + 1), None  # more than the element can give: the house
    if state.suspect and slope * (hi_w - lo_w) < s.house_tolerance_w:
        # a drop of about the heater's power waits for its verdict, and consumption moved within the house's
        # wobble (the knob's small move to the sense power, the house 30 W lower at the same moment): less than
        # half what the corrected curve moves there is no response -- the verdict; more proves nothing either way
        if slope * (hi_w - lo_w) < 0.5 * (_integral(state, hi_w, s) - _integral(state, lo_w, s)):
            return _set(state, NOT_DRAWING, t, "heater does not draw (after a drop of its power): tank full")
        return replace(state, rejected=state.rejected + 1), None
    if state.status == NOT_DRAWING and slope * (hi_w - lo_w) < s.house_tolerance_w:
        # the element off, and consumption moved with the knob by less than the house's wobble: a house that
        # wobbled as the knob moved (say as the knob climbed back after a load ended) is no thermostat closing
        return replace(state, rejected=state.rejected + 1), None
    state = replace(_learn(state, window, s, _weight(window, s)), zero_responses=0, flat_run=None)
    gain = _integral(state, s.max_power_w, s) / s.max_power_w
    status = LOW if gain < s.low_ratio else DRAWING
    why = "consumption follows the command" if status == DRAWING else f"draws {gain:.0%} of the expected power"
    if state.status == NOT_DRAWING:
        why = "consumption follows the command again: thermostat closed"
    return _set(state, status, t, why)


def _weight(window: tuple[list[float], list[float]], s: ResponseSettings) -> float:
    """A window from nothing (relay close, a cut to zero) anchors the curve's level: anchor_weight; else 1."""
    return s.anchor_weight if min(window[0]) <= 0.0 else 1.0


def _basis(expected_w: float, s: ResponseSettings) -> list[float]:
    """How much of each band's width an expected power covers, W (the curve is sum of slope x basis)."""
    width = s.max_power_w / s.bands
    out = [min(max(expected_w - i * width, 0.0), width) for i in range(s.bands)]
    out[-1] += max(0.0, expected_w - s.max_power_w)
    return out


def _learn(
    state: ResponseState, window: tuple[list[float], list[float]], s: ResponseSettings, weight: float = 1.0
) -> ResponseState:
    """Add a clean window to the bands' least squares (consumption - its mean = sum of slope x centred basis,
    the house constant within the window, the window counted `weight` times), older windows fading; solve for
    the slopes, pulled towards 1."""
    e, c = window
    n, k = len(e), s.bands
    rows = [_basis(x, s) for x in e]
    mean_row = [sum(r[j] for r in rows) / n for j in range(k)]
    mean_c = sum(c) / n
    centred = [([r[j] - mean_row[j] for j in range(k)], y - mean_c) for r, y in zip(rows, c, strict=True)]
    return _add_rows(state, centred, s, weight)


def _learn_level(state: ResponseState, expected_w: float, heater_w: float, s: ResponseSettings) -> ResponseState:
    """Add a level observation -- the heater gave heater_w at expected_w (consumption less the house seen before
    the relay closed) -- as one row of the least squares, counted level_weight times."""
    return _add_rows(state, [(_basis(expected_w, s), heater_w)], s, s.level_weight)


def _add_rows(
    state: ResponseState, rows: list[tuple[list[float], float]], s: ResponseSettings, weight: float
) -> ResponseState:
    """Fade the least squares, add rows (basis, watts) counted `weight` times, and solve for the slopes."""
    k = s.bands
    keep = s.forget
    normal = list(state.normal) if state.normal else [0.0] * (k * k)
    moment = list(state.moment) if state.moment else [0.0] * k
    normal = [keep * v for v in normal]
    moment = [keep * v for v in moment]
    for x, dy in rows:
        for i in range(k):
            if x[i] == 0.0:
                continue
            moment[i] += weight * x[i] * dy
            for j in range(k):
                normal[i * k + j] += weight * x[i] * x[j]
    prior = s.prior_w2
    full = s.full_weight * (s.max_power_w / k) ** 2  # the curve adds up to the rated power: a soft constraint
    a = [[normal[i * k + j] + (prior if i == j else 0.0) + full for j in range(k)] for i in range(k)]
    b = [moment[i] + prior + full * k for i in range(k)]
    for i in range(k - 1):  # neighbouring bands alike: a step spanning several tells only their sum
        a[i][i] += s.smooth_w2
        a[i + 1][i + 1] += s.smooth_w2
        a[i][i + 1] -= s.smooth_w2
        a[i + 1][i] -= s.smooth_w2
    for i in range(k - 2):  # a bend spread over neighbours: the slope's trend carries on where windows are rare
        for p, dp in ((i, 1.0), (i + 1, -2.0), (i + 2, 1.0)):
            for q, dq in ((i, 1.0), (i + 1, -2.0), (i + 2, 1.0)):
                a[p][q] += s.curvature_w2 * dp * dq
    slopes = _solve_non_negative(a, b)
    return replace(state, normal=tuple(normal), moment=tuple(moment), ratios=tuple(slopes),
                   observations=state.observations + 1)


def _solve_non_negative(a: list[list[float]], b: list[float]) -> list[float]:
    """The least squares' slopes, none below 0 (a band that comes out negative is held at 0 and the rest solved
    again) nor above _MAX_RATIO."""
    n = len(b)
    free = list(range(n))
    x = [0.0] * n
    for _ in range(n):
        sub = _solve([[a[i][j] for j in free] for i in free], [b[i] for i in free])
        x = [0.0] * n
        for i, v in zip(free, sub, strict=True):
            x[i] = v
        negative = [i for i in free if x[i] < 0.0]
        if not negative:
            break
        free = [i for i in free if i not in negative]
        if not free:
            break
    return [min(max(v, 0.0), _MAX_RATIO) for v in x]


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (a is positive definite: the prior is on its diagonal)."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[piv] = m[piv], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            if f != 0.0:
                for j in range(col, n + 1):
                    m[r][j] -= f * m[col][j]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][j] * x[j] for j in range(r + 1, n))) / m[r][r]
    return x

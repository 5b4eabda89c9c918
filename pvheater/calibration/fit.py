"""The servo calibration's fit: a steadily rising angle -> watts table, the dead-zone edge and full power.

**Fit.** The measured powers are made to rise steadily along the knob (an
isotonic least-squares fit, by pooling adjacent violators); a drop larger than the house
tolerance means the house load or the heater's thermostat changed, and the
run is discarded. The SCR regulator's phase-angle control starts and ends
very flat (power ~ cube of the conduction angle), so "the last angle with
~0 W" would put the dead-zone edge 10-15 degrees late. Instead the conduction
fraction x is recovered from each power with the ideal phase-angle curve of a
resistive load, P/Pmax = x - sin(2 pi x) / (2 pi), and x is fitted as a
straight line in the angle over the low (2-35 % of full) and the high
(65-98 %) part of the curve; where the lines reach x = 0 and x = 1 are the
dead-zone edge and the full-power angle. Only those edges use the model; the
table itself is the measurement. Without enough points for a line it falls
back to the last angle with ~0 W and the first with ~full power.

With `curve="linear"` (ssr_burst: the power is the fraction of cycles fired,
straight from 0 to full) the lines are fitted to the power fraction itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pvheater.calibration.curve import Calibration
from pvheater.calibration.sweep import SOURCE_TEXT, CalibrationDiscarded, Sweep
from pvheater.control.scr import conduction_for_power_fraction

#: Where the straight-line fits of the conduction fraction take their points, as fractions of full power.
ONSET_FIT_RANGE = (0.02, 0.35)
TOP_FIT_RANGE = (0.65, 0.98)
#: Below this fraction of full power (or the noise) a point counts as ~0 W, above 1 - it as ~full.
NEAR_FRACTION = 0.01
#: The heater must show at least this much, or this many times the settle tolerance, to be calibrated.
MIN_FULL_POWER_W = 100.0
#: Table angles and powers are rounded to these.
ANGLE_DECIMALS = 2
#: Inputs of 0..1 (a duty, a fraction of cycles) are rounded finer.
FRACTION_DECIMALS = 4
POWER_DECIMALS = 1


def isotonic_fit(values: Sequence[float]) -> list[float]:
    """The least-squares non-decreasing fit of a sequence (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [sum, count] of each pooled block
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    fitted: list[float] = []
    for total, count in blocks:
        fitted.extend([total / count] * int(count))
    return fitted


def largest_drop(values: Sequence[float]) -> tuple[float, int, int]:
    """The largest fall of a later value below an earlier one: (watts, index of the high, index of the low)."""
    best, hi_i, lo_i = 0.0, 0, 0
    peak_i = 0
    for i, v in enumerate(values):
        if v > values[peak_i]:
            peak_i = i
        if values[peak_i] - v > best:
            best, hi_i, lo_i = values[peak_i] - v, peak_i, i
    return best, hi_i, lo_i


def _line_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares y = a + b x; None without two distinct xs."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


@dataclass(frozen=True)
class Fit:
    """The fitted calibration and what was found on the way."""

    calibration: Calibration
    dead_zone_deg: float
    full_power_deg: float | None  # None when the sweep stopped at the power cap
    max_power_w: float
    adjusted_points: int
    largest_adjustment_w: float
    dead_zone_method: str
    full_power_method: str

    @property
    def fit_note(self) -> str:
        """One line saying how the table was made to rise steadily."""
        if not self.adjusted_points:
            return "made the table rise steadily: no measured point needed adjusting"
        return (
            f"made the table rise steadily: {self.adjusted_points} point(s) adjusted, "
            f"the largest by {self.largest_adjustment_w:.0f} W"
        )


def _to_line(curve: str) -> Callable[[float], float]:
    """What the edge lines are fitted to, from a power fraction: the conduction fraction, or the fraction itself."""
    if curve == "linear":
        return lambda frac: frac
    return conduction_for_power_fraction


def fit_sweep(
    sweep: Sweep, noise_w: float, drop_tolerance_w: float, curve: str = "phase_angle", decimals: int = ANGLE_DECIMALS
) -> Fit:
    """A steadily rising Calibration from a sweep, with its dead-zone edge and full-power angle (see the module doc).

    CalibrationDiscarded when the power falls by more than drop_tolerance_w
    while the knob turns up, or the heater never took a clear power.
    """
    angles = [p.angle_deg for p in sweep.points]
    raw = [p.power_w for p in sweep.points]
    sign = 1.0 if angles[-1] > angles[0] else -1.0
    pos = [sign * a for a in angles]  # rises along the knob in both mountings
    _refuse_a_drop(angles, raw, drop_tolerance_w)
    fitted = [max(q, 0.0) for q in isotonic_fit(raw)]
    adjustments = [abs(f - r) for f, r in zip(fitted, raw, strict=True)]
    top_w = fitted[-1]
    if top_w < max(MIN_FULL_POWER_W, 5.0 * noise_w):
        raise CalibrationDiscarded(
            f"the heater took no clear power at any angle (at most {top_w:.0f} W): is the regulator fed through "
            "the relay, and the water not already hot (heater thermostat open)?"
        )
    near_w = max(NEAR_FRACTION * top_w, noise_w)
    to_line = _to_line(curve)
    dz_pos, dz_method = _dead_zone_edge(pos, fitted, near_w, to_line)
    full_pos: float | None = None
    full_method = "none: the sweep stopped at calibration.max_test_power_w"
    if not sweep.stopped_at_cap:
        full_pos, full_method = _full_power_angle(pos, fitted, near_w, dz_pos, to_line)
    return Fit(
        calibration=Calibration(_table(pos, fitted, sign, dz_pos, full_pos, decimals)),
        dead_zone_deg=round(sign * dz_pos, decimals) + 0.0,
        full_power_deg=None if full_pos is None else round(sign * full_pos, decimals) + 0.0,
        max_power_w=round(top_w, POWER_DECIMALS),
        adjusted_points=sum(1 for a in adjustments if a > 1e-9),
        largest_adjustment_w=max(adjustments),
        dead_zone_method=dz_method,
        full_power_method=full_method,
    )


def _refuse_a_drop(angles: Sequence[float], raw: Sequence[float], drop_tolerance_w: float) -> None:
    """CalibrationDiscarded when the measured power fell by more than drop_tolerance_w while the knob turned up."""
    drop_w, hi_i, lo_i = largest_drop(raw)
    if drop_w > drop_tolerance_w:
        raise CalibrationDiscarded(
            f"the measured power fell by {drop_w:.0f} W while the knob turned up ({raw[hi_i]:.0f} W at "
            f"{angles[hi_i]:g} deg, {raw[lo_i]:.0f} W at {angles[lo_i]:g} deg; more than "
            f"calibration.house_tolerance_w {drop_tolerance_w:g} W): the house load changed or the heater's "
            "thermostat switched; run it again while the house load is steady"
        )


def _dead_zone_edge(
    pos: Sequence[float], fitted: Sequence[float], near_w: float, to_line: Callable[[float], float]
) -> tuple[float, str]:
    """Where the low part's conduction line reaches x = 0 (else the last ~0 W point), and how it was found."""
    top_w = fitted[-1]
    fracs = [q / top_w for q in fitted]
    onset = [i for i, f in enumerate(fracs) if ONSET_FIT_RANGE[0] <= f <= ONSET_FIT_RANGE[1]]
    line = _line_fit([pos[i] for i in onset], [to_line(fracs[i]) for i in onset])
    first_on = next((i for i, f in enumerate(fracs) if f >= ONSET_FIT_RANGE[0]), len(pos) - 1)
    if line is not None and line[1] > 0:
        dz_pos = min(max(-line[0] / line[1], pos[0]), pos[first_on])
        return dz_pos, _line_method(len(onset), ONSET_FIT_RANGE, to_line)
    zero_is = [i for i, q in enumerate(fitted) if q <= near_w]
    return (pos[zero_is[-1]] if zero_is else pos[0]), f"last angle with at most {near_w:.0f} W"


def _full_power_angle(
    pos: Sequence[float], fitted: Sequence[float], near_w: float, dz_pos: float, to_line: Callable[[float], float]
) -> tuple[float, str]:
    """Where the high part's conduction line reaches x = 1 (else the first ~full point), and how it was found."""
    top_w = fitted[-1]
    fracs = [q / top_w for q in fitted]
    top = [i for i, f in enumerate(fracs) if TOP_FIT_RANGE[0] <= f <= TOP_FIT_RANGE[1]]
    line = _line_fit([pos[i] for i in top], [to_line(fracs[i]) for i in top])
    if line is not None and line[1] > 0:
        full_pos = min(max((1.0 - line[0]) / line[1], pos[top[-1]], dz_pos), pos[-1])
        return full_pos, _line_method(len(top), TOP_FIT_RANGE, to_line)
    first_full = next(pos[i] for i, q in enumerate(fitted) if q >= top_w - near_w)
    return first_full, f"first angle within {near_w:.0f} W of full"


def _line_method(points: int, fit_range: tuple[float, float], to_line: Callable[[float], float]) -> str:
    """How an edge was found by a conduction (or power) line, for the calibration file."""
    kind = "phase-angle" if to_line is conduction_for_power_fraction else "straight power"
    return f"{kind} line through {points} points at {fit_range[0]:.0%}-{fit_range[1]:.0%}"


def _table(
    pos: Sequence[float], fitted: Sequence[float], sign: float, dz_pos: float, full_pos: float | None,
    decimals: int = ANGLE_DECIMALS,
) -> tuple[tuple[float, float], ...]:
    """The angle -> watts table: 0 W up to the dead-zone edge, full from the full-power angle, rounded and merged."""
    top_w = fitted[-1]
    table: list[tuple[float, float]] = [(dz_pos, 0.0)]
    if full_pos is not None:
        table.append((full_pos, top_w))
    for p, q in zip(pos, fitted, strict=True):
        if p <= dz_pos:
            q = 0.0
        elif full_pos is not None and p >= full_pos:
            q = top_w
        table.append((p, q))
    table.sort(key=lambda item: item[0])
    merged: list[tuple[float, float]] = []
    for p, q in table:
        a = round(sign * p, decimals) + 0.0
        w = round(q, POWER_DECIMALS) + 0.0
        if merged and abs(a - merged[-1][0]) < 10 ** -decimals / 2:
            merged[-1] = (merged[-1][0], max(merged[-1][1], w))
        else:
            merged.append((a, w))
    return tuple(merged)


def calibration_metadata(sweep: Sweep, fit: Fit, date: str) -> dict[str, Any]:
    """What the calibration file records beside the table: when, how, and the GX readings used."""
    meta: dict[str, Any] = {
        "date": date,
        "method": "automatic sweep, GX" if sweep.method == "sweep" else "manual, watts read by a person",
        "dead_zone_deg": fit.dead_zone_deg,
    }
    if fit.full_power_deg is not None:
        meta["full_power_deg"] = fit.full_power_deg
    meta["max_power_w"] = fit.max_power_w
    meta["dead_zone_found_by"] = fit.dead_zone_method
    meta["full_power_found_by"] = fit.full_power_method
    meta["monotonic_fit"] = fit.fit_note
    if sweep.stopped_at_cap:
        meta["stopped_at"] = "calibration.max_test_power_w"
    if sweep.method == "sweep":
        meta["gx_readings"] = {
            "source": SOURCE_TEXT[sweep.source] if sweep.source else None,
            "battery_soc_pct": sweep.soc_pct,
            "baseline_before_w": round(sweep.baseline_start_w or 0.0, 1),
            "baseline_after_w": round(sweep.baseline_end_w or 0.0, 1),
            "columns": ["angle_deg", "load_w", "heater_w", "settle_s"],
            "readings": [
                [p.angle_deg, round(p.load_w or 0.0, 1), round(p.power_w, 1), round(p.settle_s or 0.0, 1)]
                for p in sweep.points
            ],
        }
    else:
        meta["readings"] = [[p.angle_deg, p.power_w] for p in sweep.points]
    return meta

"""The actuator's calibration curve: heater watts <-> the actuator's input, by linear interpolation.

The input is the servo angle for `heater.actuator: servo` (the names below
say angle), the duty 0..1 for pwm_0_10v and the fraction of mains cycles
fired 0..1 for ssr_burst; the table and its rules are the same for all.

A calibration is a table of (angle_deg, power_w) points ordered from the knob's
zero end to its full end. Angles are strictly monotonic along the table; they
fall instead of rise when the knob is mounted reversed (knob_zero_deg >
knob_full_deg). Power never falls along the knob direction; flat stretches
(the SCR regulator's dead zone near zero, saturation near full) are allowed.

Power 0 always maps to the zero end's angle exactly, powers beyond the table
clip to its ends. Without a calibration file the curve is a straight line from
servo.knob_zero_deg (0 W) to servo.knob_full_deg (heater.max_power_w); for
pwm_0_10v from pwm.min_duty to pwm.max_duty, for ssr_burst from 0 to 1.

File format (written by `pvheater calibrate`, `calibrate-servo` for the servo)::

    date: 2024-06-01            # optional metadata, kept as it is
    dead_zone_deg: 12.0         # optional number
    full_power_deg: 150.0       # optional number
    gx_readings: [...]          # optional, anything
    points:                     # required: [angle_deg, power_w], at least 2
      - [0, 0]
      - [12, 0]
      - [90, 1100]
      - [150, 2000]
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from pvheater.config import Config, read_yaml_file
from pvheater.errors import ConfigError

#: Metadata keys that must be numbers when present.
_NUMERIC_METADATA = ("dead_zone_deg", "full_power_deg")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _oriented_points(raw: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Check a table and return it ordered from the knob's zero end; raise ConfigError."""
    if len(raw) < 2:
        raise ConfigError(f"points: need at least 2 [angle_deg, power_w] points, got {len(raw)}")
    points = tuple((float(a), float(p)) for a, p in raw)
    for i, (angle, power) in enumerate(points):
        if not (math.isfinite(angle) and math.isfinite(power)):
            raise ConfigError(f"points[{i}]: angle and power must be finite numbers, got [{angle}, {power}]")
        if power < 0:
            raise ConfigError(f"points[{i}]: power_w must not be negative, got {power}")
    rising = points[1][0] > points[0][0]
    for i in range(1, len(points)):
        step_deg = points[i][0] - points[i - 1][0]
        if step_deg == 0 or (step_deg > 0) != rising:
            raise ConfigError(
                f"points[{i}]: angles must be strictly {'increasing' if rising else 'decreasing'} "
                f"along the table (got {points[i - 1][0]} then {points[i][0]})"
            )
    if points[0][1] > points[-1][1]:
        points = points[::-1]  # listed from full to zero: turn it round
    if points[-1][1] <= points[0][1]:
        raise ConfigError(f"points: power never rises (all points at {points[0][1]} W)")
    for i in range(1, len(points)):
        if points[i][1] < points[i - 1][1]:
            raise ConfigError(
                f"points: power must not fall along the knob direction "
                f"({points[i - 1][1]} W at {points[i - 1][0]} deg, then {points[i][1]} W at {points[i][0]} deg)"
            )
    return points


@dataclass(frozen=True)
class Calibration:
    """A monotonic (angle_deg, power_w) table, ordered from knob zero to knob full.

    Construct it with any order that is monotonic in angle; it is checked and
    turned round if it was listed from the full end. Raises ConfigError on a bad
    table.
    """

    points: tuple[tuple[float, float], ...]
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _oriented_points(list(self.points)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @classmethod
    def linear(cls, knob_zero_deg: float, knob_full_deg: float, max_power_w: float) -> Calibration:
        """The default curve: a straight line from knob zero (0 W) to knob full (max_power_w)."""
        return cls(((knob_zero_deg, 0.0), (knob_full_deg, max_power_w)))

    @property
    def zero_angle_deg(self) -> float:
        """Servo angle of the knob's zero end (where power 0 goes)."""
        return self.points[0][0]

    @property
    def full_angle_deg(self) -> float:
        """Servo angle of the knob's full end."""
        return self.points[-1][0]

    @property
    def max_power_w(self) -> float:
        """Heater power at the full end of the table."""
        return self.points[-1][1]

    @property
    def reversed(self) -> bool:
        """True when the angle falls as the power rises (knob mounted reversed)."""
        return self.full_angle_deg < self.zero_angle_deg

    def angle_for(self, power_w: float) -> float:
        """Servo angle that gives power_w: zero angle for <= 0 W (or NaN), clipped to the table."""
        if not power_w > 0:  # also NaN
            return self.zero_angle_deg
        powers = [p for _, p in self.points]
        if power_w <= powers[0]:
            return self.zero_angle_deg
        if power_w >= powers[-1]:
            # The least knob that reaches full power (a flat end is not turned further).
            j = bisect.bisect_left(powers, powers[-1])
            return self.points[j][0]
        j = bisect.bisect_left(powers, power_w)  # first point with power >= power_w; powers[j-1] < power_w
        (a0, p0), (a1, p1) = self.points[j - 1], self.points[j]
        return a0 + (power_w - p0) / (p1 - p0) * (a1 - a0)

    def power_at(self, angle_deg: float) -> float:
        """Heater power at a servo angle, clipped to the table's ends."""
        sign = -1.0 if self.reversed else 1.0
        # Positions along the knob rise with the table index in both mountings.
        positions = [sign * a for a, _ in self.points]
        x = sign * angle_deg
        if x <= positions[0]:
            return self.points[0][1]
        if x >= positions[-1]:
            return self.points[-1][1]
        j = bisect.bisect_right(positions, x)
        (x0, p0), (x1, p1) = (positions[j - 1], self.points[j - 1][1]), (positions[j], self.points[j][1])
        return p0 + (x - x0) / (x1 - x0) * (p1 - p0)


def input_range(config: Config) -> tuple[float, float]:
    """The selected actuator's input at zero and at full power, as the linear default spans it."""
    actuator = config.heater.actuator
    if actuator == "pwm_0_10v":
        return config.pwm.min_duty, config.pwm.max_duty
    if actuator == "ssr_burst":
        return 0.0, 1.0
    return config.servo.knob_zero_deg, config.servo.knob_full_deg


def calibration_from_config(config: Config) -> Calibration:
    """The calibration file named by heater.calibration_file, else the selected actuator's linear default."""
    if config.heater.calibration_file is None:
        zero, full = input_range(config)
        return Calibration.linear(zero, full, config.heater.max_power_w)
    calibration = load_calibration(config.heater.calibration_file)
    made_for = calibration.metadata.get("actuator", "servo")
    if made_for != config.heater.actuator:
        raise ConfigError(
            f"heater.calibration_file: {config.heater.calibration_file} was made for the {made_for}, but "
            f"heater.actuator is {config.heater.actuator}; run `pvheater calibrate` for it"
        )
    return calibration


def _parse_points(data: Any) -> list[tuple[float, float]]:
    if not isinstance(data, list):
        raise ConfigError(f"points: expected a list of [angle_deg, power_w] pairs, got {type(data).__name__}")
    points = []
    for i, item in enumerate(data):
        if not (isinstance(item, list) and len(item) == 2 and all(_is_number(v) for v in item)):
            raise ConfigError(f"points[{i}]: expected [angle_deg, power_w] as two numbers, got {item!r}")
        points.append((float(item[0]), float(item[1])))
    return points


def calibration_from_dict(data: Any) -> Calibration:
    """Validate a parsed calibration mapping and build the Calibration (ConfigError without file name)."""
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with a 'points' list")
    if "points" not in data:
        raise ConfigError("missing key 'points' (a list of [angle_deg, power_w] pairs)")
    for key in _NUMERIC_METADATA:
        if key in data and not _is_number(data[key]):
            raise ConfigError(f"{key}: expected a number, got {data[key]!r}")
    metadata = {k: v for k, v in data.items() if k != "points"}
    return Calibration(tuple(_parse_points(data["points"])), metadata)


def load_calibration(path: Path | str) -> Calibration:
    """Read and validate a calibration YAML file; raise ConfigError naming the file and the problem."""
    file = Path(path)
    data = read_yaml_file(file, "calibration")
    try:
        return calibration_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def _plain(value: Any) -> Any:
    """Metadata as plain YAML-safe containers (tuples and read-only mappings become lists and dicts)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def save_calibration(path: Path | str, calibration: Calibration, metadata: Mapping[str, Any] | None = None) -> None:
    """Write a calibration file (metadata first, then points from knob zero to full), atomically."""
    file = Path(path)
    meta = dict(calibration.metadata)
    meta.update(metadata or {})
    meta.pop("points", None)
    doc = _plain(meta)
    doc["points"] = [[a, p] for a, p in calibration.points]
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
    tmp = file.with_name(f".{file.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, file)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be written ({exc.strerror})") from None

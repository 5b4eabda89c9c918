"""The watts <-> angle curve: linear default, interpolation, reversed knob, files and their errors."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from pvheater.calibration.curve import Calibration, calibration_from_config, load_calibration, save_calibration
from pvheater.config import Config, HeaterConfig, ServoConfig
from pvheater.errors import ConfigError

# A measured-looking curve: dead zone up to 12 deg, saturation from 150 deg.
MEASURED = Calibration(((0.0, 0.0), (12.0, 0.0), (90.0, 1100.0), (150.0, 2000.0), (180.0, 2000.0)))


def test_linear_default() -> None:
    cal = Calibration.linear(0.0, 180.0, 2000.0)
    assert cal.points == ((0.0, 0.0), (180.0, 2000.0))
    assert cal.angle_for(1000.0) == pytest.approx(90.0)
    assert cal.power_at(45.0) == pytest.approx(500.0)
    assert cal.zero_angle_deg == 0.0 and cal.full_angle_deg == 180.0 and cal.max_power_w == 2000.0


def test_calibration_from_config_default_is_linear_over_the_knob() -> None:
    config = Config(servo=ServoConfig(knob_zero_deg=10.0, knob_full_deg=170.0), heater=HeaterConfig(max_power_w=3000.0))
    assert calibration_from_config(config) == Calibration.linear(10.0, 170.0, 3000.0)


@pytest.mark.parametrize(
    ("power_w", "angle_deg"),
    [
        (0.0, 0.0),  # zero power: the knob's zero angle exactly, not the edge of the dead zone
        (-50.0, 0.0),
        (float("nan"), 0.0),
        (1e-9, 12.0),
        (550.0, 51.0),
        (1100.0, 90.0),
        (1550.0, 120.0),
        (2000.0, 150.0),  # full power at the least knob that gives it
        (5000.0, 150.0),  # clipped
    ],
)
def test_angle_for_interpolates_and_clips(power_w: float, angle_deg: float) -> None:
    assert MEASURED.angle_for(power_w) == pytest.approx(angle_deg)


def test_power_zero_maps_to_zero_angle_exactly() -> None:
    for cal in (MEASURED, Calibration.linear(17.3, 163.9, 4000.0), Calibration.linear(163.9, 17.3, 4000.0)):
        assert cal.angle_for(0.0) == cal.zero_angle_deg  # exact, no rounding


@pytest.mark.parametrize(
    ("angle_deg", "power_w"),
    [(-20.0, 0.0), (0.0, 0.0), (6.0, 0.0), (51.0, 550.0), (120.0, 1550.0), (165.0, 2000.0), (999.0, 2000.0)],
)
def test_power_at_interpolates_and_clips(angle_deg: float, power_w: float) -> None:
    assert MEASURED.power_at(angle_deg) == pytest.approx(power_w)


@pytest.mark.parametrize("power_w", [1.0, 10.0, 333.3, 1100.0, 1234.5, 1999.0, 2000.0])
def test_round_trip(power_w: float) -> None:
    for cal in (MEASURED, Calibration.linear(0.0, 180.0, 2000.0), Calibration.linear(170.0, 10.0, 2000.0)):
        assert cal.power_at(cal.angle_for(power_w)) == pytest.approx(power_w)


def test_reversed_knob() -> None:
    cal = Calibration.linear(170.0, 10.0, 2000.0)  # knob mounted the other way round
    assert cal.reversed
    assert cal.angle_for(0.0) == 170.0
    assert cal.angle_for(500.0) == pytest.approx(130.0)
    assert cal.angle_for(2000.0) == 10.0
    assert cal.angle_for(9999.0) == 10.0
    assert cal.power_at(180.0) == 0.0  # beyond the zero end
    assert cal.power_at(0.0) == 2000.0  # beyond the full end
    assert cal.power_at(90.0) == pytest.approx(1000.0)


def test_table_listed_from_the_full_end_is_turned_round() -> None:
    cal = Calibration(((180.0, 2000.0), (90.0, 1100.0), (0.0, 0.0)))
    assert cal.points == ((0.0, 0.0), (90.0, 1100.0), (180.0, 2000.0))
    assert not cal.reversed
    reversed_knob = Calibration(((10.0, 2000.0), (170.0, 0.0)))
    assert reversed_knob.zero_angle_deg == 170.0 and reversed_knob.reversed


# --- files -----------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "servo.yaml"
    meta = {"date": datetime.date(2024, 6, 1), "dead_zone_deg": 12.0, "full_power_deg": 150.0,
            "gx_readings": [{"angle_deg": 90, "grid_w": -150}]}
    save_calibration(path, MEASURED, meta)
    loaded = load_calibration(path)
    assert loaded == MEASURED
    assert loaded.metadata["date"] == datetime.date(2024, 6, 1)
    assert loaded.metadata["dead_zone_deg"] == 12.0
    assert loaded.metadata["gx_readings"] == [{"angle_deg": 90, "grid_w": -150}]
    text = path.read_text(encoding="utf-8")
    assert text.index("date:") < text.index("points:")  # metadata first, for people reading it
    assert not list(tmp_path.glob(".*.tmp"))


def test_load_minimal_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("points: [[0, 0], [180, 4000]]\n", encoding="utf-8")
    cal = load_calibration(path)
    assert cal == Calibration.linear(0.0, 180.0, 4000.0)
    assert cal.angle_for(2000.0) == pytest.approx(90.0)


def test_calibration_from_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    save_calibration(path, MEASURED)
    config = Config(heater=HeaterConfig(calibration_file=str(path)))
    assert calibration_from_config(config) == MEASURED


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("points: [[0, 0]]\n", "points: need at least 2 [angle_deg, power_w] points, got 1"),
        ("points: []\n", "points: need at least 2 [angle_deg, power_w] points, got 0"),
        ("date: 2024-06-01\n", "missing key 'points' (a list of [angle_deg, power_w] pairs)"),
        ("- [0, 0]\n- [180, 2000]\n", "expected a mapping with a 'points' list"),
        ("points: 5\n", "points: expected a list of [angle_deg, power_w] pairs, got int"),
        ("points: [[0, 0], [90, 'lots']]\n",
         "points[1]: expected [angle_deg, power_w] as two numbers, got [90, 'lots']"),
        ("points: [[0, 0], [90]]\n", "points[1]: expected [angle_deg, power_w] as two numbers, got [90]"),
        ("points: [[0, 0], [90, true]]\n", "points[1]: expected [angle_deg, power_w] as two numbers, got [90, True]"),
        ("points: [[0, 0], [90, .nan]]\n", "points[1]: expected [angle_deg, power_w] as two numbers, got [90, nan]"),
        ("points: [[0, 0], [90, 900], [90, 1000]]\n",
         "points[2]: angles must be strictly increasing along the table (got 90.0 then 90.0)"),
        ("points: [[0, 0], [90, 900], [60, 1000]]\n",
         "points[2]: angles must be strictly increasing along the table (got 90.0 then 60.0)"),
        ("points: [[0, 0], [90, 1200], [180, 1000]]\n",
         "points: power must not fall along the knob direction (1200.0 W at 90.0 deg, then 1000.0 W at 180.0 deg)"),
        ("points: [[0, 500], [180, 500]]\n", "points: power never rises (all points at 500.0 W)"),
        ("points: [[0, -10], [180, 500]]\n", "points[0]: power_w must not be negative, got -10.0"),
        ("points: [[0, 0], [180, 2000]]\ndead_zone_deg: wide\n", "dead_zone_deg: expected a number, got 'wide'"),
        ("points: [[0, 0], [180, 2000]\n",
         "not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
        ("points: [[180, 0], [90, 900], [120, 1000]]\n",
         "points[2]: angles must be strictly decreasing along the table (got 90.0 then 120.0)"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_calibration(path)
    message = str(info.value)
    assert message == f"{path}: {problem}"
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: calibration file not found$"):
        load_calibration(path)


def test_unwritable_file(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "c.yaml"
    with pytest.raises(ConfigError, match=r"c\.yaml: cannot be written \(No such file or directory\)$"):
        save_calibration(path, MEASURED)

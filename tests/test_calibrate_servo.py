"""`pvheater calibrate-servo`: the sweep against the simulator (Modbus-TCP, mock pins, simulated time),
the fit against the plant's true regulator curve, the safety refusals and aborts, --manual and --limits."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockPin

from pvheater.actuators import Heater
from pvheater.calibration.curve import load_calibration
from pvheater.calibration.fit import fit_sweep, isotonic_fit, largest_drop
from pvheater.calibration.sweep import (
    Bench,
    CalibrationDiscarded,
    Sweep,
    SweepPoint,
    SweepSettings,
    load_w,
    parse_watts,
    power_source,
    settle,
    sweep_angles,
)
from pvheater.cli import main
from pvheater.commands.calibrate_servo import Written, execute, pulse_width_ms, rig_bench
from pvheater.config import Config
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeaterOutput
from pvheater.errors import ConfigError, GxUnavailable
from pvheater.sim.live import SimulatedRig
from pvheater.sim.plant import HeaterPlantParams, PlantParams, knob_fraction_for_angle, regulator_power_fraction
from pvheater.sim.scenarios import ScenarioDay, constant_day

DATE = "2024-06-01T12:00:00"
PV_W, HOUSE_W = 3000.0, 350.0


def fast_config(**calibration: float) -> Config:
    """Default config with short GX timeouts (a silent GX costs 0.5 s), calibration keys overridden."""
    cfg = Config()
    return replace(
        cfg,
        gx=replace(cfg.gx, timeout_s=0.5, reconnect_min_s=0.5, reconnect_max_s=2.0),
        calibration=replace(cfg.calibration, **calibration),
    )


def sunny_day(params: PlantParams | None = None, soc_pct: float = 100.0) -> ScenarioDay:
    return constant_day(PV_W, HOUSE_W, seconds=3600, initial_soc_pct=soc_pct, params=params)


def with_house_change(day: ScenarioDay, from_s: float, to_s: float, extra_w: float) -> ScenarioDay:
    """The same day with extra_w more house load on L1 during [from_s, to_s)."""
    house = list(day.house_l1_w)
    for i in range(int(from_s), min(int(to_s), len(house))):
        house[i] += extra_w
    return replace(day, house_l1_w=tuple(house))


@pytest.fixture
def rig() -> Iterator[SimulatedRig]:
    with SimulatedRig(sunny_day(), fast_config(), start_s=0.0) as r:
        yield r


def relay_pin(rig: SimulatedRig) -> MockPin:
    return rig.pin_factory.pin(rig.config.relay.pin)


def relay_ever_closed(rig: SimulatedRig) -> bool:
    return any(bool(s.state) for s in relay_pin(rig).states)


def calibrate(
    rig: SimulatedRig, tmp_path: Path, cfg: Config | None = None, bench: Bench | None = None, **kwargs: object
) -> tuple[int, Written | None]:
    return execute(
        bench or rig_bench(rig), cfg or rig.config, out_path=tmp_path / "cal.yaml", date=DATE,
        report=lambda _line: None, **kwargs,  # type: ignore[arg-type]
    )


def true_power_w(angle_deg: float, hp: HeaterPlantParams) -> float:
    return hp.max_power_w * regulator_power_fraction(knob_fraction_for_angle(angle_deg, hp), hp.dead_zone_frac)


def true_edges_deg(hp: HeaterPlantParams) -> tuple[float, float]:
    return hp.knob_zero_deg + hp.dead_zone_frac * (hp.knob_full_deg - hp.knob_zero_deg), hp.knob_full_deg


def assert_safe(rig: SimulatedRig) -> None:
    """Relay pin low and the knob commanded to zero."""
    assert not relay_pin(rig).state
    assert rig.heater.servo.angle_deg == pytest.approx(rig.config.servo.knob_zero_deg)


# --- acceptance: the fitted curve against the plant --------------------------------------------

GEOMETRIES = {
    "default": HeaterPlantParams(),
    "wide-12pct-dead": HeaterPlantParams(knob_zero_deg=8.0, knob_full_deg=172.0, dead_zone_frac=0.12),
    "reversed-knob": HeaterPlantParams(knob_zero_deg=165.0, knob_full_deg=15.0, max_power_w=1500.0),
}


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_sweep_fits_the_plant_curve_and_finds_its_edges(tmp_path: Path, name: str) -> None:
    hp = GEOMETRIES[name]
    with SimulatedRig(sunny_day(PlantParams(heater=hp)), fast_config(), start_s=0.0) as rig:
        code, written = calibrate(rig, tmp_path)
        assert code == 0 and written is not None
        assert_safe(rig)
        rig.live.advance(20)
        assert rig.plant.heater_w == 0
    cal = load_calibration(tmp_path / "cal.yaml")
    assert cal.points == written.fit.calibration.points
    full_w = hp.max_power_w
    # within 5 % of full power at every table point, and everywhere in between
    errors = [abs(p - true_power_w(a, hp)) / full_w for a, p in cal.points]
    assert max(errors) < 0.05
    lo, hi = sorted((hp.knob_zero_deg, hp.knob_full_deg))
    dense = [lo + (hi - lo) * k / 500 for k in range(501)]
    assert max(abs(cal.power_at(a) - true_power_w(a, hp)) for a in dense) / full_w < 0.05
    dead_deg, full_deg = true_edges_deg(hp)
    assert abs(written.fit.dead_zone_deg - dead_deg) <= 3.0
    assert written.fit.full_power_deg is not None and abs(written.fit.full_power_deg - full_deg) <= 3.0
    assert cal.metadata["dead_zone_deg"] == written.fit.dead_zone_deg
    assert cal.metadata["date"] == DATE
    readings = cal.metadata["gx_readings"]
    assert readings["baseline_before_w"] == pytest.approx(HOUSE_W, abs=2)
    assert len(readings["readings"]) == len(sweep_angles(hp.knob_zero_deg, hp.knob_full_deg, 5.0))
    assert cal.zero_angle_deg == hp.knob_zero_deg


@pytest.mark.parametrize("target_w", [300.0, 1000.0, 1700.0])
def test_heater_with_the_calibration_reaches_power_in_one_move(tmp_path: Path, rig: SimulatedRig,
                                                               target_w: float) -> None:
    code, _ = calibrate(rig, tmp_path)
    assert code == 0
    heater = Heater(rig.heater.relay, rig.heater.servo, load_calibration(tmp_path / "cal.yaml"))
    rig.live.advance(30)
    moves_before = rig.plant.servo_moves
    heater.apply(HeaterOutput(relay_on=True, power_w=target_w), rig.clock())
    powers = []
    for _ in range(5):
        rig.live.advance(10)
        heater.tick(rig.clock())
        powers.append(rig.plant.heater_w)
    assert rig.plant.servo_moves - moves_before == 1
    assert abs(powers[-1] - target_w) <= 0.05 * target_w
    assert max(powers[1:]) - min(powers[1:]) < 1.0  # settled: no hunting


# --- discarding a run --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ((40.0, 3600.0, 800.0), "the house load changed during the calibration"),  # a step that stays
        ((40.0, 55.0, 800.0), "the measured power fell by"),  # a kettle on and off mid-sweep
    ],
    ids=["step", "pulse"],
)
def test_house_load_change_discards_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[float, float, float], expected: str
) -> None:
    day = with_house_change(sunny_day(), *change)
    with SimulatedRig(day, fast_config(), start_s=0.0) as rig:
        code, written = calibrate(rig, tmp_path)
        assert_safe(rig)
    err = capsys.readouterr().err
    assert code == 1 and written is None
    assert err.count("\n") == 1
    assert err.startswith("pvheater: calibration discarded: ")
    assert expected in err and "nothing written" in err
    assert not (tmp_path / "cal.yaml").exists()


def test_power_cap_ends_the_table_below_it(tmp_path: Path) -> None:
    with SimulatedRig(sunny_day(), fast_config(max_test_power_w=1000.0), start_s=0.0) as rig:
        code, written = calibrate(rig, tmp_path)
        assert_safe(rig)
    assert code == 0 and written is not None
    cal = load_calibration(tmp_path / "cal.yaml")
    assert cal.max_power_w <= 1000.0
    assert cal.max_power_w > 800.0
    assert written.fit.full_power_deg is None
    assert cal.metadata["stopped_at"] == "calibration.max_test_power_w"


def test_duration_cap_aborts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedRig(sunny_day(), fast_config(max_duration_s=30.0), start_s=0.0) as rig:
        code, _ = calibrate(rig, tmp_path)
        assert_safe(rig)
        assert rig.live.sim_time_s < 45.0
    err = capsys.readouterr().err
    assert code == 1
    assert "calibration aborted: the calibration took longer than calibration.max_duration_s (30 s)" in err
    assert not (tmp_path / "cal.yaml").exists()


# --- refusals ------------------------------------------------------------------------------------


def test_low_soc_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedRig(sunny_day(soc_pct=80.0), fast_config(), start_s=0.0) as rig:
        code, _ = calibrate(rig, tmp_path)
        assert not relay_ever_closed(rig)
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("pvheater: calibrate-servo refused to start: battery SoC 80 % is below control.min_soc_pct")
    assert not (tmp_path / "cal.yaml").exists()


@pytest.mark.parametrize(("fault", "expected"), [("stopped", "cannot be reached"), ("silent", "did not answer")])
def test_unreachable_gx_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rig: SimulatedRig, fault: str, expected: str
) -> None:
    if fault == "stopped":
        rig.gx.stop()
    else:
        rig.gx.silent = True
    code, _ = calibrate(rig, tmp_path)
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("pvheater: calibrate-servo refused to start: GX at 127.0.0.1:")
    assert expected in err
    assert not relay_ever_closed(rig)
    assert not (tmp_path / "cal.yaml").exists()


# --- Ctrl-C and errors ------------------------------------------------------------------------------


def interrupting_bench(rig: SimulatedRig, after_waits: int, exc: BaseException) -> Bench:
    """A rig bench whose wait raises exc once, on call number after_waits."""
    inner = rig_bench(rig)
    calls = [0]

    def wait(seconds: float) -> None:
        calls[0] += 1
        if calls[0] == after_waits:
            raise exc
        inner.wait(seconds)

    return replace(inner, wait=wait)


def test_ctrl_c_mid_sweep_turns_off_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rig: SimulatedRig
) -> None:
    code, _ = calibrate(rig, tmp_path, bench=interrupting_bench(rig, 40, KeyboardInterrupt()))
    err = capsys.readouterr().err
    assert code == 130
    assert err == "pvheater: calibration aborted (interrupted): relay off, knob at zero; nothing written\n"
    assert relay_ever_closed(rig)  # it was heating when interrupted
    assert_safe(rig)
    rig.live.advance(20)
    assert rig.plant.heater_w == 0
    assert not (tmp_path / "cal.yaml").exists()


def test_any_error_turns_off(tmp_path: Path, rig: SimulatedRig) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        calibrate(rig, tmp_path, bench=interrupting_bench(rig, 25, RuntimeError("boom")))
    assert_safe(rig)
    assert not (tmp_path / "cal.yaml").exists()


def test_gx_failure_mid_sweep_aborts(tmp_path: Path, capsys: pytest.CaptureFixture[str], rig: SimulatedRig) -> None:
    inner = rig_bench(rig)
    reads = [0]

    def read() -> Measurements:
        reads[0] += 1
        if reads[0] > 20:
            raise GxUnavailable("GX at 127.0.0.1 did not answer within 0.5 s")
        return inner.read()

    code, _ = calibrate(rig, tmp_path, bench=replace(inner, read=read))
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("pvheater: calibration aborted: the GX failed during the sweep: GX at 127.0.0.1 did not")
    assert "relay off, knob at zero, nothing written" in err
    assert_safe(rig)


# --- --manual and --limits ---------------------------------------------------------------------------


def test_manual_mode_with_scripted_answers(tmp_path: Path, rig: SimulatedRig) -> None:
    prompts: list[str] = []
    script = iter(["abc", "", "-5 W"])  # not watts, skip, not watts (negative): asked again / skipped

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        scripted = next(script, None)
        return scripted if scripted is not None else f"{rig.plant.heater_w:.0f}"  # what a meter would show

    code, written = calibrate(rig, tmp_path, mode="manual", ask=ask)
    assert code == 0 and written is not None
    assert_safe(rig)
    hp = rig.plant.params.heater
    angles = sweep_angles(hp.knob_zero_deg, hp.knob_full_deg, 5.0)
    assert prompts[0].startswith(f"knob at {angles[0]:g} deg: heater watts")
    assert prompts[1].startswith("not a number of watts: 'abc'")
    assert len(prompts) == len(angles) + 2  # two answers were asked again
    assert written.sweep.method == "manual"
    assert [p.angle_deg for p in written.sweep.points] == angles[1:]  # the skipped first angle
    cal = load_calibration(tmp_path / "cal.yaml")
    assert max(abs(p - true_power_w(a, hp)) for a, p in cal.points) / hp.max_power_w < 0.05
    assert cal.metadata["method"].startswith("manual")


def test_manual_q_stops_early(tmp_path: Path, rig: SimulatedRig) -> None:
    answers = iter(["0", "0", "5", "400", "q"])
    code, written = calibrate(rig, tmp_path, mode="manual", ask=lambda _p: next(answers))
    assert code == 0 and written is not None
    assert len(written.sweep.points) == 4
    assert_safe(rig)


def test_limits_moves_slowly_to_the_ends_and_back(tmp_path: Path, rig: SimulatedRig) -> None:
    servo_cfg = rig.config.servo
    servo_pin = rig.pin_factory.pin(servo_cfg.pin)
    inner = rig_bench(rig)
    duties: list[float] = []

    def wait(seconds: float) -> None:
        if servo_pin.state:
            duties.append(servo_pin.state)
        inner.wait(seconds)

    code, written = calibrate(rig, tmp_path, bench=replace(inner, wait=wait), mode="limits")
    assert code == 0 and written is None
    frame_ms = servo_cfg.frame_width_ms
    zero_duty = pulse_width_ms(servo_cfg, servo_cfg.knob_zero_deg) / frame_ms
    full_duty = pulse_width_ms(servo_cfg, servo_cfg.knob_full_deg) / frame_ms
    assert duties[0] == pytest.approx(zero_duty)
    assert max(duties) == pytest.approx(full_duty)
    assert min(duties) == pytest.approx(zero_duty)
    assert duties[-1] == pytest.approx(zero_duty)
    peak = duties.index(max(duties))
    assert duties[:peak + 1] == sorted(duties[:peak + 1])  # out, then back
    assert duties[peak:] == sorted(duties[peak:], reverse=True)
    step_duty = max(abs(b - a) for a, b in itertools.pairwise(duties))
    deg_per_duty = (servo_cfg.max_angle_deg - servo_cfg.min_angle_deg) / (
        (servo_cfg.max_pulse_width_ms - servo_cfg.min_pulse_width_ms) / frame_ms
    )
    assert step_duty * deg_per_duty <= 1.01  # at most 1 deg per move: slowly
    seconds = rig.live.sim_time_s
    span = abs(servo_cfg.knob_full_deg - servo_cfg.knob_zero_deg)
    assert seconds >= 2 * span / rig.config.calibration.limits_speed_deg_s
    assert not relay_ever_closed(rig)


# --- the command line ---------------------------------------------------------------------------------


def test_cli_simulate_writes_and_prints_the_config_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.yaml"
    code = main(["calibrate-servo", "--simulate", "--speed", "1e6", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "simulated time at 1e+06x real time" in text
    assert f"heater.calibration_file: {out.resolve()}" in text
    assert "took 1 servo move(s)" in text
    assert load_calibration(out).metadata["full_power_deg"] == pytest.approx(160.0, abs=3.0)


def test_cli_simulate_low_soc_refuses_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.yaml"
    code = main(["calibrate-servo", "--simulate", "--speed", "1e6", "--scenario", "morning60", "--start", "07:00",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "refused to start: battery SoC" in err
    assert not out.exists()


def test_cli_real_gx_unreachable_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("gx:\n  host: 127.0.0.1\n  port: 1\n  timeout_s: 0.5\ngpio:\n  pin_factory: mock\n",
                      encoding="utf-8")
    code = main(["calibrate-servo", "--config", str(config), "--out", str(tmp_path / "cal.yaml")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "refused to start: GX at 127.0.0.1:1 cannot be reached" in err
    assert not (tmp_path / "cal.yaml").exists()


def test_cli_settle_timeout_too_short_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("calibration:\n  settle_samples: 5\n  settle_timeout_s: 4\n", encoding="utf-8")
    code = main(["calibrate-servo", "--config", str(config), "--simulate"])
    err = capsys.readouterr().err
    assert code == 2
    assert "calibration.settle_timeout_s must allow settle_samples + 1 readings" in err


# --- the pure parts -------------------------------------------------------------------------------------


class FakeBench:
    """A bench of scripted readings on a fake clock."""

    def __init__(self, readings: list[float]) -> None:
        self.now_s = 0.0
        self.readings = iter(readings)

    def sample(self) -> float:
        return next(self.readings)

    def bench(self) -> Bench:
        class Nothing:
            angle_deg: float | None = None

            def set(self, on: bool) -> None: ...
            def move_to(self, angle_deg: float, now_s: float) -> bool:
                self.angle_deg = angle_deg
                return True
            def tick(self, now_s: float) -> None: ...

        def wait(seconds: float) -> None:
            self.now_s += seconds

        return Bench(Nothing(), Nothing(), lambda: Measurements(0.0), lambda: self.now_s, wait)


SETTINGS = SweepSettings.from_config(Config())


def test_settle_waits_for_agreeing_readings() -> None:
    fake = FakeBench([0.0, 900.0, 1480.0, 1500.0, 1510.0, 1495.0, 9999.0])
    got = settle(fake.sample, fake.bench(), SETTINGS, "test")
    assert got.value_w == pytest.approx((1500 + 1510 + 1495) / 3)
    assert got.readings_w == (0.0, 900.0, 1480.0, 1500.0, 1510.0, 1495.0)
    assert got.elapsed_s == pytest.approx(6.0)


def test_settle_times_out() -> None:
    fake = FakeBench([float(100 * (k % 2)) for k in range(100)])
    with pytest.raises(CalibrationDiscarded, match=r"test did not settle within calibration.settle_timeout_s \(20 s\)"):
        settle(fake.sample, fake.bench(), SETTINGS, "test")
    assert fake.now_s == pytest.approx(20.0)


def test_sweep_angles() -> None:
    assert sweep_angles(20.0, 40.0, 5.0) == [20.0, 25.0, 30.0, 35.0, 40.0]
    assert sweep_angles(20.0, 42.0, 5.0) == [20.0, 25.0, 30.0, 35.0, 40.0, 42.0]
    assert sweep_angles(20.0, 41.0, 5.0) == [20.0, 25.0, 30.0, 35.0, 41.0]  # no sliver of a step
    assert sweep_angles(20.0, 40.5, 5.0) == [20.0, 25.0, 30.0, 35.0, 40.5]
    assert sweep_angles(160.0, 150.0, 4.0) == [160.0, 156.0, 152.0, 150.0]
    assert sweep_angles(20.0, 42.0, 5.0, min_gap_deg=2.5) == [20.0, 25.0, 30.0, 35.0, 42.0]


def test_isotonic_fit_and_largest_drop() -> None:
    assert isotonic_fit([0, 10, 8, 30, 29, 31]) == [0, 9, 9, 29.5, 29.5, 31]
    assert isotonic_fit([1, 2, 3]) == [1, 2, 3]
    assert largest_drop([0, 100, 500, 420, 600, 590]) == (80, 2, 3)
    assert largest_drop([0, 1, 2])[0] == 0


def make_sweep(powers: list[float], angles: list[float] | None = None) -> Sweep:
    angles = angles or [20.0 + 5.0 * k for k in range(len(powers))]
    return Sweep(tuple(SweepPoint(a, p) for a, p in zip(angles, powers, strict=True)), "sweep")


def test_fit_makes_noisy_points_monotonic_and_says_so() -> None:
    fit = fit_sweep(make_sweep([0, 2, -3, 40, 300, 290, 900, 1500, 1900, 2004, 1996]), 10.0, 50.0)
    powers = [p for _, p in fit.calibration.points]
    assert powers == sorted(powers)
    assert fit.adjusted_points >= 2
    assert fit.fit_note.startswith("made the table rise steadily: ") and "adjusted, the largest by" in fit.fit_note


def test_fit_discards_a_drop_and_a_dead_heater() -> None:
    with pytest.raises(CalibrationDiscarded, match="fell by 400 W"):
        fit_sweep(make_sweep([0, 100, 800, 400, 1200, 2000]), 10.0, 50.0)
    with pytest.raises(CalibrationDiscarded, match="no clear power"):
        fit_sweep(make_sweep([0, 1, 0, 2, 3, 1]), 10.0, 50.0)


def test_fit_fallback_without_enough_points_for_a_line() -> None:
    fit = fit_sweep(make_sweep([0, 0, 0, 1000, 2000, 2000], [0, 30, 60, 90, 120, 150]), 10.0, 50.0)
    assert fit.dead_zone_method.startswith("last angle")
    assert fit.dead_zone_deg == 60.0
    assert fit.full_power_method.startswith("first angle")
    assert fit.full_power_deg == 120.0


def test_power_source_falls_back_to_ac_out() -> None:
    both = Measurements(0.0, {"ac_consumption_l1_w": 500.0, "vebus_ac_out_l1_w": 480.0})
    out_only = Measurements(0.0, {"ac_consumption_l1_w": None, "vebus_ac_out_l1_w": 480.0})
    assert power_source(both) == "ac_consumption" and load_w(both, "ac_consumption") == 500.0
    assert power_source(out_only) == "vebus_ac_out" and load_w(out_only, "vebus_ac_out") == 480.0
    assert power_source(Measurements(0.0, {})) is None


@pytest.mark.parametrize(("text", "watts"), [("1200", 1200.0), (" 1.2 kW", 1200.0), ("800W", 800.0),
                                             ("1,5kw", 1500.0), ("abc", None), ("-3", None), ("", None)])
def test_parse_watts(text: str, watts: float | None) -> None:
    assert parse_watts(text) == watts


def test_config_check_step_below_min_move() -> None:
    cfg = Config()
    cfg = replace(cfg, servo=replace(cfg.servo, min_move_deg=2.0), calibration=replace(cfg.calibration, step_deg=2.0))
    with pytest.raises(ConfigError, match=r"calibration\.step_deg must be larger than servo\.min_move_deg"):
        SweepSettings.from_config(cfg)


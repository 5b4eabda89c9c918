"""Each actuator in the closed loop: the real loop on mock pins against the plant's models, and calibrate --simulate."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pvheater.calibration.curve import load_calibration
from pvheater.cli import main
from pvheater.config import Config
from pvheater.sim.live import SimulatedRig
from pvheater.sim.regulators import (
    BurstHeater,
    BurstParams,
    ZeroTenVoltParams,
    ZeroTenVoltRegulator,
    zero_ten_power_fraction,
)
from pvheater.sim.scenarios import constant_day

ACTUATOR_PINS = {"pwm_0_10v": "GPIO18", "ssr_burst": "GPIO18"}


def with_actuator(actuator: str) -> Config:
    cfg = Config()
    return replace(cfg, heater=replace(cfg.heater, actuator=actuator))


# --- the plant's models --------------------------------------------------------------------------------


def test_zero_ten_volt_regulator_dead_band_curve_and_relay() -> None:
    p = ZeroTenVoltParams(start_v=0.6, full_v=9.6)
    reg = ZeroTenVoltRegulator(2000.0, p)
    assert reg.power_w(True, 0.05, 0.1) == 0.0  # 0.5 V: below the start
    assert reg.power_w(True, 0.51, 0.1) == pytest.approx(1000.0)  # 5.1 V: half the conduction, half the power
    assert reg.power_w(True, 0.97, 0.1) == 2000.0
    assert reg.power_w(False, 0.97, 0.1) == 0.0
    fracs = [zero_ten_power_fraction(k / 100, p) for k in range(101)]
    assert fracs == sorted(fracs)


def test_burst_heater_is_whole_cycles_and_exact_on_average() -> None:
    heater = BurstHeater(2000.0, BurstParams(mains_hz=50, period_cycles=50))
    steps = [heater.power_w(True, 0.37, 0.1) for _ in range(100)]  # 5 cycles a step
    assert set(steps) <= {k * 400.0 for k in range(6)}  # a step's power is whole cycles of it
    # 0.37 x 50 = 18.5: 18 whole cycles a period (720 W), rounded down: never above the request (740 W)
    assert sum(steps) / len(steps) == pytest.approx(720.0)
    assert heater.metered_w == pytest.approx(720.0)  # the meter's second sees the same count every period
    assert heater.wear()["longest_on_block"] == 1 and heater.wear()["longest_off_block"] <= 2
    assert heater.power_w(False, 0.37, 0.1) == 0.0


def test_the_what_if_burst_heater_without_whole_cycles_gives_the_request_itself() -> None:
    """bench/ssr_steps.py's what-if (BurstParams.whole_cycles False): no cycle step, the request as it is."""
    heater = BurstHeater(2000.0, BurstParams(mains_hz=50, period_cycles=50, whole_cycles=False))
    steps = [heater.power_w(True, 0.37, 0.1) for _ in range(20)]
    assert steps == [pytest.approx(740.0)] * 20  # between two whole cycles (720 / 760 W), every step
    assert heater.metered_w == pytest.approx(740.0)
    assert heater.power_w(False, 0.37, 0.1) == 0.0


# --- the real loop on mock pins -----------------------------------------------------------------------


@pytest.mark.parametrize("actuator", ["servo", "pwm_0_10v", "ssr_burst"])
def test_closed_loop_heats_the_surplus_and_zeroes_the_actuator_when_the_gx_goes_quiet(actuator: str) -> None:
    day = constant_day(3000.0, 350.0, seconds=3600, initial_soc_pct=100.0, name="steady")
    cfg = with_actuator(actuator)
    cfg = replace(cfg, gx=replace(cfg.gx, timeout_s=0.5))
    with SimulatedRig(day, cfg, start_s=0.0) as rig:
        assert rig.config.heater.actuator == actuator
        for _ in range(240):
            rig.step(1.0)
        energy = rig.plant.energy().heater_wh
        for _ in range(60):
            rig.step(1.0)
        heater_w = (rig.plant.energy().heater_wh - energy) * 60.0
        assert heater_w > 1500.0, f"{actuator}: {heater_w:.0f} W"  # the surplus is ~1.9 kW at a full battery
        metrics = rig.live.metrics()
        # taken from the battery in these 5 minutes: servo and 0-10 V ~4 Wh, the SSR's whole-cycle bursts ~10 Wh
        assert metrics is not None and metrics.draw_kwh < 0.015
        rig.gx.stop()  # the GX goes silent: the guard opens the relay and the actuator goes to zero
        for _ in range(15):
            rig.step(1.0)
        assert not rig.heater.relay_on and rig.plant.heater_w == 0.0
        if actuator != "servo":
            pin = rig.pin_factory.pin(ACTUATOR_PINS[actuator])
            assert pin.state == 0
            assert rig.heater.actuator.input_value == 0.0


def test_run_simulate_with_each_actuator_by_the_config_switch(tmp_path: Path) -> None:
    for actuator in ("pwm_0_10v", "ssr_burst"):
        (tmp_path / "config.yaml").write_text(f"log:\n  file: null\nheater:\n  actuator: {actuator}\n")
        proc = subprocess.run(
            [sys.executable, "-m", "pvheater.cli", "run", "--simulate", "--duration", "4"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert f"GPIO18 ({actuator})" in lines[0]
        summary = next(line for line in lines if line.startswith("summary: heated"))
        assert ("SSR switch-ons" if actuator == "ssr_burst" else "PWM duty changes") in summary
        assert "Traceback" not in proc.stderr


# --- calibrate --simulate ------------------------------------------------------------------------------


@pytest.mark.parametrize("actuator", ["servo", "pwm_0_10v", "ssr_burst"])
def test_calibrate_simulate_fits_each_actuator_within_1_percent(
    actuator: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cal.yaml"
    code = main(["calibrate", "--simulate", "--speed", "1e6", "--actuator", actuator, "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    found = re.search(r"the table is within (\d+) W \(([\d.]+) % of full\)", text)
    assert found is not None, text
    assert float(found.group(2)) <= 1.0
    got = re.search(r"then takes (\d+) W \(([-+\d.]+) %\)", text)
    assert got is not None
    # ssr_burst fires whole cycles rounded down: up to one cycle of 50 (40 W, 4 % of the 1000 W asked) below
    below_pct = 1.0 + (4.0 if actuator == "ssr_burst" else 0.0)
    assert -below_pct <= float(got.group(2)) <= 1.0
    cal = load_calibration(out)
    assert cal.metadata.get("actuator", "servo") == actuator
    assert cal.max_power_w == pytest.approx(2000.0, rel=0.01)


def test_calibrate_servo_refuses_another_actuator_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate-servo", "--actuator", "ssr_burst", "--simulate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "pvheater: calibrate-servo calibrates the servo; for ssr_burst use " \
                  "`pvheater calibrate --actuator ssr_burst`"
    assert main(["calibrate", "--actuator", "pwm_0_10v", "--limits", "--simulate"]) == 2
    assert "--limits moves the servo" in capsys.readouterr().err

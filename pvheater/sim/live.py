"""The plant in real time behind the GX simulator, its heater driven by gpiozero mock pins.

This is what `pvheater run --simulate` and the closed-loop tests run against:
the real control loop reads the GX simulator over Modbus-TCP and drives
gpiozero devices on a `MockFactory`; this module reads those pins -- the relay
pin's level and the servo pin's pulse width -- as the plant's inputs, steps
the plant (and a heater-off twin for the metrics) in fixed steps that follow
the wall clock, and publishes the plant's values to the GX simulator once a
second, like a real GX.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pvheater.config import Config
from pvheater.control.timeofday import time_of_day
from pvheater.sim.gx_server import GxSimulator
from pvheater.sim.metrics import compute_metrics
from pvheater.sim.params import Actuation, config_for_plant, params_for_actuator
from pvheater.sim.plant import Plant
from pvheater.sim.recording import RunRecorder
from pvheater.sim.results import RunMetrics, RunResult
from pvheater.sim.scenarios import ScenarioDay

if TYPE_CHECKING:
    from pvheater.service.loop import TickReport


class MockPinWiring:
    """Reads the heater's inputs off gpiozero mock pins: relay level and servo pulse width (or PWM duty, SSR cycles).

    For ssr_burst the wiring is the mains: each plant step of step_s it steps
    the burst output (`burst`, built with threaded=False) through the step's
    mains cycles and reads the pin after each, so the plant gets the share of
    cycles the pin really fired.
    """

    def __init__(self, pin_factory: Any, config: Config, *, burst: Any = None, step_s: float = 0.1) -> None:
        self._relay_pin = pin_factory.pin(config.relay.pin)
        self._actuator = config.heater.actuator
        self._pwm_pin = pin_factory.pin(config.pwm.pin) if self._actuator == "pwm_0_10v" else None
        self._pwm_inverted = config.pwm.inverted
        self._burst = burst
        self._burst_pin = pin_factory.pin(config.burst.pin) if self._actuator == "ssr_burst" else None
        self._burst_high = config.burst.active_high
        self._cycles_per_step = max(1, round(step_s * config.burst.mains_hz))
        self._servo_pin = pin_factory.pin(config.servo.pin)
        self._active_high = config.relay.active_high
        s = config.servo
        self._min_pulse_s = s.min_pulse_width_ms / 1000.0
        self._max_pulse_s = s.max_pulse_width_ms / 1000.0
        self._frame_s = s.frame_width_ms / 1000.0
        self._min_angle = s.min_angle_deg
        self._max_angle = s.max_angle_deg
        self._angle_deg: float | None = None

    @property
    def relay_closed(self) -> bool:
        """True when the relay pin's level closes the relay."""
        high = bool(self._relay_pin.state)
        return high if self._active_high else not high

    def servo_angle_deg(self) -> float | None:
        """The angle the servo's pulses command; the last one while detached (the servo holds)."""
        duty = self._servo_pin.state
        if self._servo_pin.frequency and duty:
            pulse_s = duty * self._frame_s
            frac = (pulse_s - self._min_pulse_s) / (self._max_pulse_s - self._min_pulse_s)
            self._angle_deg = self._min_angle + frac * (self._max_angle - self._min_angle)
        return self._angle_deg

    def drive(self) -> float | None:
        """pwm_0_10v: the module's duty off the pin; ssr_burst: the share of this step's cycles fired; else None."""
        if self._pwm_pin is not None:
            duty = float(self._pwm_pin.state) if self._pwm_pin.frequency else 0.0
            return 1.0 - duty if self._pwm_inverted else duty
        if self._burst_pin is not None and self._burst is not None:
            fired = 0
            for _ in range(self._cycles_per_step):
                self._burst.run_cycles(1)
                fired += bool(self._burst_pin.state) == self._burst_high
            return fired / self._cycles_per_step
        return None

    def actuation(self, rest_deg: float) -> Actuation:
        """What the pins tell the plant; rest_deg until the servo was ever driven."""
        angle = self.servo_angle_deg()
        return Actuation(self.relay_closed, rest_deg if angle is None else angle, self.drive())


class LiveSimulation:
    """Steps the plant in real time (fixed steps of step_s), publishing to the GX simulator every second."""

    def __init__(
        self,
        day: ScenarioDay,
        gx: GxSimulator,
        wiring: MockPinWiring,
        *,
        start_s: float,
        step_s: float = 0.1,
        publish_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        record: bool = True,
    ) -> None:
        self.day = day
        self.gx = gx
        self.wiring = wiring
        self.start_s = start_s
        self.step_s = step_s
        self.publish_s = publish_s
        self._clock = clock
        self.plant = Plant(day, start_s=start_s, drive_from_pin=True)
        self._baseline = Plant(day, start_s=start_s)
        self._rest = Actuation(False, self.plant.servo_deg)
        self._run_rec, self._base_rec = RunRecorder(self.plant), RunRecorder(self._baseline)
        #: False: keep no per-step series (a long soak would run out of memory); results() then has none.
        self.record = record
        #: Values published instead of the plant's, by register name (fault injection: SoC 250, invalid 0 ...).
        self.overrides: dict[str, float | None] = {}
        self._steps = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.advance(1)  # settle the plant on its inputs,
        self.publish()  # and a GX has values from the start

    @property
    def sim_time_s(self) -> float:
        """Seconds since local midnight in the simulated day."""
        return self.start_s + self._steps * self.step_s

    @property
    def baseline(self) -> Plant:
        """The heater-off twin of the plant (same day, relay never closed)."""
        return self._baseline

    def start(self) -> LiveSimulation:
        """Start stepping in real time in a background thread."""
        self._thread = threading.Thread(target=self._run, name="pvheater-live-plant", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop stepping (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def advance(self, steps: int) -> None:
        """Step the plant and its heater-off twin, reading the pins before each step."""
        with self._lock:
            for _ in range(steps):
                self.plant.step(self.step_s, self.wiring.actuation(self._rest.servo_angle_deg))
                self._baseline.step(self.step_s, self._rest)
                if self.record:
                    self._run_rec.record()
                    self._base_rec.record()
                self._steps += 1
                per_publish = max(1, round(self.publish_s / self.step_s))
                if self._steps % per_publish == 0:
                    self.publish()

    def publish(self) -> None:
        """Hand the plant's values (with the overrides) to the GX simulator."""
        values = self.plant.gx_values()
        if self.overrides:
            values.update(self.overrides)
        self.gx.set_values(values)

    def _run(self) -> None:
        started = self._clock()
        while not self._stop.wait(self.step_s / 2):
            due = int((self._clock() - started) / self.step_s) - self._steps
            if due > 0:
                self.advance(due)

    def results(self) -> tuple[RunResult, RunResult]:
        """The run so far and its heater-off twin, as the bench's results."""
        with self._lock:
            end_s = self.sim_time_s
            runs = [
                rec.result(
                    self.day, name, start_s=self.start_s, end_s=end_s, dt_s=self.step_s,
                    start_soc_pct=rec.soc_pct[0] if len(rec) else rec.plant.soc_pct,
                )
                for rec, name in ((self._run_rec, "pvheater"), (self._base_rec, None))
            ]
        return runs[0], runs[1]

    def metrics(self) -> RunMetrics | None:
        """The bench's metrics of the run so far; None before the first step."""
        run, baseline = self.results()
        if not run.series.pv_used_w:
            return None
        return compute_metrics(run, baseline)


class SimulatedRig:
    """The whole installation in simulation: GX simulator and plant, mock pins, and the real reader, heater, loop.

    Everything pvheater runs is the real thing -- Modbus-TCP over loopback,
    gpiozero devices on mock pins, the control loop -- only the GX and the
    house behind it are simulated. `clock` stamps the reader's snapshots and is
    the loop's time: the wall clock for `run --simulate`, the simulated day's
    clock for tests (`step()` then advances plant and loop together).
    `calibration_file` gives the heater a measured calibration (default: the
    straight line between the knob angles); `record=False` keeps no per-step
    series (for runs of days).
    """

    def __init__(
        self,
        day: ScenarioDay,
        config: Config | None = None,
        *,
        start_s: float,
        step_s: float = 0.1,
        clock: Callable[[], float] | None = None,
        calibration_file: str | None = None,
        record: bool = True,
    ) -> None:
        from pvheater.actuators import Heater, make_pin_factory
        from pvheater.reader import GxReader
        from pvheater.registers import load_register_map
        from pvheater.service.loop import ControlLoop

        if config is not None:  # the simulated heater has the actuator the config selects
            day = replace(day, params=params_for_actuator(day.params, config))
        cfg = config_for_plant(day.params.heater, config)
        cfg = replace(
            cfg, gpio=replace(cfg.gpio, pin_factory="mock"),
            heater=replace(cfg.heater, calibration_file=calibration_file),
        )
        register_map = load_register_map()
        self.gx = GxSimulator(register_map, cfg.gx.unit_ids).start()
        self.gx.jitter_w = 1  # a real meter's flicker: a constant plant must not look frozen
        self.config = cfg = replace(cfg, gx=replace(cfg.gx, host="127.0.0.1", port=self.gx.port))
        self.pin_factory = make_pin_factory("mock")
        self.heater = Heater.from_config(cfg, pin_factory=self.pin_factory, burst_thread=False)
        wiring = MockPinWiring(self.pin_factory, cfg, burst=self.heater.actuator, step_s=step_s)
        self.live = LiveSimulation(day, self.gx, wiring, start_s=start_s, step_s=step_s, record=record)
        self.clock = clock if clock is not None else (lambda: self.live.sim_time_s)
        self.reader = GxReader(cfg.gx, register_map, clock=self.clock)
        self.loop = ControlLoop(self.reader, self.heater, cfg)

    @property
    def plant(self) -> Plant:
        """The simulated ESS and heater."""
        return self.live.plant

    def local_time(self) -> datetime.time:
        """The simulated time of day."""
        return time_of_day(self.live.sim_time_s)

    def step(self, seconds: float = 1.0) -> TickReport:
        """Simulated time: advance the plant by `seconds`, then run one tick of the real loop."""
        self.live.advance(round(seconds / self.live.step_s))
        return self.loop.tick(self.clock(), self.local_time())

    def close(self) -> None:
        """Heater off and pins released, reader closed, GX simulator stopped."""
        self.live.stop()
        try:
            self.loop.shutdown(self.clock())
        finally:
            self.heater.close()
            self.reader.close()
            self.gx.stop()

    def __enter__(self) -> SimulatedRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

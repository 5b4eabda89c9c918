"""The rig: a measurement source, a heater and a clock wired together -- the real ones or the simulated ones.

`Rig.real(cfg)` is the installation: the GX reader over Modbus-TCP, the
gpiozero relay and servo (relay open from the first instant), time.monotonic
and time.sleep. `Rig.simulated(day, cfg, ...)` is the same reader and the
same gpiozero devices, on mock pins, against the built-in GX simulator and
the simulated house (pvheater.sim.live.SimulatedRig), on the wall clock
(`realtime`, the plant steps in a thread) or in simulated time (`wait`
advances the plant). `Rig.dry_run(cfg)` is the real GX reader with the
dry-run heater (pvheater/service/dryrun.py: no pin library, no gpiozero
device at all) and no history, PID file or channel; `Rig.simulated(...,
dry_run=True)` puts the same dry-run heater on the simulated rig (its mock
pins stay as built: relay open). `pvheater run` and `pvheater calibrate-servo`
run one code path on either.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from pvheater.config import Config
from pvheater.control.timeofday import clock_is_set

if TYPE_CHECKING:
    from pvheater.actuators import Heater
    from pvheater.reader import GxReader
    from pvheater.service.dryrun import DryRunHeater
    from pvheater.sim.live import SimulatedRig
    from pvheater.sim.scenarios import ScenarioDay


def trusted_local_time() -> datetime.time | None:
    """The wall-clock time of day, or None while the clock is clearly unset (a Pi booting in 1970)."""
    now = datetime.datetime.now()
    return now.time() if clock_is_set(now.timestamp()) else None


class Rig:
    """A reader, a heater, a clock and a wait, and the time of day the guard sees; close() releases them."""

    def __init__(
        self,
        config: Config,
        reader: GxReader,
        heater: Heater | DryRunHeater,
        *,
        clock: Callable[[], float],
        wait: Callable[[float], None],
        local_time: Callable[[], datetime.time | None],
        simulation: SimulatedRig | None = None,
        close: Callable[[], None],
        dry_run: bool = False,
    ) -> None:
        #: The config the rig runs with (the simulation adjusts hardware, GX address, history and PID file).
        self.config = config
        self.reader = reader
        self.heater = heater
        self.clock = clock
        self.wait = wait
        self.local_time = local_time
        #: The simulated installation behind a simulated rig (plant, GX simulator, mock pins); None when real.
        self.simulation = simulation
        #: True when the heater is the dry-run one: no pin is driven, no history kept.
        self.dry_run = dry_run
        self._close = close

    @classmethod
    def real(cls, cfg: Config, *, calibrated: bool = True) -> Rig:
        """The GX and the pins of the config; `calibrated=False`: the heater ignores heater.calibration_file."""
        from pvheater.actuators import Heater
        from pvheater.reader import GxReader
        from pvheater.registers import load_register_map

        register_map = load_register_map()
        if not calibrated:
            cfg = replace(cfg, heater=replace(cfg.heater, calibration_file=None))
        heater = Heater.from_config(cfg)  # relay open from the first instant
        try:
            reader = GxReader(cfg.gx, register_map)
        except BaseException:
            heater.close()
            raise

        def close() -> None:
            try:
                heater.close()
            finally:
                reader.close()

        return cls(
            cfg, reader, heater, clock=time.monotonic, wait=time.sleep, local_time=trusted_local_time, close=close
        )

    @classmethod
    def dry_run_of(cls, cfg: Config) -> Rig:
        """The real GX of the config and the dry-run heater: no pins, no history, no PID file, no channel."""
        from pvheater.calibration.curve import calibration_from_config
        from pvheater.reader import GxReader
        from pvheater.registers import load_register_map
        from pvheater.service.dryrun import DryRunHeater

        heater = DryRunHeater(calibration_from_config(cfg))
        reader = GxReader(cfg.gx, load_register_map())
        return cls(
            _dry_run_config(cfg), reader, heater, clock=time.monotonic, wait=time.sleep,
            local_time=trusted_local_time, close=reader.close, dry_run=True,
        )

    @classmethod
    def simulated(
        cls,
        day: ScenarioDay,
        cfg: Config,
        *,
        start_s: float,
        realtime: bool = False,
        speed: float | None = None,
        dry_run: bool = False,
    ) -> Rig:
        """The simulated installation: on the wall clock (`realtime`) or in simulated time, paced at `speed` x real.

        `dry_run`: the loop drives the dry-run heater; the simulated heater's mock pins stay as built (relay open).

        It keeps no history, writes no PID file and fetches no forecast: a
        demo must not mix its rows into a real service's history; its
        hot-water mode is kept in a file of its own (simulated_state_file).
        """
        from pvheater.sim.live import SimulatedRig

        sim = SimulatedRig(day, cfg, start_s=start_s, clock=time.monotonic if realtime else None)
        c = sim.config
        config = replace(
            c,
            history=replace(c.history, file=None),
            service=replace(c.service, pid_file=None),
            forecast=replace(c.forecast, enabled=False),
            hot_water=replace(c.hot_water, state_file=simulated_state_file(c.hot_water.state_file)),
        )
        wait = time.sleep if realtime else simulated_wait(sim, speed)
        heater: Heater | DryRunHeater = sim.heater
        if dry_run:
            from pvheater.service.dryrun import DryRunHeater

            heater = DryRunHeater(sim.heater.calibration)
        return cls(
            config, sim.reader, heater, clock=sim.clock, wait=wait, local_time=sim.local_time,
            simulation=sim, close=sim.close, dry_run=dry_run,
        )

    def close(self) -> None:
        """Relay open, pins released, reader closed (and the simulator stopped)."""
        self._close()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def simulated_state_file(state_file: str) -> str:
    """The hot-water state file of a simulated run, beside the real one: a demo's mode never reaches the service."""
    stem, dot, ext = state_file.rpartition(".")
    return f"{stem}.simulate.{ext}" if dot else f"{state_file}.simulate"


def _dry_run_config(cfg: Config) -> Config:
    """The config of a dry run: no history (no invented heater energy), no PID file, no local channel."""
    return replace(
        cfg,
        history=replace(cfg.history, file=None),
        service=replace(cfg.service, pid_file=None, socket_file=None),
    )


def simulated_wait(sim: SimulatedRig, speed: float | None = None) -> Callable[[float], None]:
    """A wait that advances the simulated plant; with speed, also sleeps seconds / speed of real time."""

    def wait(seconds: float) -> None:
        sim.live.advance(max(1, round(seconds / sim.live.step_s)))
        if speed is not None:
            time.sleep(seconds / speed)

    return wait

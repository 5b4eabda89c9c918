"""The dry-run heater: the HeaterPort of `pvheater run --dry-run`, which remembers and logs what it would do.

It creates no gpiozero device and opens no pin library at all (not even mock
pins): relay and knob exist only as two attributes. The loop, the controller
and the guard run unchanged on top of it, so the log and the status line show
exactly what the real heater would have been told. A dry run keeps no history
(no heater energy is ever recorded for power nobody switched), writes no PID
file and opens no local channel, so it can run beside a real service.
"""

from __future__ import annotations

import logging

from pvheater.calibration.curve import Calibration
from pvheater.control.messages import SAFE_OFF, HeaterOutput

log = logging.getLogger("pvheater")


class DryRunHeater:
    """A heater without pins: relay_on and servo_angle_deg are what the real one would have been set to."""

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration
        self.relay_on = False
        self.servo_angle_deg: float | None = None
        #: How many times the relay would have switched (both edges).
        self.switchings = 0

    def apply(self, output: HeaterOutput, now_s: float) -> None:
        """Remember relay and knob angle; log each relay change as 'dry run: would ...'."""
        cal = self.calibration
        angle_deg = cal.angle_for(output.power_w) if output.relay_on else cal.zero_angle_deg
        if output.relay_on != self.relay_on:
            self.switchings += 1
            if output.relay_on:
                log.info("dry run: would close the relay, knob to %.0f deg for %.0f W (no pin touched)",
                         angle_deg, output.power_w)
            else:
                log.info("dry run: would open the relay, knob to zero (no pin touched)")
        self.relay_on = output.relay_on
        self.servo_angle_deg = angle_deg

    @property
    def input_value(self) -> float | None:
        """The knob angle the real heater would have been set to."""
        return self.servo_angle_deg

    def tick(self, now_s: float) -> None:
        """Nothing to do: no servo pulses to stop."""

    def safe_off(self, now_s: float) -> None:
        """Relay 'open', knob 'at zero'."""
        self.apply(SAFE_OFF, now_s)

    def close(self) -> None:
        """Nothing to release."""
        self.relay_on = False

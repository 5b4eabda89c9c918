"""A hot-water tank behind the heater: volume, temperature, standing losses, thermostat, draw-offs.

One well-mixed volume of water. The element puts its power into the water while
the thermostat is closed; the thermostat opens at ``setpoint_c`` and closes again
``hysteresis_k`` below it. Standing losses follow the difference to the room; a
draw-off replaces hot water by cold (``litres_per_min`` at a mixing temperature,
so a hotter tank gives less hot water for the same shower). The plant asks
:meth:`Tank.element_w` what the element draws for the power the regulator would
give, then advances the water with :meth:`Tank.advance`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pvheater.control.timeofday import hhmm_seconds

#: Heat capacity of water, Wh per litre and kelvin.
WATER_WH_PER_L_K = 4186.0 / 3600.0


@dataclass(frozen=True)
class DrawOff:
    """Hot water taken: start (s since midnight), duration, litres per minute at the tap temperature."""

    start_s: float
    duration_s: float
    litres_per_min: float
    tap_c: float = 40.0


def shower(at: str, minutes: float = 8.0, litres_per_min: float = 9.0) -> DrawOff:
    """A shower at HH:MM (40 degC at the head)."""
    return DrawOff(hhmm_seconds(at), minutes * 60.0, litres_per_min, 40.0)


def tap(at: str, minutes: float = 1.0, litres_per_min: float = 6.0) -> DrawOff:
    """A kitchen tap at HH:MM (45 degC)."""
    return DrawOff(hhmm_seconds(at), minutes * 60.0, litres_per_min, 45.0)


#: A family's day: showers in the morning and the evening, taps through the day.
FAMILY_DRAWS: tuple[DrawOff, ...] = (
    shower("06:40"), shower("07:05"), tap("08:00"), tap("12:30"), tap("13:10", 2.0),
    tap("18:30", 2.0), shower("19:30"), shower("21:00"),
)


@dataclass(frozen=True)
class TankParams:
    """The tank and its thermostat."""

    volume_l: float = 150.0
    start_c: float = 45.0
    setpoint_c: float = 60.0
    hysteresis_k: float = 7.0
    #: Standing loss at a 40 K difference to the room (a 150 l tank: ~1.5 kWh a day).
    loss_w_at_40k: float = 60.0
    room_c: float = 20.0
    cold_c: float = 12.0
    draws: tuple[DrawOff, ...] = FAMILY_DRAWS


class Tank:
    """The tank's state: temperature, thermostat, and energy counters (Wh)."""

    def __init__(self, params: TankParams) -> None:
        self.params = params
        self.temp_c = float(params.start_c)
        self.thermostat_closed = self.temp_c < params.setpoint_c
        self.heat_in_wh = 0.0
        self.loss_wh = 0.0
        self.drawn_wh = 0.0
        #: Thermostat events: (time_s, True for closed / False for open).
        self.events: list[tuple[float, bool]] = []
        self._draws = sorted(params.draws, key=lambda d: d.start_s)

    def element_w(self, offered_w: float) -> float:
        """What the element draws when the regulator would give offered_w: 0 while the thermostat is open."""
        return offered_w if self.thermostat_closed else 0.0

    def draw_lpm(self, time_s: float) -> tuple[float, float]:
        """Hot-water flow at the tap now (l/min) and its tap temperature."""
        t = time_s % 86_400.0
        for d in self._draws:
            if d.start_s <= t < d.start_s + d.duration_s:
                return d.litres_per_min, d.tap_c
        return 0.0, 0.0

    def advance(self, time_s: float, dt_s: float, element_w: float) -> None:
        """Move the water dt_s seconds with element_w going in; the thermostat acts at the end of the step."""
        p = self.params
        cap_wh_k = p.volume_l * WATER_WH_PER_L_K
        h = dt_s / 3600.0
        loss_w = p.loss_w_at_40k * (self.temp_c - p.room_c) / 40.0
        lpm, tap_c = self.draw_lpm(time_s)
        drawn_wh = 0.0
        if lpm > 0.0 and self.temp_c > p.cold_c:
            # hot litres needed for lpm at tap_c; the tank is refilled with cold water
            hot_frac = min(1.0, max(0.0, (tap_c - p.cold_c) / (self.temp_c - p.cold_c)))
            litres = lpm * hot_frac * dt_s / 60.0
            drawn_wh = litres * WATER_WH_PER_L_K * (self.temp_c - p.cold_c)
        self.temp_c += (element_w * h - loss_w * h - drawn_wh) / cap_wh_k
        self.heat_in_wh += element_w * h
        self.loss_wh += loss_w * h
        self.drawn_wh += drawn_wh
        end_s = time_s + dt_s
        if self.thermostat_closed and self.temp_c >= p.setpoint_c:
            self.thermostat_closed = False
            self.events.append((end_s, False))
        elif not self.thermostat_closed and self.temp_c <= p.setpoint_c - p.hysteresis_k:
            self.thermostat_closed = True
            self.events.append((end_s, True))

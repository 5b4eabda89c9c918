"""Where the sun is: elevation and azimuth from latitude, longitude and the instant. Pure math, no I/O, no clock.

The equations are the low-precision solar coordinates NOAA's solar calculator
uses (after Meeus, *Astronomical Algorithms*): mean longitude and anomaly of
the sun, equation of centre, apparent longitude, obliquity of the ecliptic,
declination and the equation of time, as polynomials in Julian centuries since
J2000.0. Good to well under a minute of time for sunrise and sunset between
the polar circles, for years 1900-2100.

Everything is computed in UTC: callers pass aware datetimes (any zone) or UTC
epoch seconds.

*Elevation* here is the geometric elevation of the sun's centre (no
refraction). The published sunrise and sunset are the moments the centre is at
-0.833 deg: 34' of refraction at the horizon plus 16' of the sun's radius.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

#: Geometric elevation of the sun's centre at the published sunrise and sunset, degrees.
SUNRISE_ELEVATION_DEG = -0.833

_J2000_JD = 2451545.0
_UNIX_EPOCH_JD = 2440587.5
_DAY_S = 86400.0


@dataclass(frozen=True)
class SunPosition:
    """The sun seen from a place at one instant."""

    #: Geometric elevation of the sun's centre above the horizon, degrees (negative: below).
    elevation_deg: float
    #: Azimuth, degrees clockwise from north.
    azimuth_deg: float


def _utc_seconds(when: datetime.datetime | float) -> float:
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            raise ValueError("sun positions need an aware datetime (or UTC epoch seconds), got a naive one")
        return when.timestamp()
    return float(when)


def _julian_century(utc_s: float) -> float:
    jd = _UNIX_EPOCH_JD + utc_s / _DAY_S
    return (jd - _J2000_JD) / 36525.0


def _declination_and_eot(t: float) -> tuple[float, float]:
    """Apparent declination (radians) and equation of time (minutes) at Julian century t."""
    mean_long = math.radians((280.46646 + t * (36000.76983 + t * 0.0003032)) % 360.0)
    anomaly = math.radians(357.52911 + t * (35999.05029 - 0.0001537 * t))
    ecc = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    centre = (
        math.sin(anomaly) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * anomaly) * (0.019993 - 0.000101 * t)
        + math.sin(3 * anomaly) * 0.000289
    )
    omega = math.radians(125.04 - 1934.136 * t)
    apparent_long = math.radians(math.degrees(mean_long) + centre - 0.00569 - 0.00478 * math.sin(omega))
    mean_obliquity = 23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0
    obliquity = math.radians(mean_obliquity + 0.00256 * math.cos(omega))
    declination = math.asin(math.sin(obliquity) * math.sin(apparent_long))
    y = math.tan(obliquity / 2) ** 2
    eot_rad = (
        y * math.sin(2 * mean_long)
        - 2 * ecc * math.sin(anomaly)
        + 4 * ecc * y * math.sin(anomaly) * math.cos(2 * mean_long)
        - 0.5 * y * y * math.sin(4 * mean_long)
        - 1.25 * ecc * ecc * math.sin(2 * anomaly)
    )
    return declination, 4.0 * math.degrees(eot_rad)


def sun_position(when: datetime.datetime | float, latitude_deg: float, longitude_deg: float) -> SunPosition:
    """Elevation and azimuth of the sun at an instant (aware datetime or UTC epoch seconds)."""
    utc_s = _utc_seconds(when)
    declination, eot_min = _declination_and_eot(_julian_century(utc_s))
    minutes = (utc_s % _DAY_S) / 60.0
    true_solar_min = (minutes + eot_min + 4.0 * longitude_deg) % 1440.0
    hour_angle = math.radians(true_solar_min / 4.0 - 180.0)
    lat = math.radians(latitude_deg)
    cos_zenith = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(declination) * math.cos(hour_angle)
    zenith = math.acos(max(-1.0, min(1.0, cos_zenith)))
    elevation = 90.0 - math.degrees(zenith)
    # Azimuth from north, clockwise: atan2 of the east and north components of the sun's direction.
    east = -math.cos(declination) * math.sin(hour_angle)
    north = math.cos(lat) * math.sin(declination) - math.sin(lat) * math.cos(declination) * math.cos(hour_angle)
    azimuth = math.degrees(math.atan2(east, north)) % 360.0
    return SunPosition(elevation_deg=elevation, azimuth_deg=azimuth)


def sun_elevation_deg(when: datetime.datetime | float, latitude_deg: float, longitude_deg: float) -> float:
    """Geometric elevation of the sun's centre, degrees, at an instant."""
    return sun_position(when, latitude_deg, longitude_deg).elevation_deg

"""Sun position against published sunrise and sunset times; the relay guard's sun rule."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from pvheater.config import Config, config_from_dict
from pvheater.control.guard import GuardSettings, GuardState, step
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeatRequest
from pvheater.control.sun import SUNRISE_ELEVATION_DEG, sun_elevation_deg, sun_position
from pvheater.errors import ConfigError

# Published sunrise and sunset, local clock time, rounded to the minute (standard definition: the
# sun's upper limb on the horizon with standard refraction, i.e. its centre at -0.833 deg).
# Sources:
# - New York, Miami, Juneau, Sydney on 2024-06-20: the times published for the 2024 June solstice
#   in "Thursday marks the earliest summer solstice in 228 years", Scripps News / KJRH, 2024-06-20.
# - London 2024-06-20 and 2023-12-22: "When will it start getting lighter? UK sunrise and sunset
#   times", the i newspaper (inews.co.uk), December 2023.
# Coordinates: the cities' usual reference points (city hall / centre).
REFERENCES = [
    ("New York", 40.7128, -74.0060, "America/New_York", datetime.date(2024, 6, 20), "05:25", "20:30"),
    ("Miami", 25.7617, -80.1918, "America/New_York", datetime.date(2024, 6, 20), "06:30", "20:15"),
    ("Juneau", 58.3019, -134.4197, "America/Juneau", datetime.date(2024, 6, 20), "03:51", "22:08"),
    ("Sydney", -33.8688, 151.2093, "Australia/Sydney", datetime.date(2024, 6, 20), "07:00", "16:54"),
    ("London", 51.5074, -0.1278, "Europe/London", datetime.date(2024, 6, 20), "04:43", "21:21"),
    ("London", 51.5074, -0.1278, "Europe/London", datetime.date(2023, 12, 22), "08:04", "15:53"),
]


def _local(date: datetime.date, hhmm: str, zone: str) -> datetime.datetime:
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return datetime.datetime.combine(date, datetime.time(hours, minutes), tzinfo=ZoneInfo(zone))


def _crossing(near: datetime.datetime, lat: float, lon: float, rising: bool,
              elevation_deg: float = SUNRISE_ELEVATION_DEG) -> datetime.datetime:
    """The instant within 1 h of `near` at which the sun's centre passes elevation_deg (bisection, to 1 s)."""
    lo, hi = near.timestamp() - 3600.0, near.timestamp() + 3600.0

    def above(t: float) -> bool:
        return sun_elevation_deg(t, lat, lon) >= elevation_deg

    assert above(lo) != above(hi) and above(hi) == rising, "no crossing within the hour"
    while hi - lo > 1.0:
        mid = (lo + hi) / 2
        if above(mid) == rising:
            hi = mid
        else:
            lo = mid
    return datetime.datetime.fromtimestamp((lo + hi) / 2, tz=datetime.UTC)


@pytest.mark.parametrize(
    ("place", "lat", "lon", "zone", "date", "rise", "set_"), REFERENCES, ids=[f"{r[0]}-{r[4]}" for r in REFERENCES]
)
def test_sunrise_and_sunset_within_2_minutes_of_published(
    place: str, lat: float, lon: float, zone: str, date: datetime.date, rise: str, set_: str
) -> None:
    # A published minute covers [hh:mm, hh:mm + 1 min) or is rounded: compare with its middle.
    half_minute = datetime.timedelta(seconds=30)
    published_rise, published_set = _local(date, rise, zone) + half_minute, _local(date, set_, zone) + half_minute
    assert abs(_crossing(published_rise, lat, lon, True) - published_rise) <= datetime.timedelta(minutes=2)
    assert abs(_crossing(published_set, lat, lon, False) - published_set) <= datetime.timedelta(minutes=2)


def test_polar_day_and_night() -> None:
    tromso = (69.65, 18.96)
    for date, up in ((datetime.date(2024, 6, 21), True), (datetime.date(2024, 12, 21), False)):
        start = datetime.datetime.combine(date, datetime.time(0, 0), tzinfo=datetime.UTC)
        elevations = [sun_elevation_deg(start + datetime.timedelta(minutes=10 * k), *tromso) for k in range(144)]
        assert all((e > SUNRISE_ELEVATION_DEG) == up for e in elevations)


def test_noon_elevation_and_azimuth() -> None:
    # New York, 2024-06-20 at local solar noon (16:57 UTC): about 73 deg high, due south.
    pos = sun_position(datetime.datetime(2024, 6, 20, 16, 57, tzinfo=datetime.UTC), 40.7128, -74.0060)
    assert pos.elevation_deg == pytest.approx(90 - 40.7128 + 23.44, abs=0.3)
    assert pos.azimuth_deg == pytest.approx(180.0, abs=2.0)
    # Morning sun stands in the east, evening sun in the west.
    morning = sun_position(datetime.datetime(2024, 6, 20, 12, 0, tzinfo=datetime.UTC), 40.7128, -74.0060)
    assert 45 < morning.azimuth_deg < 135


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        sun_elevation_deg(datetime.datetime(2024, 6, 20, 12, 0), 48.0, 17.0)


def test_epoch_seconds_and_datetimes_agree() -> None:
    when = datetime.datetime(2024, 6, 20, 9, 30, tzinfo=datetime.UTC)
    assert sun_elevation_deg(when.timestamp(), 48.0, 17.0) == sun_elevation_deg(when, 48.0, 17.0)
    assert sun_elevation_deg(when, 48.0, 17.0) > 5.0
    assert sun_elevation_deg(when.replace(hour=1), 48.0, 17.0) < SUNRISE_ELEVATION_DEG


# --- the guard's sun rule ------------------------------------------------------------------

BRATISLAVA = {"latitude_deg": 48.1486, "longitude_deg": 17.1077}


def _fresh(t: float) -> Measurements:
    return Measurements(time_s=t, values={"battery_soc_pct": 99.0, "grid_l1_w": -500.0, "battery_power_w": 0.0})


def _settings(**site: float) -> GuardSettings:
    cfg = config_from_dict({"site": {**BRATISLAVA, **site}, "relay": {"confirm_samples": 2}})
    return GuardSettings.from_config(cfg)


def _run(settings: GuardSettings, utc: datetime.datetime | None, local_time: datetime.time | None) -> str:
    state, out = GuardState(), None
    want = HeatRequest(True, 500.0, "surplus")
    utc_s = None if utc is None else utc.timestamp()
    for t in range(3):
        state, out = step(state, want, _fresh(float(t)), settings, float(t), local_time, utc_s=utc_s)
    assert out is not None
    return ("ON " if out.relay_on else "off ") + out.reason


def test_guard_heats_by_day_and_not_at_night() -> None:
    settings = _settings()
    assert settings.has_sun_rule
    noon = datetime.datetime(2024, 6, 20, 11, 0, tzinfo=datetime.UTC)
    night = datetime.datetime(2024, 6, 20, 1, 0, tzinfo=datetime.UTC)
    assert _run(settings, noon, datetime.time(13, 0)).startswith("ON ")
    assert _run(settings, night, datetime.time(3, 0)).startswith("off sun below -0.833 deg")


def test_guard_min_elevation_cuts_the_weak_hours() -> None:
    # Bratislava sunrise 2024-06-20 is about 02:51 UTC; at 03:15 UTC the sun is up but low.
    early = datetime.datetime(2024, 6, 20, 3, 15, tzinfo=datetime.UTC)
    assert _run(_settings(), early, datetime.time(5, 15)).startswith("ON ")
    assert _run(_settings(min_sun_elevation_deg=10.0), early, datetime.time(5, 15)).startswith("off sun below 10 deg")


@pytest.mark.parametrize(("utc", "local_time"), [(None, datetime.time(12, 0)), ("noon", None)])
def test_guard_untrusted_clock_means_no_heating_with_a_sun_rule(
    utc: str | None, local_time: datetime.time | None
) -> None:
    when = None if utc is None else datetime.datetime(2024, 6, 20, 11, 0, tzinfo=datetime.UTC)
    assert _run(_settings(), when, local_time) == "off clock not trusted: sun position cannot be checked"


def test_guard_without_a_site_ignores_the_sun() -> None:
    settings = GuardSettings.from_config(config_from_dict({"relay": {"confirm_samples": 2}}))
    assert not settings.has_sun_rule
    assert _run(settings, None, None).startswith("ON ")


def test_site_needs_both_coordinates() -> None:
    with pytest.raises(ConfigError, match=r"site\.longitude_deg: set both"):
        config_from_dict({"site": {"latitude_deg": 48.0}})
    assert not Config().site.located

"""The plant family: seeded randomiser, and the real loop closed on family plants in simulated time."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from pvheater.sim import family as F


def test_random_plants_are_seeded_and_within_the_family_ranges() -> None:
    assert F.random_spec(7) == F.random_spec(7)
    assert F.random_spec(7) != F.random_spec(8)
    specs = [F.random_spec(seed) for seed in range(60)]
    for s in specs:
        p = s.params
        assert 0.5 <= p.inverter.tau_s <= 3.0
        assert 1000.0 <= p.heater.max_power_w <= 4000.0
        assert 0.0 <= s.dead_zone_frac <= 0.15 and s.curve in F.CURVES and s.taper in F.TAPERS
        assert 0.0 <= s.accept_w <= 800.0
        assert s.gx_period_s in (1.0, 1.5, 2.0) and 0.0 <= s.gx_jitter_s <= 0.3
        assert 300 <= s.duration_s <= 900 and len(s.pv_w) == len(s.house_w) == s.duration_s
        assert all(5.0 <= b - a <= 30.0 for a, b in s.outages_s)
    assert {s.curve for s in specs} == set(F.CURVES) and {s.kind for s in specs} == {"steps", "broken"}
    assert any(s.outages_s for s in specs) and any(s.read_failures for s in specs)


@pytest.mark.parametrize("curve", F.CURVES)
def test_regulator_shapes_are_monotonic_with_their_dead_zone(curve: str) -> None:
    fracs = [F.shape_power_fraction(k / 100, curve, 0.1) for k in range(101)]
    assert all(b >= a for a, b in itertools.pairwise(fracs))
    assert fracs[10] == 0.0 and fracs[11] > 0.0 and fracs[100] == 1.0


def test_the_plant_gives_the_shapes_power_at_the_commanded_angle() -> None:
    spec = replace(F.random_spec(5), curve="log", dead_zone_frac=0.1)
    plant = F.FamilyPlant(F.spec_day(spec), spec, F.START_S)
    h = spec.params.heater
    angle = h.knob_zero_deg + 0.6 * (h.knob_full_deg - h.knob_zero_deg)
    for _ in range(8):
        plant.step_real(0.25, F.Actuation(True, angle))
    assert plant.heater_w == pytest.approx(h.max_power_w * F.shape_power_fraction(0.6, "log", 0.1), rel=1e-6)


def _kettle_and_outage(seed: int) -> tuple[F.FamilySpec, F.FamilyRun, list[F.Response], list[F.Response]]:
    """PV a little above heater + house; a 2 kW kettle 120-240 s; a read failure; a 15 s GX outage at 300 s."""
    heater_w = F.random_spec(seed).heater_max_w
    n = 420
    pv = [heater_w + 600.0] * n
    house = [200.0] * n
    for i in range(120, 240):
        house[i] += 2000.0
    a = F.START_S + 300.0
    events = (("load_start", F.START_S + 120), ("load_end", F.START_S + 240), ("outage_end", a + 15.0))
    spec = F.directed_spec(seed, pv, house, outages_s=((a, a + 15.0),), read_failures=frozenset({60}), events=events)
    base = F.run_spec(spec, "off").run
    run = F.run_spec(spec, "pvheater")
    floor = F.responses(spec, F.run_spec(spec, "oracle_late"), base)
    return spec, run, F.responses(spec, run, base), floor


@pytest.mark.parametrize("seed", [1, 2, 3])  # linear, phase-angle and log-taper regulators, lags 2.0/1.6/3.0 s
def test_closed_loop_on_family_plants(seed: int) -> None:
    spec, run, responses, floor = _kettle_and_outage(seed)
    by_kind = {r.kind: r for r in responses}
    floor_kind = {r.kind: r for r in floor}
    # relay closes with PV hidden: 90 % of the surplus within 10 s
    first = next(r for r in responses if r.kind == "relay_close")
    assert first.response_s is not None and first.response_s <= 10.0
    # the kettle ends: its power is back in the heater within 3 s (+1 s margin for a 1.5 s GX), little draw
    end = by_kind["load_end"]
    assert end.response_s is not None and end.response_s <= 4.0
    # the heater's rise shows as import while the inverter catches up: the 2 s late oracle pays it too
    assert end.draw_wh <= floor_kind["load_end"].draw_wh + 0.5
    # the kettle starts: the heater gives way within a sample or two, about as fast as the late oracle
    assert by_kind["load_start"].draw_wh <= 1.5 * floor_kind["load_start"].draw_wh + 0.2
    # the one failed read at tick 60 held the power: no switching there; a 15 s outage: back within 10 s
    out = by_kind["outage_end"]
    assert out.response_s is not None and out.response_s <= 10.0
    assert run.switchings == 3  # on at start, off in the outage, on after it
    assert run.under_load == 0  # the knob was at zero each time the relay switched
    s = run.run.series
    k = F._index(run.run, F.START_S + 62.0)
    assert s.heater_w[k] > 0.5 * min(s.surplus_w[k], spec.heater_max_w)


@pytest.mark.parametrize("actuator", ["pwm_0_10v", "ssr_burst"])
def test_closed_loop_on_a_family_plant_with_each_actuator(actuator: str) -> None:
    spec, servo, _, floor = _kettle_and_outage(1)
    driven = F.with_actuator(spec, actuator)
    assert driven.params.heater.regulator.actuator == actuator
    base = F.run_spec(spec, "off").run
    run = F.run_spec(driven, "pvheater")
    by_kind = {r.kind: r for r in F.responses(driven, run, base)}
    floor_kind = {r.kind: r for r in floor}
    first = by_kind["relay_close"]
    assert first.response_s is not None and first.response_s <= 10.0
    end = by_kind["load_end"]
    assert end.response_s is not None and end.response_s <= 4.0
    assert by_kind["load_start"].draw_wh <= 1.5 * floor_kind["load_start"].draw_wh + 0.2
    assert run.switchings == 3 and run.under_load == 0  # the input was at zero each time the relay switched
    assert run.servo_moves == 0 and run.servo_deg == 0.0
    assert run.run.energy.heater_wh > 0.9 * servo.run.energy.heater_wh
    # netting battery and grid over each second can only lower the draw; for the SSR it removes the cycles'
    # ripple within each second, which the 0.25 s steps count as import
    stepwise = F.compute_metrics(run.run, base).draw_kwh
    netted = F.netted_draw_kwh(run.run, base)
    assert netted <= stepwise + 1e-12
    if actuator == "ssr_burst":
        assert run.wear["ssr_switch_ons"] > 0 and 1 <= run.wear["longest_on_block"] <= 49
        assert netted < stepwise


def _steady(seed: int, n: int = 300, **kw: object) -> tuple[F.FamilySpec, F.FamilyRun]:
    """A family plant with PV a little above heater + house all along, and the given failures or outages."""
    heater_w = F.random_spec(seed).heater_max_w
    spec = F.directed_spec(seed, [heater_w + 600.0] * n, [200.0] * n, **kw)  # type: ignore[arg-type]
    return spec, F.run_spec(spec, "pvheater")


def _poll_s(spec: F.FamilySpec, k: int) -> float:
    return F.START_S + spec.poll_offset_s + k  # the loop polls once a second from its offset


@pytest.mark.parametrize("seed", [1, 6, 5])  # GX publishing every 1 s, 1 s, 2 s
def test_one_or_two_failed_reads_in_a_row_keep_heating_with_no_switching(seed: int) -> None:
    """The relay stays closed through one or two failed reads and the power is not raised on the old snapshot. With
    a GX publishing every second the power holds all through; with one publishing every 2 s the snapshot held for
    two failed reads can pass stale_after_s - zero_settle_s - poll.interval_s (3 s), where the knob parks at zero
    for a tick as for any aging data (so that an open at the bound would break no current): back at the next read."""
    spec, run = _steady(seed, read_failures=frozenset({100, 101, 160, 200, 201}))
    assert run.switchings == 1 and run.under_load == 0  # on at the start, never off
    s = run.run.series
    first_on = run.relay.index(True)
    assert all(run.relay[first_on:])
    for k, last in ((100, 101), (160, 160), (200, 201)):
        before = s.heater_w[F._index(run.run, _poll_s(spec, k) - 0.5)]
        assert before > 0.5 * spec.heater_max_w
        through = range(F._index(run.run, _poll_s(spec, k)), F._index(run.run, _poll_s(spec, last + 1)))
        assert max(s.heater_w[i] for i in through) <= 1.02 * before + 20.0  # not raised on the held snapshot
        if spec.gx_period_s == 1.0:
            assert min(s.heater_w[i] for i in through) >= 0.9 * before  # held all through
        back = F._index(run.run, _poll_s(spec, last + 1) + 0.75)  # the next good read is applied
        assert s.heater_w[back] >= 0.9 * before


@pytest.mark.parametrize("seed", [1, 2])
def test_a_long_read_failure_opens_the_relay_when_an_outage_would(seed: int) -> None:
    """20 failed reads in a row and a 20 s GX outage (nothing published) from the same moment: the relay opens at
    the same instant (the staleness bound on the last good snapshot), at zero current, and closes again after."""
    spec, _ = _steady(seed)
    t0 = _poll_s(spec, 149) + 0.01  # just after the last good read
    _, failing = _steady(seed, read_failures=frozenset(range(150, 170)))
    _, outage = _steady(seed, outages_s=((t0, t0 + 20.0),))
    k0 = F._index(failing.run, t0)
    opened_fail = next(k for k in range(k0, len(failing.relay)) if not failing.relay[k])
    opened_outage = next(k for k in range(k0, len(outage.relay)) if not outage.relay[k])
    assert opened_fail == opened_outage
    stale_s = 5.0  # relay.stale_after_s by default: the last good snapshot is up to a GX period older than t0
    assert stale_s - spec.gx_period_s - spec.gx_jitter_s < (opened_fail - k0) * F.DT_S <= stale_s + 1.0
    for run in (failing, outage):
        assert run.switchings == 3 and run.under_load == 0  # on, off at the bound with the knob at zero, on again

"""A short soak in the default run: two sunny hours of the real loop over Modbus with one fault of each kind.

The full week is `python bench/soak.py` (minutes; its numbers are in BENCHMARKS.md).
"""

from __future__ import annotations

from pathlib import Path

from pvheater.sim.soak_engine import FAULT_KINDS, Soak, format_result


def test_two_hours_with_every_fault_keep_the_acceptance(tmp_path: Path) -> None:
    result = Soak(1, tmp_path / "soak.db", seed=3, window_s=(11 * 3600.0, 13 * 3600.0)).run()
    report = format_result(result)
    assert set(result.faults) == set(FAULT_KINDS), report
    assert result.heating_beyond_limit_s == 0, report
    assert result.heating_stale_s == 0, report
    assert result.rows_in_db == result.rows_handed and result.row_gaps == 0 and result.rows_dropped == 0, report
    assert result.restarts == 2 and result.runs == 3, report
    assert result.error_log_lines == result.gx_error_events, report  # every GX error episode logs once
    heater_pct, heating_pct, _ = result.week_errors_pct()
    assert abs(heater_pct) <= 2.0 and abs(heating_pct) <= 2.0, report
    (day,) = result.stats
    assert day.switchings == result.truth[0].toggles, report
    assert result.ok, report

"""A short soak in the default run: two sunny hours of the real loop over Modbus with one fault of each kind.

The full week is `python bench/soak.py` (minutes; its numbers are in BENCHMARKS.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_the_soak_script_writes_benchmarks_md_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    bench_dir = Path(__file__).parents[1] / "bench"
    monkeypatch.syspath_prepend(str(bench_dir))  # as `python bench/soak.py` has it: bench/report.py importable
    spec = importlib.util.spec_from_file_location("bench_soak", bench_dir / "soak.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def short(days: int, db: Path, seed: int) -> Soak:  # five simulated minutes, not a week
        return Soak(1, db, seed=seed, window_s=(12 * 3600.0, 12 * 3600.0 + 300.0))

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nkept\n", encoding="utf-8")
    bench.main(["--days", "1", "--out", str(out)], make_soak=short)
    assert out.read_text(encoding="utf-8") == "# Benchmarks\n\nkept\n"  # the default only prints
    bench.main(["--days", "1", "--out", str(out), "--write"], make_soak=short)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nkept\n") and "<!-- soak -->" in text and "<!-- /soak -->" in text


def test_readme_says_what_the_soak_costs_and_that_it_writes_only_with_write() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines() if "bench/soak.py" in line]
    assert lines and not any("~10 min" in line for line in lines)  # measured: ~4.5 min of one core per day
    assert any("--days 1" in line and "5 min" in line for line in lines)
    assert any("--write" in line and "BENCHMARKS.md" in line for line in lines)

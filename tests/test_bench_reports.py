"""The bench scripts' report merging: a partial rerun keeps the rows it did not rerun (bench/actuators.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from pvheater.sim.scenarios import scenario_names

BENCH = Path(__file__).parents[1] / "bench"


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))  # as `python bench/x.py` has it: bench/report.py importable
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(bench: ModuleType, scenario: str, actuator: str, capture: str) -> tuple[str, ...]:
    cells = [scenario, actuator] + ["1"] * (len(bench.HEADER) - 2)
    cells[bench.HEADER.index("capture %")] = capture
    return tuple(cells)


def test_a_rerun_of_some_scenarios_keeps_every_other_row_of_the_actuator_table(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _load("actuators", monkeypatch)
    old_rows = [_row(bench, s, a, "90.0") for s in scenario_names() for a in bench.ACTUATORS]
    report = "# Benchmarks\n\n" + bench.section(old_rows, 100.0) + "\n"
    before = bench.existing_rows(report)
    assert len(before) == len(old_rows)

    rerun = scenario_names()[-2:]  # e.g. `--scenario offgrid --scenario three_multis`
    fresh = {(s, a): _row(bench, s, a, "99.0") for s in rerun for a in bench.ACTUATORS}
    rows, kept = bench.merged_rows(fresh, before, (False,))

    assert [(r[0], r[1]) for r in rows] == [(r[0], r[1]) for r in old_rows]  # whole, in canonical order
    assert kept == len(old_rows) - len(fresh)
    capture = bench.HEADER.index("capture %")
    assert {r[capture] for r in rows if r[0] in rerun} == {"99.0"}
    assert {r[capture] for r in rows if r[0] not in rerun} == {"90.0"}
    text = bench.section(rows, 5.0, "python bench/actuators.py --scenario x", kept)
    assert f"the other {kept} rows are kept" in text

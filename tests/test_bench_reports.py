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


def test_a_rerun_keeps_the_sections_hand_written_notes_and_replaces_the_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = _load("report", monkeypatch)
    begin, end = "<!-- x:begin -->", "<!-- x:end -->"
    path = tmp_path / "BENCHMARKS.md"
    notes = "<!-- notes -->\nTried: a faster probe; it cost 2 points.\n<!-- /notes -->"
    path.write_text(f"# B\n\n{begin}\n## X\n\n{notes}\n\n| a | 1 |\n{end}\n\n## after\n", encoding="utf-8")
    report.write_section(path, f"{begin}\n## X\n\n| a | 2 |\n{end}", begin, end)
    text = path.read_text(encoding="utf-8")
    assert "| a | 2 |" in text and "| a | 1 |" not in text
    assert text.count("Tried: a faster probe") == 1
    order = [text.index(x) for x in ("## X", "Tried:", "| a | 2 |", end, "## after")]
    assert order == sorted(order)


def test_a_family_run_without_days_keeps_the_whole_day_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    family = _load("family", monkeypatch)
    rows = ["| clear | 97.5 | 0.073 | 0.249 ok | 2 | 0 | 3330 | 13670 |",
            "| clouds | 92.8 | 0.130 | 0.140 ok | 2 | 0 | 5757 | 36392 |"]
    old = "\n".join([family.BEGIN, "## Plant family", "", family.DAYS_HEADER, "|---|---:|", *rows, "", "text",
                     family.END])
    assert family.kept_day_rows("# B\n\n" + old + "\n") == rows
    assert family.kept_day_rows("# B\n") == []


def test_the_main_bench_keeps_every_section_the_other_bench_scripts_wrote(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    run_bench = _load("run_bench", monkeypatch)
    report = (Path(__file__).parents[1] / "BENCHMARKS.md").read_text(encoding="utf-8")
    sections = [m.group(0) for m in re.finditer(r"<!-- ([\w-]+):begin.*?<!-- \1:end -->", report, re.S)]
    sections += [m.group(0) for m in re.finditer(r"<!-- ([\w-]+) -->.*?<!-- /\1 -->", report, re.S)
                 if m.group(1) != "notes"]
    assert len(sections) >= 8  # soak, gx-safety, family, actuators, family-actuators, tank, hotwater, ...
    rewritten = run_bench.keep_other_sections("# Benchmarks\n\nthe template's part\n", report)
    missing = [s.splitlines()[0] for s in sections if s not in rewritten]
    assert not missing, f"bench/run_bench.py would drop: {missing}"


def test_the_means_over_seeds_count_each_seed_where_an_actuator_is_behind_the_servo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load("actuators", monkeypatch)
    draw = bench.HEADER.index("draw kWh")

    def row(actuator: str, capture: str, draw_kwh: str) -> tuple[str, ...]:
        cells = list(_row(bench, "clear", actuator, capture))
        cells[draw] = draw_kwh
        return tuple(cells)

    per_seed = {
        ("clear", "servo"): [row("servo", "97.0", "0.050"), row("servo", "96.0", "0.060")],
        # seed 1: behind in capture only; seed 2: ahead in capture, behind in draw by 2 Wh
        ("clear", "pwm_0_10v"): [row("pwm_0_10v", "96.9", "0.050"), row("pwm_0_10v", "96.5", "0.062")],
        # within the table's rounding on both seeds: not behind
        ("clear", "ssr_burst"): [row("ssr_burst", "97.0", "0.050"), row("ssr_burst", "96.0", "0.060")],
    }
    block = bench.seeds_block(per_seed, 2)
    line = next(x for x in block.splitlines() if x.startswith("| clear |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:4] == ["96.50 / 0.0550", "96.70 / 0.0560", "96.50 / 0.0550"]
    assert cells[4:] == ["1 / 1 of 2", "0 / 0 of 2"]
    assert "pwm_0_10v: mean capture below the servo's on 0, mean draw above it on 1 of 1 scenarios" in block
    assert "ssr_burst: mean capture below the servo's on 0, mean draw above it on 0 of 1 scenarios" in block
    text = bench.section([row("servo", "97.0", "0.050")], 1.0, seeds=block, days=6)
    assert text.index(block) < text.index(bench.END) and "6 days in 1 s" in text


def test_the_uncalibrated_family_section_runs_the_loop_without_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    family = _load("family", monkeypatch)
    calibrated = family.run_family(9, 1, 1)
    bare = family.run_family(9, 1, 1, calibrated=False)
    # seed 9's log-taper knob is far from the straight line: without the table the loop heats another way
    assert bare[0].controller.heater_kwh != pytest.approx(calibrated[0].controller.heater_kwh, rel=0.01)
    section = family.render_uncalibrated(bare, 9, 1, 1.0)
    assert section.startswith(family.UNCAL_BEGIN) and section.endswith(family.UNCAL_END)
    assert "--no-calibration --seed 9 --plants 1" in section and "| event | n |" in section


def test_the_ssr_step_section_gives_each_variants_means_and_the_seeds_behind_the_servo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load("ssr_steps", monkeypatch)
    names = list(bench.VARIANTS)
    # two seeds of one day: (scenario, seed, variant, capture %, draw kWh)
    results = [("clouds", 2, names[0], 95.0, 0.130), ("clouds", 1002, names[0], 94.0, 0.140)]
    results += [("clouds", 2, names[1], 94.9, 0.130), ("clouds", 1002, names[1], 94.0, 0.142)]
    results += [("clouds", s, n, 96.0, 0.120) for s in (2, 1002) for n in names[2:]]
    section = bench.render(results, 2, 10.0, "python bench/ssr_steps.py --seeds 2")
    line = next(x for x in section.splitlines() if x.startswith("| clouds |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # ssr_burst: behind in capture on seed 2 (by 0.1 point), in draw on seed 1002 (by 2 Wh)
    assert cells[1:3] == ["94.45 / 0.1360", "1 / 1 of 2"]
    assert cells[3:5] == ["96.00 / 0.1200", "0 / 0 of 2"]
    assert cells[-1] == "94.50 / 0.1350"
    assert f"{names[1]} on 1 of 1 days" in section and f"{names[3]} on 0 of 1 days" in section
    assert section.startswith(bench.BEGIN) and section.endswith(bench.END)


def test_the_ssr_step_variants_differ_only_in_the_actuator_and_its_burst_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvheater.sim.scenarios import build_day

    bench = _load("ssr_steps", monkeypatch)

    day = build_day("clear")
    what_if, cfg50 = bench.variant_day(day, "ssr_burst, any fraction of a cycle")
    reg = what_if.params.heater.regulator
    assert (reg.actuator, reg.burst.period_cycles, reg.burst.whole_cycles) == ("ssr_burst", 50, False)
    assert cfg50.burst.period_cycles == 50
    longer, cfg100 = bench.variant_day(day, "ssr_burst, 100-cycle periods")
    assert longer.params.heater.regulator.burst.period_cycles == cfg100.burst.period_cycles == 100
    servo, _ = bench.variant_day(day, "servo")
    assert servo.params.heater.regulator.actuator == "servo" and servo.params.battery == day.params.battery

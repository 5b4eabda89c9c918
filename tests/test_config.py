"""Config loading: defaults, the shipped file, and one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvheater.cli import main
from pvheater.config import Config, load_config
from pvheater.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_equals_the_defaults() -> None:
    assert load_config(REPO / "config.yaml") == Config()


def test_every_setting_is_documented_in_the_shipped_config() -> None:
    import dataclasses

    text = (REPO / "config.yaml").read_text(encoding="utf-8")

    def keys(cls: type) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            out.append(f.name)
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                out += keys(type(default))
        return out

    missing = [k for k in keys(Config) if f"{k}:" not in text]
    assert missing == []


def test_partial_config_takes_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "gx:\n  host: 10.0.0.5\n  unit_ids:\n    grid: 30\n"))
    assert cfg.gx.host == "10.0.0.5"
    assert cfg.gx.unit_ids.grid == 30
    assert cfg.gx.unit_ids.vebus == 242
    assert cfg.poll.interval_s == 1.0


def test_null_unit_id_means_device_not_installed(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "gx:\n  unit_ids:\n    bms: null\n"))
    assert cfg.gx.unit_ids.bms is None


def test_int_accepted_for_float(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "gx:\n  timeout_s: 2\n")).gx.timeout_s == 2.0


def test_off_grid_reserve_below_the_rating_is_taken(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "gx:\n  off_grid: true\n  inverter_rating_w: 2400\n  off_grid_reserve_w: 1000\n"))
    assert cfg.gx.off_grid_reserve_w == 1000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gx:\n  hots: x\n", "gx.hots: unknown key"),
        ("colour: red\n", "colour: unknown key"),
        ("gx:\n  port: abc\n", "gx.port: expected an integer from 1 to 65535, got 'abc'"),
        ("gx:\n  port: 70000\n", "gx.port: expected an integer from 1 to 65535, got 70000"),
        ("gx:\n  port: true\n", "gx.port: expected an integer"),
        ("gx:\n  unit_ids:\n    mppt: 300\n", "gx.unit_ids.mppt: expected an integer from 0 to 247, got 300"),
        ("gx: 5\n", "gx: expected a mapping, got 5"),
        ("poll:\n  interval_s: 0.1\n", "poll.interval_s: expected a number from 0.5 to 60.0, got 0.1"),
        ("relay:\n  active_high: 'yes'\n", "relay.active_high: expected true or false"),
        ("relay:\n  window_start: '9am'\n", "relay.window_start: expected a time HH:MM"),
        ("control:\n  policy: greedy\n", "control.policy: expected one of battery_first, heater_first"),
        (
            "servo:\n  min_pulse_width_ms: 2.5\n  max_pulse_width_ms: 1.0\n",
            "servo.min_pulse_width_ms: must be less than servo.max_pulse_width_ms (got 2.5 >= 1.0)",
        ),
        ("servo:\n  knob_full_deg: 200\n", "servo.knob_full_deg: must lie between"),
        ("gx:\n  reconnect_min_s: 100\n  reconnect_max_s: 10\n", "gx.reconnect_min_s: must not exceed"),
        ("gx:\n  off_grid_reserve_w: -5\n", "gx.off_grid_reserve_w: expected a number from 0.0 to 100000.0, got -5"),
        ("gx:\n  off_grid_reserve_w: lots\n", "gx.off_grid_reserve_w: expected a number from 0.0 to 100000.0"),
        ("gx:\n  off_grid_reserve_w: null\n", "gx.off_grid_reserve_w: expected a number"),
        ("gx:\n  off_grid_reserve_w: .nan\n", "gx.off_grid_reserve_w: expected a finite number"),
        (
            "gx:\n  off_grid: true\n  inverter_rating_w: 2400\n  off_grid_reserve_w: 2400\n",
            "gx.off_grid_reserve_w: must be less than gx.inverter_rating_w, or the heater never runs off-grid "
            "(got 2400 >= 2400)",
        ),
        ("- a\n- b\n", "top level: expected a mapping"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML at line 3"):
        load_config(write(tmp_path, "gx:\n  host: [unclosed\n"))


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()


@pytest.mark.parametrize(
    "text",
    ["gx:\n  hots: x\n", "gx:\n  port: abc\n", "gx: [\n"],
    ids=["unknown-key", "wrong-type", "bad-yaml"],
)
def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = write(tmp_path, text)
    code = main(["read-registers", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("pvheater: config error: ")
    assert "Traceback" not in err


def test_cli_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["read-registers", "--config", str(tmp_path / "absent.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "config file not found" in err

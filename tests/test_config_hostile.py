"""Hostile config files: NaN/inf, duplicate keys, huge, deep, binary, special files, bad host names.

Every case goes through the real command line (a subprocess, or `main()` in
this process for the cases a process of their own adds nothing to) and must
end with exit 2 and exactly one line on stderr, never a traceback or a hang.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from pvheater.cli import main
from pvheater.config import MAX_YAML_DEPTH, Config, PlaneConfig, load_config
from pvheater.errors import ConfigError


def cli(tmp_path: Path, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m pvheater.cli ARGS` in tmp_path."""
    return subprocess.run([sys.executable, "-m", "pvheater.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)


def assert_one_line_exit_2(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    err = done.stderr
    assert done.returncode == 2, (done.returncode, err)
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("pvheater: config error: "), err
    for text in expected:
        assert text in err, err
    return err


def float_keys() -> list[str]:
    """Every float setting as a dotted key (the plane's fields through forecast.planes[0])."""
    keys = []
    for section in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[section.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if float in (hints[f.name], *typing.get_args(hints[f.name])):
                keys.append(f"{section.name}.{f.name}")
    hints = typing.get_type_hints(PlaneConfig)
    keys += [f"forecast.planes[0].{f.name}" for f in dataclasses.fields(PlaneConfig) if hints[f.name] is float]
    return keys


def yaml_for(key: str, value: str) -> str:
    section, rest = key.split(".", 1)
    if rest.startswith("planes[0]."):
        return f"{section}:\n  planes:\n    - {rest.split('.', 1)[1]}: {value}\n"
    extra = "\n  longitude_deg: 10" if key == "site.latitude_deg" else ""
    extra = "\n  latitude_deg: 50" if key == "site.longitude_deg" else extra
    return f"{section}:\n  {rest}: {value}{extra}\n"


def test_there_are_many_float_keys() -> None:
    keys = float_keys()
    assert len(keys) > 40 and "poll.interval_s" in keys and "forecast.planes[0].kwp" in keys


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+999"])
def test_every_float_key_refuses_nan_and_inf(tmp_path: Path, value: str) -> None:
    path = tmp_path / "config.yaml"
    shown = {".nan": "nan", ".inf": "inf", "-.inf": "-inf", "1.0e+999": "inf"}[value]
    for key in float_keys():
        path.write_text(yaml_for(key, value), encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        message = str(info.value)
        assert f"{key}: expected a finite number" in message and message.endswith(f"got {shown}"), message
        assert "\n" not in message


def test_nan_cannot_pass_the_timeout_cross_check(tmp_path: Path) -> None:
    for text in ("gx:\n  timeout_s: .nan\n", "relay:\n  stale_after_s: .nan\n"):
        path = tmp_path / "config.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match="expected a finite number"):
            load_config(path)


CLI_CASES = {
    "nan-interval": ("poll:\n  interval_s: .nan\n", ["poll.interval_s: expected a finite number from 0.5 to 60.0, "
                                                     "got nan"]),
    "inf-stale": ("relay:\n  stale_after_s: .inf\n", ["relay.stale_after_s: expected a finite number", "got inf"]),
    "nan-timeout": ("gx:\n  timeout_s: .nan\n", ["gx.timeout_s: expected a finite number", "got nan"]),
    "nan-latitude": ("site:\n  latitude_deg: .nan\n  longitude_deg: 10\n", ["site.latitude_deg: expected a finite"]),
    "nan-servo-pulse": ("servo:\n  min_pulse_width_ms: .nan\n", ["servo.min_pulse_width_ms: expected a finite"]),
    "duplicate-key": ("relay:\n  stale_after_s: 2\n  min_on_s: 60\n  stale_after_s: 300\n",
                      ["duplicate key 'stale_after_s'", "line 4", "first at line 2"]),
    "duplicate-section": ("gx:\n  port: 502\npoll:\n  interval_s: 1\ngx:\n  port: 503\n",
                          ["duplicate key 'gx'", "line 5", "first at line 1"]),
    "deep-flow": ("a: " + "[" * 1000 + "]" * 1000 + "\n", [f"nested deeper than {MAX_YAML_DEPTH} levels"]),
    "deep-block": ("".join(" " * i + f"k{i}:\n" for i in range(1000)), ["nested deeper than"]),
    "400-digit-int": ("gx:\n  port: " + "9" * 400 + "\n", ["line 2", "integer of 400 characters is too long"]),
    "5000-digit-int": ("history:\n  retention_days: " + "1" * 5000 + "\n", ["integer of 5000 characters"]),
    "400-digit-float-key": ("poll:\n  interval_s: " + "9" * 400 + "\n", ["integer of 400 characters"]),
    "long-host-label": ("gx:\n  host: " + "a" * 64 + ".local\n", ["gx.host: expected an IP address or a host name"]),
    "empty-host-label": ("gx:\n  host: venus..local\n", ["gx.host: expected an IP address or a host name"]),
    "host-with-space": ("gx:\n  host: 'venus local'\n", ["gx.host:", "'venus local'"]),
    "host-too-long": ("gx:\n  host: " + ".".join(["abcdefgh"] * 40) + "\n", ["gx.host:", "characters)"]),
    "nul-character": ("gx:\n  host: a\0b\n", ["character U+0000 at offset 13 is not allowed"]),
}


#: Cases that also go through a process of their own (the interpreter's start and exit, deep nesting's stack).
SUBPROCESS_CASES = ("nan-interval", "duplicate-key", "deep-flow", "deep-block", "5000-digit-int", "nul-character")


@pytest.mark.parametrize("case", list(CLI_CASES), ids=list(CLI_CASES))
def test_hostile_config_one_line_exit_2(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = CLI_CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    if case in SUBPROCESS_CASES:
        assert_one_line_exit_2(cli(tmp_path, "read-registers", "--config", str(path)), str(path), *expected)
        return
    monkeypatch.chdir(tmp_path)
    code = main(["read-registers", "--config", str(path)])
    out, err = capsys.readouterr()
    assert out == ""
    assert_one_line_exit_2(subprocess.CompletedProcess([], code, out, err), str(path), *expected)


@pytest.mark.parametrize("case", ["long-host-label", "nan-servo-pulse", "nan-interval", "duplicate-key"])
def test_hostile_config_for_run_one_line_exit_2(tmp_path: Path, case: str) -> None:
    text, expected = CLI_CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text + "gpio:\n  pin_factory: mock\nlog:\n  file: null\n", encoding="utf-8")
    assert_one_line_exit_2(cli(tmp_path, "run", "--config", str(path), "--duration", "1"), *expected)


def test_install_service_with_a_nan_interval(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("poll:\n  interval_s: .nan\n", encoding="utf-8")
    assert_one_line_exit_2(cli(tmp_path, "install-service", "--config", str(path), "--user", "pi"),
                           "poll.interval_s: expected a finite number")


def test_latin1_file_names_the_file_and_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes("gx:\n  host: café.local\n".encode("latin-1"))
    assert_one_line_exit_2(cli(tmp_path, "read-registers", "--config", str(path)),
                           str(path), "not UTF-8 text (byte 0xE9 at offset 15)")


def test_dev_zero_is_refused(tmp_path: Path) -> None:
    assert_one_line_exit_2(cli(tmp_path, "read-registers", "--config", "/dev/zero"),
                           "/dev/zero: config file is a device, expected a regular file")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert_one_line_exit_2(cli(tmp_path, "read-registers", "--config", str(tmp_path)),
                           "config file is a directory, expected a regular file")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    assert_one_line_exit_2(cli(tmp_path, "run", "--config", str(fifo), timeout_s=20),
                           "config file is a FIFO, expected a regular file")


def test_a_file_over_1_mib_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 110_000, encoding="utf-8")  # 1.1 MB of comments: valid YAML
    assert_one_line_exit_2(cli(tmp_path, "read-registers", "--config", str(path)), "larger than 1024 KiB")


def test_a_utf8_bom_is_fine_and_host_names_and_addresses_pass(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    for host in ("venus.local", "192.168.1.20", "fe80::1", "gx-1.home.arpa.", "my_gx", "a" * 63):
        path.write_bytes(b"\xef\xbb\xbfgx:\n  host: '" + host.encode() + b"'\n")
        assert load_config(path).gx.host == host


def test_calibration_file_goes_through_the_same_reader(tmp_path: Path) -> None:
    cal = tmp_path / "cal.yaml"
    cal.write_text("points:\n  - [0, 0]\npoints:\n  - [1, 1]\n", encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(f"heater:\n  calibration_file: {cal}\ngpio:\n  pin_factory: mock\nlog:\n  file: null\n",
                    encoding="utf-8")
    done = cli(tmp_path, "run", "--config", str(path), "--duration", "1")
    assert done.returncode == 2 and "duplicate key 'points'" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1


def test_read_registers_host_option_is_checked_like_gx_host(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("log:\n  file: null\n", encoding="utf-8")
    done = cli(tmp_path, "read-registers", "--config", str(path), "--host", "a" * 64 + ".local")
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert done.stderr.startswith("pvheater: --host: expected an IP address or a host name")

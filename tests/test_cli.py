"""The command line's shared parts: argument types, exit codes, which commands read the config."""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pvheater.cli import main
from pvheater.commands.common import hhmm, positive_float, tcp_port


def test_hhmm_refuses_what_is_not_a_time_of_day() -> None:
    assert hhmm("07:30") == "07:30"
    for bad in ("25:00", "24:00", "9:00", "12:60", "noon", "12:00:30"):
        with pytest.raises(argparse.ArgumentTypeError):
            hhmm(bad)


def test_number_and_port_types() -> None:
    assert positive_float("0.5") == 0.5
    assert tcp_port("5020") == 5020
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(bad)
    for bad in ("0", "65536", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            tcp_port(bad)


@pytest.mark.parametrize("command", ["run", "calibrate-servo"])
def test_start_past_midnight_is_refused_not_wrapped(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--simulate", "--start", "25:00"])
    assert info.value.code == 2
    assert "expected a time HH:MM such as 09:00, got '25:00'" in capsys.readouterr().err


def test_bare_pvheater_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    for command in ("run", "read-registers", "calibrate-servo", "simulate", "gx-sim", "stats", "reload"):
        assert re.search(rf"^    {command}(\s|$)", err, re.MULTILINE), command


def test_a_broken_config_breaks_only_the_commands_that_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("gx:\n  port: abc\n", encoding="utf-8")
    assert main(["simulate", "--list"]) == 0
    out, err = capsys.readouterr()
    assert "clear" in out and err == ""
    assert main(["read-registers", "--simulate"]) == 2
    assert "gx.port" in capsys.readouterr().err


def test_gx_sim_notes_a_broken_config_and_serves_with_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("gx:\n  port: abc\n", encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pvheater.cli", "gx-sim", "--port", str(port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert first.startswith(f"GX simulator listening on 127.0.0.1:{port}; unit IDs: system 100 (and 0)")
    assert err.count("\n") == 1 and "note: config not used" in err and "gx.port" in err
    explicit = subprocess.run(  # a broken --config PATH is an error, as for every command
        [sys.executable, "-m", "pvheater.cli", "gx-sim", "--config", "config.yaml", "--port", str(port)],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )
    assert explicit.returncode == 2 and "config error" in explicit.stderr and "gx.port" in explicit.stderr


@pytest.mark.parametrize("command", ["run", "calibrate-servo"])
@pytest.mark.parametrize("extra", [["--scenario", "clear"], ["--start", "10:00"]])
def test_simulation_options_without_simulate_are_refused(
    command: str, extra: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may start: no pins, no GX, no files
    assert main([command, *extra]) == 2
    err = capsys.readouterr().err
    assert f"{extra[0]} only works with --simulate" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_scenario_lists_the_names_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--simulate", "--scenario", "sunny"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'sunny' (expected one of: clear, clouds, morning60," in err


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("relay:\n  pin: GPIO 17\n", "relay.pin: 'GPIO 17' is not a pin name gpiozero knows"),
        ("servo:\n  pin: gpio21\n", "servo.pin: 'gpio21' is not a pin name gpiozero knows"),
        ("servo:\n  pin: GPIO17\n", "servo.pin: must differ from relay.pin (both GPIO17)"),
        ("relay:\n  pin: BCM21\n", "servo.pin: must differ from relay.pin (both GPIO21)"),
        # the same pin by its header name: only gpiozero knows the board; it is a config mistake all the same
        ("relay:\n  pin: BOARD40\n", "servo.pin: pin 'GPIO21' is already in use"),
    ],
)
def test_pin_mistakes_are_config_errors_exit_2(
    yaml_text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """systemd restarts a service that exits 1 forever; a wrong pin is a config mistake (exit 2, no restart)."""
    path = tmp_path / "config.yaml"
    path.write_text("gpio:\n  pin_factory: mock\nlog:\n  file: null\nhistory:\n  file: null\n"
                    "service:\n  pid_file: null\n  socket_file: null\n" + yaml_text, encoding="utf-8")
    assert main(["run", "--config", str(path), "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.startswith("pvheater: config error:") and "Traceback" not in err

"""The command line's shared parts: argument types, exit codes, which commands read the config."""

from __future__ import annotations

import argparse
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

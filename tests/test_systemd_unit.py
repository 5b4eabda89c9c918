"""The unit `pvheater install-service` writes: systemd accepts it, hostile values cannot inject directives,
and its hardening rates well in `systemd-analyze security`.

systemd-analyze comes with Debian's `systemd` package (apt-get install -y systemd); without it the tests
that need it skip and say so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pvheater.systemd import UnitValueError, exec_arg, timeout_stop_seconds, unit_file

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze missing: apt-get install -y systemd")

#: Every directive the generated unit may contain; anything else would be an injected line.
DIRECTIVES = {
    "Description", "Wants", "After", "Type", "NotifyAccess", "User", "SupplementaryGroups", "WorkingDirectory",
    "ExecStart", "ExecReload", "WatchdogSec", "Restart", "RestartSec", "RestartPreventExitStatus", "KillSignal",
    "TimeoutStopSec", "Environment", "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities",
    "ProtectSystem", "ReadWritePaths", "ProtectHome", "PrivateTmp", "ProtectProc", "UMask", "DevicePolicy",
    "DeviceAllow", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
    "ProtectClock", "ProtectHostname", "RestrictAddressFamilies", "IPAddressAllow", "IPAddressDeny",
    "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute",
    "SystemCallFilter", "SystemCallErrorNumber", "SystemCallArchitectures", "RemoveIPC", "WantedBy",
}


def directives(unit: str) -> list[tuple[str, str]]:
    """(key, value) of every directive; fails on a line that is none of comment, blank, section or directive."""
    found = []
    for line in unit.splitlines():
        if not line or line.startswith("#") or re.fullmatch(r"\[(Unit|Service|Install)\]", line):
            continue
        key, sep, value = line.partition("=")
        assert sep and key in DIRECTIVES, f"unexpected line in the unit: {line!r}"
        found.append((key, value))
    return found


def install_service(tmp_path: Path, cfg_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvheater.cli", "install-service", "--config", str(cfg_file), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)


def write_config(directory: Path, text: str = "log:\n  file: null\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cfg_file = directory / "config.yaml"
    cfg_file.write_text(text, encoding="utf-8")
    return cfg_file


def verify(tmp_path: Path, unit: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    path = tmp_path / "pvheater.service"
    path.write_text(unit, encoding="utf-8")
    return subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60)


@needs_analyze
def test_the_generated_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    cfg_file = write_config(tmp_path / "pv", "gx:\n  host: 192.168.1.20\nhistory:\n  file: /var/lib/pvheater/h.db\n")
    done = install_service(tmp_path, cfg_file, "--user", "root")
    assert done.returncode == 0, done.stderr
    keys = dict(directives(done.stdout))
    assert keys["ReadWritePaths"] == f'"{cfg_file.parent}" "/var/lib/pvheater"'
    assert keys["IPAddressAllow"] == "localhost 192.168.1.20" and keys["IPAddressDeny"] == "any"
    checked = verify(tmp_path, done.stdout)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == "", checked.stderr  # not even a warning


@needs_analyze
def test_security_exposure_is_at_most_5(tmp_path: Path) -> None:
    for host in ("192.168.1.20", "venus.local"):
        cfg_file = write_config(tmp_path / "pv", f"gx:\n  host: {host}\n")
        done = install_service(tmp_path, cfg_file, "--user", "pi")
        assert done.returncode == 0, done.stderr
        path = tmp_path / "pvheater.service"
        path.write_text(done.stdout, encoding="utf-8")
        rated = subprocess.run([ANALYZE, "security", "--offline=true", str(path)], capture_output=True, text=True,
                               timeout=60)
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", rated.stdout)
        assert match, rated.stdout + rated.stderr
        score = float(match.group(1))
        print(f"systemd-analyze security --offline=true, gx.host {host}: {score}")
        assert score <= 5.0, rated.stdout


def test_host_names_and_the_forecast_get_no_ip_filter() -> None:
    unit = unit_file(["/venv/bin/pvheater"], Path("/home/pi/pv/config.yaml"), "pi", gx_host="venus.local")
    assert "\nIPAddressDeny=" not in unit and "gx.host is a host name" in unit
    unit = unit_file(["/venv/bin/pvheater"], Path("/home/pi/pv/config.yaml"), "pi", gx_host="10.0.0.2",
                     other_hosts=True)
    assert "\nIPAddressDeny=" not in unit and "forecast" in unit
    unit = unit_file(["/venv/bin/pvheater"], Path("/home/pi/pv/config.yaml"), "pi", gx_host="fe80::1%eth0")
    assert "IPAddressAllow=localhost fe80::1\n" in unit  # no scope: IPAddressAllow takes prefixes


def test_every_directive_is_explained_by_a_comment() -> None:
    unit = unit_file(["/venv/bin/pvheater"], Path("/home/pi/pv/config.yaml"), "pi", gx_host="10.0.0.2")
    lines = unit.split("[Service]\n", 1)[1].split("[Install]", 1)[0].splitlines()
    hardening = lines[lines.index(next(x for x in lines if x.startswith("# --- Hardening"))):]
    unexplained = [x for x in hardening if x and not x.startswith("#") and not uncommented_ok(x, hardening)]
    assert unexplained == []
    assert len([x for x in hardening if x and not x.startswith("#")]) >= 25


def uncommented_ok(line: str, block: list[str]) -> bool:
    """A directive is explained when a comment line precedes the group of directives it belongs to."""
    i = block.index(line)
    while i > 0 and block[i - 1] and not block[i - 1].startswith("#"):
        i -= 1
    return i > 0 and block[i - 1].startswith("#")


HOSTILE_DIRS = ["we%hird", "$HOME and ${X}", "sp ace", "%%", "trail$"]


@needs_analyze
@pytest.mark.parametrize("name", HOSTILE_DIRS)
def test_hostile_paths_are_escaped_so_systemd_finds_the_real_files(tmp_path: Path, name: str) -> None:
    program = tmp_path / name / "bin" / "pvheater"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n", encoding="utf-8")
    program.chmod(0o755)
    cfg_file = write_config(tmp_path / name / "conf")
    unit = unit_file([str(program)], cfg_file, "pi", gpio_group=False)
    keys = directives(unit)
    assert [k for k, _ in keys].count("ExecStart") == 1 and [k for k, _ in keys].count("User") == 1
    checked = verify(tmp_path, unit)  # verify resolves the program: a wrong escape names a file that is not there
    assert checked.returncode == 0, checked.stderr
    work = dict(keys)["WorkingDirectory"]
    assert work.replace("%%", "%") == str(cfg_file.parent)
    if "%" in name:  # the check can fail: unescaped, systemd reads a specifier and misses the program
        broken = unit.replace(f'ExecStart="{str(program).replace("%", "%%")}"', f'ExecStart="{program}"')
        assert broken != unit
        assert verify(tmp_path, broken).returncode != 0


def test_exec_arguments_escape_quotes_backslashes_percent_and_dollar() -> None:
    assert exec_arg('a "b" \\c %d $e', "x") == '"a \\"b\\" \\\\c %%d $$e"'
    assert exec_arg("/opt/$v/%i/pvheater", "x", program=True) == '"/opt/$v/%%i/pvheater"'  # no $ expansion there
    with pytest.raises(UnitValueError, match="systemd refuses quotes and backslashes"):
        exec_arg('/opt/"q"/pvheater', "ExecStart", program=True)


@pytest.mark.parametrize("bad", ["pv\nheater", "pv\rheater", "pv\theater"])
def test_a_control_character_in_the_config_path_is_refused_with_one_line(tmp_path: Path, bad: str) -> None:
    cfg_file = write_config(tmp_path / bad)
    done = install_service(tmp_path, cfg_file, "--user", "pi")
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "holds a control character" in done.stderr


@pytest.mark.parametrize("user", ["pi\nExecStartPre=/bin/sh -c id", "root\nUser=root", "%u", "pi$", "a b",
                                  "-pi", "x" * 40, "pi'"])
def test_hostile_user_names_are_refused_with_one_line(tmp_path: Path, user: str) -> None:
    cfg_file = write_config(tmp_path / "pv")
    done = install_service(tmp_path, cfg_file, f"--user={user}")
    if user == "pi$":  # a trailing $ is valid (Samba machine accounts)
        assert done.returncode == 0 and "User=pi$\n" in done.stdout
        return
    assert done.returncode == 2, done.stdout
    assert done.stdout == "" and "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "--user" in done.stderr


def test_quotes_and_backslashes_in_the_config_directory_are_refused(tmp_path: Path) -> None:
    for name in ('say "hi"', "it's", "back\\slash", "trailing "):
        cfg_file = write_config(tmp_path / name)
        done = install_service(tmp_path, cfg_file, "--user", "pi")
        assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, (name, done.stderr)
        assert "cannot go into a unit file" in done.stderr


def test_timeout_stop_is_sized_from_the_shutdown_not_the_gx() -> None:
    assert timeout_stop_seconds() == 18
    assert timeout_stop_seconds(3 * 10.0) == 48  # three planes fetched with forecast.timeout_s 10
    unit = unit_file(["/venv/bin/pvheater"], Path("/home/pi/pv/config.yaml"), "pi", timeout_stop_s=48)
    assert "TimeoutStopSec=48\n" in unit

"""`pvheater setup` as a newcomer meets it: a scripted run through a pseudo-terminal against the GX simulator with
mock pins, the servo jog on mock pins (relay held open), the config writer (comments kept, loads with the loader),
no TTY; plus the README's Pi-install and tool notes (issue 16 points 8 and 11)."""

from __future__ import annotations

import dataclasses
import os
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml

from pvheater.actuators import Heater, make_pin_factory
from pvheater.config import Config, load_config
from pvheater.config_writer import config_text, render_scalar, set_values, write_config
from pvheater.paths import packaged_config
from pvheater.setup_wizard import RawKeys, SetupAborted, jog
from pvheater.sim.gx_server import GxSimulator

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Pty:
    """A child process on a pseudo-terminal: wait for text, type answers (what a newcomer does)."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**os.environ, "TERM": "xterm", "COLUMNS": "150"})
        os.close(slave)
        self.seen = ""
        self._pos = 0

    def expect(self, text: str, timeout_s: float = 20.0) -> str:
        """Wait until text appears after what was matched before; return the output up to it."""
        deadline = time.monotonic() + timeout_s
        while True:
            clean = ANSI.sub("", self.seen).replace("\r", "")
            found = clean.find(text, self._pos)
            if found >= 0:
                before = clean[self._pos:found]
                self._pos = found + len(text)
                return before
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"{text!r} did not appear; the terminal showed:\n{clean[self._pos - 200:]}")

    def _read(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], min(timeout_s, 0.5))
        if ready:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return False
            if not data:
                return False
            self.seen += data.decode("utf-8", "replace")
        return self.proc.poll() is None or bool(ready)

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def answer(self, prompt: str, text: str) -> None:
        self.expect(prompt)
        self.send(text + "\r")

    def finish(self, timeout_s: float = 20.0) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        if self.proc.poll() is None:  # still running after the timeout: a hang, which the return code shows
            self.proc.kill()
        rc = self.proc.wait(5)
        while self._read(0.05):  # what it wrote last (the process has ended: the loop ends at EOF)
            pass
        os.close(self.master)
        return rc


def setup_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pvheater.cli", "setup", *args]


def test_a_newcomer_runs_setup_against_the_gx_simulator_and_the_config_reads_the_gx(
    gx_sim: GxSimulator, tmp_path: Path
) -> None:
    child = Pty(setup_cmd("--host", "127.0.0.1", "--port", str(gx_sim.port), "--pin-factory", "mock",
                          "--out", "written.yaml"), tmp_path)
    try:
        child.expect(f"found a Victron GX at 127.0.0.1:{gx_sim.port}")
        found = child.expect("Reading the values pvheater uses")
        assert re.search(r"mppt\s+unit ID 245", found) and re.search(r"grid\s+unit ID 40", found)
        values = child.expect("Relay pin")
        assert re.search(r"battery SoC\s+100 %\s+ok", values), values
        assert "MISSING" not in values
        child.send("GPIO 17\r")  # the natural mistake
        assert "relay.pin: 'GPIO 17' is not a valid pin name" in child.expect("Relay pin")
        child.send("BOARD11\r")
        child.answer("close when its input is high or low?", "low")
        child.answer("Servo pin", "GPIO17")  # BOARD11 is GPIO17: refused
        assert "servo.pin: pin 'GPIO17' is already in use" in child.expect("Servo pin")
        child.send("\r")  # the default GPIO21
        child.answer("Heater power at full knob, W", "2500")
        child.answer("Move the servo now", "y")
        child.expect("Enter when done")
        child.expect(" deg (")  # the jog's status line: the terminal is in raw mode, keys are keys
        child.send("+++")  # 3 deg
        child.send("z")
        child.send("s")  # steps of 5 deg
        child.send("\x1b[C\x1b[C\x1b[A")  # right, right, up: +15 deg
        child.send("-")  # -5
        child.send("f")
        child.send("\r")
        jogged = child.expect("knob zero at 3 deg, full at 13 deg")
        assert "relay open" in jogged and "closed!" not in jogged
        child.expect("Written written.yaml")
    finally:
        rc = child.finish()
    assert rc == 0, child.seen
    written = tmp_path / "written.yaml"
    cfg = load_config(written)
    assert (cfg.gx.host, cfg.gx.port) == ("127.0.0.1", gx_sim.port)
    assert dataclasses.asdict(cfg.gx.unit_ids) == {"system": 100, "vebus": 242, "mppt": 245, "bms": 225, "grid": 40}
    assert (cfg.relay.pin, cfg.relay.active_high, cfg.servo.pin) == ("BOARD11", False, "GPIO21")
    assert (cfg.servo.knob_zero_deg, cfg.servo.knob_full_deg, cfg.heater.max_power_w) == (3.0, 13.0, 2500.0)
    assert cfg.gpio.pin_factory == "mock"
    def comments(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.lstrip().startswith("#")]

    shipped = comments(packaged_config().read_text(encoding="utf-8"))
    written_comments = comments(written.read_text(encoding="utf-8"))
    assert written_comments[0].startswith("# Written by `pvheater setup` on ")
    assert written_comments[-len(shipped):] == shipped  # every comment of the shipped file kept, in order
    done = subprocess.run([sys.executable, "-m", "pvheater.cli", "read-registers", "--config", str(written)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"battery_soc_pct\s+100 %", done.stdout)
    # and the newcomer's next step: a dry run on the GX for 10 s (no pin, no history)
    dry = subprocess.run([sys.executable, "-m", "pvheater.cli", "run", "--dry-run", "--duration", "10",
                          "--config", str(written)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "pvheater DRY RUN (no pin touched, no history written)" in dry.stderr
    assert "GX unavailable" not in dry.stderr and "Traceback" not in dry.stderr
    assert cfg.history.file is not None and not (tmp_path / cfg.history.file).exists()

    # a second run without --host tries venus.local, then asks; it never overwrites without asking
    before = written.read_bytes()
    child = Pty(setup_cmd("--port", str(gx_sim.port), "--pin-factory", "mock", "--out", "written.yaml"), tmp_path)
    try:
        child.expect(f"Looking for the GX at venus.local:{gx_sim.port}")
        child.answer("GX address (IP or host name; q quits)", "127.0.0.1")
        child.expect(f"found a Victron GX at 127.0.0.1:{gx_sim.port}")
        for prompt in ("Relay pin", "high or low?", "Servo pin", "Heater power"):
            child.answer(prompt, "")
        child.answer("Move the servo now", "n")
        child.answer("written.yaml exists. Overwrite it (y/N)", "")
        child.answer("Write to which file instead?", "")
        child.expect("Nothing written.")
    finally:
        rc = child.finish()
    assert rc == 1
    assert written.read_bytes() == before


def test_setup_simulate_then_ctrl_c_in_the_jog_writes_nothing_and_restores_the_terminal(tmp_path: Path) -> None:
    child = Pty(setup_cmd("--simulate", "--port", str(free_port())), tmp_path)
    try:
        child.expect("--simulate: GX simulator on 127.0.0.1")
        for prompt in ("Relay pin", "high or low?", "Servo pin", "Heater power"):
            child.answer(prompt, "")
        child.answer("Move the servo now", "")
        child.expect("Enter when done")
        child.expect(" deg (")  # the jog's status line: the terminal is in raw mode, keys are keys
        child.send("++\x03")
        child.expect("setup aborted: nothing written")
    finally:
        rc = child.finish()
    assert rc == 1
    assert not (tmp_path / "config.yaml").exists()


def test_a_hang_up_during_the_jog_writes_nothing_and_releases_the_pins(tmp_path: Path) -> None:
    child = Pty(setup_cmd("--simulate", "--port", str(free_port())), tmp_path)
    try:
        for prompt in ("Relay pin", "high or low?", "Servo pin", "Heater power"):
            child.answer(prompt, "")
        child.answer("Move the servo now", "y")
        child.expect("Enter when done")
        child.expect(" deg (")  # the jog's status line: the terminal is in raw mode, keys are keys
        child.send("+")
        child.expect("servo    1.0 deg")
        os.kill(child.proc.pid, signal.SIGHUP)  # what a dropped SSH link sends
        child.expect("setup aborted: nothing written")
    finally:
        rc = child.finish()
    assert rc == 1
    assert not (tmp_path / "config.yaml").exists()


def free_port() -> int:
    """A free loopback TCP port (closed again before use)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_setup_without_a_terminal_says_so_and_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(setup_cmd("--simulate"), cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert "needs an interactive terminal (stdin is not a TTY)" in done.stderr
    assert not (tmp_path / "config.yaml").exists()


# --- the jog on mock pins ------------------------------------------------------------------------


def servo_duty(factory: object, pin: str) -> float:
    return float(factory.pin(pin).state)  # type: ignore[attr-defined]


def test_jog_moves_the_servo_pin_live_and_never_closes_the_relay() -> None:
    cfg = Config()
    cfg = dataclasses.replace(cfg, relay=dataclasses.replace(cfg.relay, active_high=False))
    factory = make_pin_factory("mock")
    heater = Heater.from_config(cfg, pin_factory=factory)
    master, slave = os.openpty()
    saved = termios.tcgetattr(slave)
    relay_levels: list[bool] = []

    class Out:
        text = ""

        def write(self, s: str) -> None:
            Out.text += s
            relay_levels.append(bool(factory.pin(cfg.relay.pin).state))  # type: ignore[attr-defined]

        def flush(self) -> None:
            pass

    try:
        keys = RawKeys(slave)
        try:
            os.write(master, b"+" * 10 + b"z" + b"s" + b"\x1b[A" * 20 + b"f\r")  # typed ahead: raw mode keeps it
            zero, full = jog(heater, cfg, keys, Out())  # type: ignore[arg-type]
            raw = termios.tcgetattr(slave)
        finally:
            keys.close()
        assert (zero, full) == (10.0, 110.0)
        assert not raw[3] & termios.ICANON and not raw[3] & termios.ECHO  # it was raw
        assert termios.tcgetattr(slave) == saved  # and is restored
        # the servo pin's pulses command 110 deg: 1 ms + 110/180 ms in a 20 ms frame
        assert servo_duty(factory, cfg.servo.pin) == pytest.approx((1.0 + 110 / 180) / 20.0, abs=1e-4)
        assert relay_levels and all(relay_levels)  # active-low board: high = open, on every key
        assert not heater.relay_on
        with pytest.raises(SetupAborted):  # Ctrl-C ends the jog
            keys = RawKeys(slave)
            try:
                os.write(master, b"-\x03")
                jog(heater, cfg, keys, Out())  # type: ignore[arg-type]
            finally:
                keys.close()
        assert termios.tcgetattr(slave) == saved
    finally:
        heater.close()
        os.close(master)
        os.close(slave)


# --- the config writer -------------------------------------------------------------------------------


def test_config_writer_fills_values_by_key_path_and_keeps_every_comment(tmp_path: Path) -> None:
    shipped = packaged_config().read_text(encoding="utf-8")
    values = {"gx.host": "192.168.1.50", "gx.unit_ids.grid": 30, "gx.unit_ids.bms": None, "relay.active_high": False,
              "servo.knob_full_deg": 150.0, "gpio.pin_factory": "lgpio", "forecast.fetch_times": "06:10,11:10"}
    text = set_values(shipped, values)
    assert len(text.splitlines()) == len(shipped.splitlines())
    changed = [(a, b) for a, b in zip(shipped.splitlines(), text.splitlines(), strict=True) if a != b]
    assert len(changed) == len(values)
    assert all(not a.lstrip().startswith("#") for a, _ in changed)
    out = tmp_path / "config.yaml"
    cfg = write_config(out, config_text(values, "a header"), values)
    assert load_config(out) == cfg
    assert cfg.gx.unit_ids.grid == 30 and cfg.gx.unit_ids.bms is None and cfg.forecast.fetch_times == "06:10,11:10"
    assert out.read_text(encoding="utf-8").startswith("# a header\n#\n# pvheater configuration.")
    with pytest.raises(FileExistsError):
        write_config(out, text, values)
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary file left
    with pytest.raises(ValueError, match=r"not in the config file: gx\.nothing"):
        set_values(shipped, {"gx.nothing": 1})


@pytest.mark.parametrize("value", ["venus.local", "yes", "null", "12", "a: b", "#x", " pad", "x'y\"z", "GPIO17"])
def test_rendered_strings_read_back_as_the_same_string(value: str) -> None:
    assert yaml.safe_load(f"k: {render_scalar(value)}") == {"k": value}


# --- README (issue 16 points 8 and 11) ------------------------------------------------------------------


def test_readme_gets_the_code_onto_the_pi_and_uses_the_venvs_paths() -> None:
    install = README.split("## Install on the Pi", 1)[1].split("\n## ", 1)[0]
    assert "git clone" in install and "pip wheel ." in install
    on_the_pi = README.split("## Install on the Pi", 1)[1].split("## When things go wrong", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", on_the_pi, re.DOTALL)
    assert len(commands) >= 6
    for block in commands:
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            for part in re.split(r"&&|;", line):
                if part.strip().startswith(("pvheater ", "python ", "python3 -m pvheater")):
                    raise AssertionError(f"a bare command in the Pi's steps (no venv is active there): {line}")
    assert "~/pvheater-venv/bin/pvheater setup" in README


def test_the_pin_library_message_and_the_readme_agree_on_python3_lgpio() -> None:
    import gpiozero

    from pvheater.errors import HardwareError

    if gpiozero.Device.pin_factory is not None:  # pragma: no cover - someone set a global factory
        pytest.skip("a global pin factory is already set")
    try:
        make_pin_factory(None)
    except HardwareError as exc:
        message = str(exc)
    else:  # pragma: no cover - on a Raspberry Pi gpiozero finds a library
        pytest.skip("gpiozero found a pin library here")
    hint = message.split("works here", 1)[1]
    assert "sudo apt install python3-lgpio" in hint and "--system-site-packages" in hint
    assert "pip install lgpio" not in hint.split(")", 1)[-1]
    assert re.search(r"sudo apt install [\w -]*python3-lgpio", README) and "--system-site-packages" in README


def test_readme_says_mbpoll_needs_0_and_how_long_the_tests_take() -> None:
    assert re.search(r"mbpoll .*-0", README), "mbpoll needs -0 for Victron's (0-based) addresses"
    development = README.split("## Development", 1)[1]
    assert re.search(r"about \d+ min", development)


def test_next_steps_name_the_venvs_pvheater_when_no_venv_is_active(monkeypatch: pytest.MonkeyPatch) -> None:
    from pvheater.setup_wizard import command_name

    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "pvheater").is_file():  # pragma: no cover - not run from an installed venv
        pytest.skip("no pvheater script beside this Python")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert command_name().endswith(str(venv_bin / "pvheater").removeprefix(str(Path.home())))
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert command_name() == "pvheater"

"""Print (or, as root, write) the systemd unit that runs pvheater at boot with this venv and config.

`pvheater install-service` prints a unit for `pvheater run` with this
installation's pvheater (the venv's console script) and the absolute path of
the config file; its working directory is the config file's directory, so
relative paths in the config (log.file, history.file, service.pid_file) land
there. `--write` writes it to /etc/systemd/system/pvheater.service (needs
root: run it with sudo) and says how to enable it. The unit is generated, not
copied from a file: `Type=notify` with a watchdog sized from poll.interval_s
and gx.timeout_s, `Restart=on-failure` (not after exit 2, a bad config),
SIGTERM to stop (relay open, knob to zero), `systemctl reload` = SIGHUP,
and hardening: a read-only system except the directories pvheater writes to,
no capabilities, only the GPIO devices, only the GX's address when gx.host is
an IP (each directive commented in the unit). Every path and the user name
are escaped by systemd's rules or refused (a newline, say) with exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pvheater.config import Config, default_config_path
from pvheater.systemd import (
    UNIT_PATH,
    UnitValueError,
    default_user,
    gpio_group_exists,
    pvheater_executable,
    timeout_stop_seconds,
    unit_file,
    watchdog_seconds,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater install-service`."""
    parser.add_argument("--write", action="store_true", help=f"write the unit to {UNIT_PATH} (needs root)")
    parser.add_argument("--user", default=None, help="user the service runs as (default: the one who ran sudo)")
    parser.add_argument("--unit-path", default=str(UNIT_PATH), help=argparse.SUPPRESS)


def writable_dirs(cfg: Config, config_dir: Path) -> list[Path]:
    """The directories the service writes to: log, history, PID file, socket, hot-water state, forecast cache."""
    files = [cfg.log.file, cfg.history.file, cfg.service.pid_file, cfg.service.socket_file, cfg.hot_water.state_file]
    if cfg.forecast.enabled:
        files.append(cfg.forecast.cache_file)
    dirs: list[Path] = []
    for name in files:
        if name is not None:
            directory = (config_dir / name).parent.resolve()
            if directory not in dirs:
                dirs.append(directory)
    return dirs


def run(args: argparse.Namespace) -> int:
    """Print the unit, or write it when --write is given and we are root."""
    config_path = Path(args.config) if args.config else default_config_path()
    config_path = config_path.resolve()
    cfg: Config = args.cfg
    fetch_s = cfg.forecast.timeout_s * len(cfg.forecast.planes) if cfg.forecast.enabled else 0.0
    try:
        text = unit_file(
            pvheater_executable(),
            config_path,
            args.user or default_user(),
            watchdog_s=watchdog_seconds(cfg.poll.interval_s, cfg.gx.timeout_s),
            timeout_stop_s=timeout_stop_seconds(fetch_s),
            gpio_group=gpio_group_exists(),
            writable_dirs=writable_dirs(cfg, config_path.parent),
            gx_host=cfg.gx.host,
            other_hosts=cfg.forecast.enabled,
        )
    except UnitValueError as exc:
        print(f"pvheater: install-service: {exc}", file=sys.stderr)
        return 2
    if args.config is None and not Path("config.yaml").is_file():
        print(
            "pvheater: note: no ./config.yaml here, so the unit uses the packaged defaults; copy config.yaml to "
            "a directory of the service user, edit it, and pass --config PATH",
            file=sys.stderr,
        )
    if not args.write:
        print(text, end="")
        return 0
    unit_path = Path(args.unit_path)
    if os.geteuid() != 0:
        print(f"pvheater: install-service --write needs root to write {unit_path}: run it with sudo "
              "(or leave out --write and copy the printed unit yourself)", file=sys.stderr)
        return 1
    try:
        unit_path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"pvheater: cannot write {unit_path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {unit_path}; now run:\n"
          "  sudo systemctl daemon-reload\n"
          "  sudo systemctl enable --now pvheater\n"
          "  journalctl -u pvheater -f")
    return 0

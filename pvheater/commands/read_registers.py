"""Read every mapped value from the GX once and show it; --discover finds the unit IDs.

Output of a read (default): a table with one line per value (role, unit ID,
address, name, value with its unit and enum text; `invalid` when the GX sent
an implausible or invalid value) and one line per absent or unconfigured
device.

Output with --json: one JSON object. Every value name of the register map is a
key whose value is the decoded number, or null when invalid or not read.
Keys starting with "_" describe the read:

    {"battery_soc_pct": 100, "grid_l1_w": -5, ...,
     "_gx": "127.0.0.1:5020",
     "_unit_ids": {"system": 100, "mppt": 245, "bms": null, ...},
     "_absent": {"mppt": "no mppt device at unit ID 245 (GX answered 0x0A); ..."},
     "_enum": {"mppt_state": "Float", ...}}

With --discover the unit IDs a GX can have (--full: all 0-247) are probed by
reading one register of each role; the result is printed as a paste-ready
`gx:` block (host, port when not 502, the indented unit_ids) whose keys
replace those of the gx: section in config.yaml (with --json: {"unit_ids": {...},
"found": {"245": ["mppt"], ...}}; a unit ID of Victron's unitid2di.csv is named by its GX port,
e.g. "227: Cerbo GX VE.Bus port"). Discovery probes the unit IDs a GX can have (reader.KNOWN_UNIT_IDS, from
Victron's unitid2di.csv and the device types) and says on stderr how many
reads it sends; --full sends one read per role and unit ID, 1240 short reads,
and warns that each miss is an ERROR line in the GX's own log.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from contextlib import ExitStack
from typing import Any

from pvheater.commands.common import EXIT_CONFIG, tcp_port
from pvheater.config import GxConfig, valid_host
from pvheater.control.measurements import Measurements
from pvheater.reader import KNOWN_UNIT_IDS, PORT_UNIT_IDS, GxReader
from pvheater.registers import Register, RegisterMap, load_register_map

MAX_UNIT_ID = 247


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater read-registers`."""
    parser.add_argument("--host", help="GX address (overrides gx.host)")
    parser.add_argument("--port", type=tcp_port, help="GX Modbus-TCP port (overrides gx.port)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--simulate", action="store_true", help="read from a GX simulator started in-process with sample values"
    )
    parser.add_argument("--discover", action="store_true", help="find which unit IDs answer for which device")
    parser.add_argument("--full", action="store_true", help="with --discover: probe every unit ID 0-247")


def run(args: argparse.Namespace) -> int:
    """Read the GX once (or discover its unit IDs) and print the result."""
    if args.full and not args.discover:
        print("pvheater: --full only works with --discover", file=sys.stderr)
        return EXIT_CONFIG
    gx: GxConfig = args.cfg.gx
    if args.host:
        if not valid_host(args.host):
            print(f"pvheater: --host: expected an IP address or a host name, got {args.host[:80]!r}", file=sys.stderr)
            return EXIT_CONFIG
        gx = dataclasses.replace(gx, host=args.host)
    if args.port is not None:
        gx = dataclasses.replace(gx, port=args.port)
    config_host, config_port = gx.host, gx.port  # what the paste-ready block names (not the in-process simulator)
    register_map = load_register_map()
    with ExitStack() as stack:
        if args.simulate:
            from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator

            simulator = GxSimulator(register_map, gx.unit_ids)
            simulator.set_values({k: v for k, v in SAMPLE_VALUES.items() if k in register_map.by_name()})
            stack.enter_context(simulator)
            gx = dataclasses.replace(gx, host=simulator.host, port=simulator.port)
        reader = stack.enter_context(GxReader(gx, register_map))
        if args.discover:
            found = discover(reader, full=args.full)
            if args.json:
                print(format_discovery_json(found, register_map))
            else:
                print(format_discovery(found, reader, register_map, config_host, config_port))
            return 0
        measurements = reader.read()
        if args.json:
            print(json.dumps(as_json(measurements, reader, register_map), indent=2))
        else:
            print(format_table(measurements, reader, register_map))
    return 0


# --- reading -------------------------------------------------------------


def decimals(register: Register) -> int:
    """Decimal places the register's scale gives (scale 10: 1, 100: 2, 1 or 0.1: 0)."""
    return math.ceil(math.log10(abs(register.scale))) if abs(register.scale) > 1 else 0


def format_value(register: Register, value: float | None) -> str:
    """A value with its unit and enum text, or 'invalid'."""
    if value is None:
        return "invalid"
    text = f"{value:.{decimals(register)}f}"
    if register.unit:
        text += f" {register.unit}"
    if register.enum is not None:
        text += f" ({register.enum_text(value)})"
    return text


def format_table(measurements: Measurements, reader: GxReader, register_map: RegisterMap) -> str:
    """The readable table of every mapped value."""
    unit_ids = reader.unit_ids
    name_width = max(len(r.name) for r in register_map.all_registers())
    lines = [f"GX {reader.endpoint}", f"{'role':<7} {'unit':>4} {'address':>7}  {'name':<{name_width}}  value"]
    for role, device in register_map.devices.items():
        unit_id = unit_ids.get(role)
        if unit_id is None:
            lines.append(f"{role:<7} {'-':>4} {'':>7}  not configured (gx.unit_ids.{role} is null)")
            continue
        if role in measurements.absent_roles:
            message = reader.problems.get(role, f"no {role} device at unit ID {unit_id}")
            lines.append(f"{role:<7} {unit_id:>4} {'':>7}  absent: {message}")
            continue
        for reg in device.registers:
            value = format_value(reg, measurements.get(reg.name))
            lines.append(f"{role:<7} {unit_id:>4} {reg.address:>7}  {reg.name:<{name_width}}  {value}")
    return "\n".join(lines)


def json_number(register: Register, value: float | None) -> float | int | None:
    """A decoded value for JSON: rounded to the scale's precision, an int when whole."""
    if value is None:
        return None
    rounded = round(value, decimals(register))
    return int(rounded) if float(rounded).is_integer() else rounded


def as_json(measurements: Measurements, reader: GxReader, register_map: RegisterMap) -> dict[str, Any]:
    """The --json object: values by name, then the _gx, _unit_ids, _absent and _enum keys."""
    out: dict[str, Any] = {}
    enum_text: dict[str, str] = {}
    for reg in register_map.all_registers():
        value = measurements.get(reg.name)
        out[reg.name] = json_number(reg, value)
        if reg.enum is not None and value is not None:
            enum_text[reg.name] = reg.enum_text(value)
    out["_gx"] = reader.endpoint
    out["_unit_ids"] = reader.unit_ids
    out["_absent"] = {role: reader.problems.get(role, "") for role in sorted(measurements.absent_roles)}
    out["_enum"] = enum_text
    return out


# --- discovery -----------------------------------------------------------


def discover(reader: GxReader, full: bool) -> dict[int, tuple[str, ...]]:
    """Probe unit IDs (the known ones, or all 0-247) and return the roles answering at each."""
    units = list(KNOWN_UNIT_IDS)
    if full:
        units += [u for u in range(MAX_UNIT_ID + 1) if u not in KNOWN_UNIT_IDS]
    role_count = len(reader.unit_ids)
    reads = len(units) * role_count
    print(f"probing {len(units)} unit IDs with up to {reads} short reads ({role_count} roles each)", file=sys.stderr)
    if full:
        print("warning: --full: every unit ID or role that is not there is logged at ERROR in the GX's own log "
              f"(up to {reads} lines)", file=sys.stderr)
    found: dict[int, tuple[str, ...]] = {}
    for unit_id in units:
        roles = reader.probe(unit_id)
        if roles:
            found[unit_id] = roles
    return found


def chosen_unit_ids(found: dict[int, tuple[str, ...]], register_map: RegisterMap) -> dict[str, list[int]]:
    """Every unit ID answering for each role, the preferred (first probed) one first."""
    by_role: dict[str, list[int]] = {role: [] for role in register_map.devices}
    for unit_id, roles in found.items():
        for role in roles:
            by_role[role].append(unit_id)
    if 100 in by_role.get("system", []):
        by_role["system"] = [100] + [u for u in by_role["system"] if u not in (100, 0)]
    return by_role


#: The GX's Modbus-TCP port: the discovery block names the port only when it differs.
DEFAULT_PORT = 502


def format_discovery(
    found: dict[int, tuple[str, ...]], reader: GxReader, register_map: RegisterMap, host: str, port: int
) -> str:
    """A paste-ready `gx:` block (host, port when not 502, unit_ids) that replaces the one in config.yaml."""
    answered = ", ".join(f"{u}: {'+'.join(roles)}" for u, roles in sorted(found.items())) or "none"
    lines = [
        f"# GX {reader.endpoint}: unit IDs answering: {answered}",
        "# in config.yaml: replace these keys of the gx: section (keep its other keys)",
        "gx:",
        f"  host: {host}",
    ]
    if port != DEFAULT_PORT:
        lines.append(f"  port: {port}")
    lines.append("  unit_ids:")
    for role, units in chosen_unit_ids(found, register_map).items():
        if not units:
            lines.append(f"    {role}: null  # no {role} device answered")
        else:
            notes = [PORT_UNIT_IDS[units[0]]] if units[0] in PORT_UNIT_IDS and role != "system" else []
            if len(units) > 1:
                notes.append(f"also answering: {', '.join(map(str, units[1:]))}")
            lines.append(f"    {role}: {units[0]}" + (f"  # {'; '.join(notes)}" if notes else ""))
    return "\n".join(lines)


def format_discovery_json(found: dict[int, tuple[str, ...]], register_map: RegisterMap) -> str:
    """Discovery as JSON: the chosen unit_ids and every unit ID that answered."""
    chosen = {role: (units[0] if units else None) for role, units in chosen_unit_ids(found, register_map).items()}
    return json.dumps({"unit_ids": chosen, "found": {str(u): list(r) for u, r in found.items()}}, indent=2)

"""The Venus GX register map, loaded from registers/*.yaml, and block-read planning."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from pvheater.errors import RegisterMapError
from pvheater.paths import registers_dir

#: Width in 16-bit words of each register type the map may use.
TYPE_WORDS: Mapping[str, int] = MappingProxyType(
    {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2}
)
#: Range of the raw integer each register type can hold.
TYPE_RANGE: Mapping[str, tuple[int, int]] = MappingProxyType(
    {"int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1)}
)
#: The most registers one Modbus read may ask for.
MAX_BLOCK_WORDS = 125
#: Device roles pvheater knows, in the order they are read and shown.
ROLES: tuple[str, ...] = ("system", "mppt", "bms", "grid", "vebus")

_ENTRY_KEYS = {"name", "path", "address", "type", "scale", "unit", "enum", "valid", "zero_invalid"}
_REQUIRED_KEYS = {"name", "path", "address", "type", "scale", "unit"}


def round_half_away(x: float) -> int:
    """Round to the nearest integer, halves away from zero, as the GX's server does (94.5 % reads 95)."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


@dataclass(frozen=True)
class Register:
    """One mapped value: where it lives on the GX and how to decode it."""

    name: str
    role: str
    path: str
    address: int
    type: str
    scale: float
    unit: str
    enum: Mapping[int, str] | None = None
    valid_min: float | None = None
    valid_max: float | None = None
    zero_invalid: bool = False

    @property
    def words(self) -> int:
        """Number of 16-bit registers the value occupies."""
        return TYPE_WORDS[self.type]

    @property
    def end(self) -> int:
        """First address after the value."""
        return self.address + self.words

    def decode_raw(self, raw: int) -> float:
        """Apply the scale: value = raw / scale."""
        inverse = 1 / self.scale
        if abs(self.scale) < 1 and inverse.is_integer():
            return raw * inverse  # scale 0.1: raw x 10 exactly, without 1229.9999 noise
        return raw / self.scale

    def encode_value(self, value: float) -> int:
        """The raw integer the GX sends for a decoded value (raw = value x scale, rounded half away from zero)."""
        raw = round_half_away(value * self.scale)
        low, high = TYPE_RANGE[self.type]
        if not low <= raw <= high:
            raise ValueError(
                f"register {self.name!r}: {value} {self.unit} does not fit {self.type} "
                f"with scale {self.scale:g} (raw {raw} outside {low}..{high})"
            )
        return raw

    def plausible(self, value: float) -> bool:
        """True when a decoded value may be trusted (range and the GX's invalid-0 rule)."""
        if self.zero_invalid and value == 0:
            return False
        if self.valid_min is not None and value < self.valid_min:
            return False
        return not (self.valid_max is not None and value > self.valid_max)

    def enum_text(self, value: float | None) -> str:
        """The enum text of a value, or '' when the register has none."""
        if self.enum is None or value is None:
            return ""
        return self.enum.get(int(value), f"unknown ({int(value)})")


@dataclass(frozen=True)
class Device:
    """One device role on the GX: its service, the ranges it serves, its registers.

    `served` and `reserved` hold inclusive [first, last] address ranges; RESERVED
    words lie inside served ranges and read 0xFFFF on the GX.
    """

    role: str
    service: str
    served: tuple[tuple[int, int], ...]
    registers: tuple[Register, ...]
    reserved: tuple[tuple[int, int], ...] = ()

    def served_range(self, first: int, last: int) -> tuple[int, int] | None:
        """The served range holding addresses first..last, or None when they cross a gap or lie outside."""
        for low, high in self.served:
            if low <= first and last <= high:
                return low, high
        return None

    def serves(self, address: int) -> bool:
        """True when the GX serves this address for the device's service."""
        return self.served_range(address, address) is not None


@dataclass(frozen=True)
class Block:
    """One contiguous read: `count` words from `address` on a device role."""

    role: str
    address: int
    count: int
    registers: tuple[Register, ...] = field(default=())


@dataclass(frozen=True)
class RegisterMap:
    """All devices pvheater reads, keyed by role."""

    devices: Mapping[str, Device]

    def all_registers(self) -> tuple[Register, ...]:
        """Every register, devices in ROLES order."""
        return tuple(r for d in self.devices.values() for r in d.registers)

    def by_name(self) -> dict[str, Register]:
        """Registers keyed by value name."""
        return {r.name: r for r in self.all_registers()}

    def role_at(self, address: int) -> str | None:
        """The role whose served ranges hold an address (GX addresses belong to one service)."""
        for device in self.devices.values():
            if device.serves(address):
                return device.role
        return None


def _fail(source: str, where: str, problem: str) -> RegisterMapError:
    return RegisterMapError(f"{source}: {where}: {problem}")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_register(source: str, role: str, index: int, raw: object) -> Register:
    where = f"registers[{index}]"
    if not isinstance(raw, dict):
        raise _fail(source, where, "must be a mapping")
    if isinstance(raw.get("name"), str):
        where = f"register {raw['name']!r}"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise _fail(source, where, f"unknown key(s) {', '.join(sorted(unknown))}")
    missing = _REQUIRED_KEYS - set(raw)
    if missing:
        raise _fail(source, where, f"missing key(s) {', '.join(sorted(missing))}")
    if not isinstance(raw["name"], str) or not raw["name"].isidentifier():
        raise _fail(source, where, f"name must be an identifier (got {raw['name']!r})")
    address = raw["address"]
    if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 65535:
        raise _fail(source, where, f"address must be an integer 0-65535 (got {address!r})")
    if raw["type"] not in TYPE_WORDS:
        raise _fail(
            source, where, f"type must be one of {', '.join(TYPE_WORDS)} (got {raw['type']!r})"
        )
    scale = raw["scale"]
    if not _number(scale) or scale == 0:
        raise _fail(source, where, f"scale must be a non-zero number (got {scale!r})")
    if not isinstance(raw["unit"], str):
        raise _fail(source, where, f"unit must be a string (got {raw['unit']!r})")
    enum = raw.get("enum")
    if enum is not None and (
        not isinstance(enum, dict)
        or not all(isinstance(k, int) and isinstance(v, str) for k, v in enum.items())
    ):
        raise _fail(source, where, "enum must map integers to text")
    valid = raw.get("valid")
    if valid is not None and (
        not isinstance(valid, list)
        or len(valid) != 2
        or not all(_number(v) for v in valid)
        or valid[0] >= valid[1]
    ):
        raise _fail(source, where, f"valid must be [min, max] with min < max (got {valid!r})")
    zero_invalid = raw.get("zero_invalid", False)
    if not isinstance(zero_invalid, bool):
        raise _fail(source, where, f"zero_invalid must be true or false (got {zero_invalid!r})")
    return Register(
        name=raw["name"],
        role=role,
        path=str(raw["path"]),
        address=address,
        type=raw["type"],
        scale=float(scale),
        unit=raw["unit"],
        enum=MappingProxyType(dict(enum)) if enum else None,
        valid_min=float(valid[0]) if valid else None,
        valid_max=float(valid[1]) if valid else None,
        zero_invalid=zero_invalid,
    )


def _parse_device(source: str, doc: object) -> Device:
    if not isinstance(doc, dict):
        raise _fail(source, "top level", "must be a mapping with role, service, served, registers")
    unknown = set(doc) - {"role", "service", "served", "reserved", "registers"}
    if unknown:
        raise _fail(source, "top level", f"unknown key(s) {', '.join(sorted(unknown))}")
    role = doc.get("role")
    if role not in ROLES:
        raise _fail(source, "role", f"must be one of {', '.join(ROLES)} (got {role!r})")
    served_raw = doc.get("served")
    if not isinstance(served_raw, list) or not served_raw:
        raise _fail(source, "served", "must be a list of [first, last] address ranges")
    served = _parse_ranges(source, "served", served_raw)
    reserved_raw = doc.get("reserved", [])
    if not isinstance(reserved_raw, list):
        raise _fail(source, "reserved", "must be a list of [first, last] address ranges")
    reserved = _parse_ranges(source, "reserved", reserved_raw)
    regs_raw = doc.get("registers")
    if not isinstance(regs_raw, list) or not regs_raw:
        raise _fail(source, "registers", "must be a non-empty list")
    registers = [_parse_register(source, role, i, r) for i, r in enumerate(regs_raw)]
    ordered = sorted(registers, key=lambda r: r.address)
    for before, after in itertools.pairwise(ordered):
        if after.address < before.end:
            raise _fail(
                source,
                f"register {after.name!r}",
                f"address {after.address} overlaps {before.name!r} "
                f"({before.address}-{before.end - 1})",
            )
    for reg in registers:
        if not any(first <= reg.address and reg.end - 1 <= last for first, last in served):
            raise _fail(
                source,
                f"register {reg.name!r}",
                f"address {reg.address}-{reg.end - 1} lies outside the served ranges {served}",
            )
    _check_reserved(source, served, reserved, ordered)
    return Device(str(role), str(doc.get("service", "")), tuple(served), tuple(ordered), tuple(reserved))


def _parse_ranges(source: str, key: str, raw: list[object]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for rng in raw:
        if (
            not isinstance(rng, list)
            or len(rng) != 2
            or not all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a <= 65535 for a in rng)
            or rng[0] > rng[1]
        ):
            raise _fail(source, key, f"each range must be [first, last] addresses 0-65535 (got {rng!r})")
        ranges.append((rng[0], rng[1]))
    for before, after in itertools.pairwise(sorted(ranges)):
        if after[0] <= before[1]:
            raise _fail(source, key, f"range {list(after)} overlaps {list(before)}")
    return ranges


def _check_reserved(
    source: str, served: list[tuple[int, int]], reserved: list[tuple[int, int]], registers: list[Register]
) -> None:
    for first, last in reserved:
        if not any(low <= first and last <= high for low, high in served):
            raise _fail(source, "reserved", f"range {[first, last]} lies outside the served ranges {served}")
        for reg in registers:
            if reg.address <= last and first <= reg.end - 1:
                raise _fail(
                    source,
                    f"register {reg.name!r}",
                    f"address {reg.address}-{reg.end - 1} overlaps the reserved range {[first, last]}",
                )


def load_register_map(directory: Path | None = None) -> RegisterMap:
    """Load and validate every registers/*.yaml; raise RegisterMapError naming the bad entry."""
    folder = directory or registers_dir()
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RegisterMapError(f"no register map files (*.yaml) in {folder}")
    devices: dict[str, Device] = {}
    names: dict[str, str] = {}
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RegisterMapError(f"{path.name}: cannot be read: {exc}") from None
        device = _parse_device(path.name, doc)
        if device.role in devices:
            raise _fail(path.name, "role", f"{device.role!r} is defined twice")
        for other in devices.values():
            for first, last in device.served:
                for low, high in other.served:
                    if first <= high and low <= last:
                        raise _fail(
                            path.name,
                            "served",
                            f"range {[first, last]} overlaps {[low, high]} served for {other.role!r} "
                            "(a GX address belongs to one service)",
                        )
        for reg in device.registers:
            if reg.name in names:
                raise _fail(path.name, f"register {reg.name!r}", f"name also used in {names[reg.name]}")
            names[reg.name] = path.name
        devices[device.role] = device
    ordered = {role: devices[role] for role in ROLES if role in devices}
    return RegisterMap(MappingProxyType(ordered))


def plan_blocks(
    device: Device, registers: Iterable[Register] | None = None, max_words: int = MAX_BLOCK_WORDS
) -> tuple[Block, ...]:
    """Plan as few contiguous reads as possible for a device's registers.

    Registers join one block while the span stays inside one served range (a
    read across an undefined gap fails whole on the GX) and within max_words.
    """
    wanted = sorted(registers if registers is not None else device.registers, key=lambda r: r.address)
    blocks: list[Block] = []
    current: list[Register] = []

    def served_range(reg: Register) -> tuple[int, int]:
        found = device.served_range(reg.address, reg.end - 1)
        if found is None:
            raise RegisterMapError(f"register {reg.name!r} lies outside the served ranges")
        return found

    def close() -> None:
        if current:
            start = current[0].address
            blocks.append(Block(device.role, start, current[-1].end - start, tuple(current)))

    for reg in wanted:
        if current:
            same_range = served_range(current[0]) == served_range(reg)
            fits = reg.end - current[0].address <= max_words
            if not (same_range and fits):
                close()
                current = []
        current.append(reg)
    close()
    return tuple(blocks)

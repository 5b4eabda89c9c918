"""A Venus GX stand-in: a real Modbus-TCP server (pymodbus) answering like the GX does.

The server runs in a background thread with its own asyncio loop. It serves
each device role of the register map at its unit ID (the system service also
at unit 0), at the official addresses, with the GX's quirks:

- an unknown unit ID, or a unit ID without the addressed service, answers
  exception 0x0A (`absent_code`; 0x0B on Venus OS before 3.70);
- a read that starts or ends outside a served range, or crosses an undefined
  gap, answers 0x02; RESERVED words inside a served range read 0xFFFF, other
  unmapped words 0;
- an invalid D-Bus value reads as 0 (`set_invalid`);
- writes (function codes 6, 16, 23) answer 0x02; other function codes than
  3/4 answer 0x01.

Values are set in decoded units with `set_values()`, from any thread; that is
the whole interface a plant model needs. Every request is recorded in
`requests` as (unit_id, function_code, address, count). For fault tests:
`silent = True` accepts connections but never answers, `exception_override`
forces an exception code per role, `remove_device()` makes a device absent,
`drop_connections()` resets the clients' connections, `stop()`/`start()` is a
restart on the same port. `frozen = True` is a hung driver behind Victron's
cache: reads go on succeeding with the last values, `set_values()` is
ignored. `jitter_w` adds a real meter's last-digit flicker (+-jitter_w W,
alternating per publish) to the grid, meter and consumption powers, so a
constant plant does not look frozen (pvheater.control.freshness).
`add_charger(unit_id)` serves a further solar charger (several MPPTs; its
values are named "mppt_yield_w#<unit_id>" ...).
`wrap = True` makes a value that does not fit its register wrap around, as
Victron's server does (-33000 W on an int16 reads +32536), instead of raising.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType

from pymodbus.client import ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer

from pvheater.config import UnitIds
from pvheater.control.measurements import CHARGER_SEPARATOR
from pvheater.errors import PvHeaterError
from pvheater.registers import Register, RegisterMap, round_half_away
from pvheater.sim.meter_noise import METERED_PREFIXES

log = logging.getLogger(__name__)
logging.getLogger("pymodbus").addHandler(logging.NullHandler())

READ_CODES = frozenset({3, 4})
WRITE_CODES = frozenset({6, 16, 23})
RESERVED_WORD = 0xFFFF
START_TIMEOUT_S = 10.0

#: A sunny noon on an ESS with a full battery: the MPPT sits in float, voltage-limited
#: (PV held back), the battery near 0 W, the grid near 0 W.
SAMPLE_VALUES: dict[str, float] = {
    "ac_consumption_l1_w": 420,
    "ac_consumption_l2_w": 0,
    "ac_consumption_l3_w": 0,
    "grid_l1_w": -5,
    "grid_l2_w": 0,
    "grid_l3_w": 0,
    "active_input_source": 1,
    "battery_voltage_v": 55.2,
    "battery_current_a": 0.4,
    "battery_power_w": 22,
    "battery_soc_pct": 100,
    "battery_state": 1,
    "pv_dc_w": 480,
    "mppt_state": 5,
    "mppt_pv_voltage_v": 118.45,
    "mppt_operation_mode": 1,
    "mppt_yield_w": 480,
    "bms_power_w": 22,
    "bms_soc_pct": 100,
    "meter_import_kwh": 1523.45,
    "meter_export_kwh": 312.8,
    "meter_l1_w": -5,
    "meter_l2_w": 0,
    "meter_l3_w": 0,
    "vebus_ac_in_l1_w": -10,
    "vebus_ac_in_l2_w": 0,
    "vebus_ac_in_l3_w": 0,
    "vebus_ac_out_l1_w": 420,
    "vebus_ac_out_l2_w": 0,
    "vebus_ac_out_l3_w": 0,
    "vebus_ac_out_l1_hz": 50.0,
    "vebus_state": 9,
    "vebus_mode": 3,
}


def encode_register(register: Register, value: float | None) -> list[int]:
    """The words the GX sends for a decoded value (None: the GX's invalid value, all zero)."""
    if value is None:
        return [0] * register.words
    raw = register.encode_value(value)
    return ModbusTcpClient.convert_to_registers(raw, ModbusTcpClient.DATATYPE[register.type.upper()])


def wrapped(register: Register, value: float) -> float:
    """The value a register shows when value does not fit and wraps around (two's complement for signed types)."""
    bits = 16 * register.words
    raw = round_half_away(value * register.scale) % (1 << bits)
    if register.type.startswith("int") and raw >= 1 << (bits - 1):
        raw -= 1 << bits
    return raw / register.scale


class _GxContext(ModbusServerContext):
    """The datastore pymodbus asks for each request; it hands every request to the simulator.

    Why not the public API: pymodbus 3.x's public server datastore is
    SimDevice/SimData (SimCore), and it cannot be a GX: each SimDevice's unit ID
    and register blocks are fixed when the server starts (no device can go
    absent or come back, so no 0x0A/0x0B per unit at run time); addresses
    outside its blocks are answered 0x02 before its `action` callback runs (so
    per-role exception overrides and the request log would miss those); and an
    action cannot withhold the answer (`silent`). The deprecated
    ModbusServerContext is the one way to see every request with its unit ID,
    but its public __init__ accepts only device contexts and logs a deprecation
    warning. So this subclass skips that __init__ and sets the two attributes
    the server reads (`old_simulator`: hand requests to this context as they
    come; `simdevices`: none); both are plain attributes of pymodbus 3.16, not
    underscored, but not documented either -- check them when pymodbus moves.
    """

    def __init__(self, simulator: GxSimulator) -> None:
        self.old_simulator = True
        self.simdevices = []
        self._simulator = simulator

    def device_ids(self) -> list[int]:
        """Unit IDs served (used by pymodbus only for broadcasts, which are off)."""
        return sorted(set(self._simulator.unit_ids.values()) | {0})

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | ExcCodes:
        """Answer a read (or refuse another function code)."""
        answer = self._simulator._answer(device_id, func_code, address, count, write=False)
        if answer is None:
            raise NoSuchIdException("silent simulator drops the request")
        return answer

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        """Refuse a write, as a GX does for read-only registers."""
        answer = self._simulator._answer(device_id, func_code, address, len(values), write=True)
        if answer is None:
            raise NoSuchIdException("silent simulator drops the request")
        return answer if isinstance(answer, ExcCodes) else ExcCodes.ILLEGAL_ADDRESS


class GxSimulator:
    """A Modbus-TCP server in a background thread that answers like a Venus GX."""

    def __init__(
        self,
        register_map: RegisterMap,
        unit_ids: UnitIds,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self._map = register_map
        self._by_name = register_map.by_name()
        self._port = port
        self._lock = threading.Lock()
        self._configured: dict[str, int] = {}
        for role in register_map.devices:
            unit_id = getattr(unit_ids, role, None)
            if unit_id is not None:
                self._configured[role] = unit_id
        self._units = dict(self._configured)
        self._words: dict[str, dict[int, int]] = {}
        for role, device in register_map.devices.items():
            words = {a: RESERVED_WORD for first, last in device.reserved for a in range(first, last + 1)}
            self._words[role] = words
        #: Extra solar chargers: unit ID -> their words (values named "mppt_state#<unit>" ...).
        self._chargers: dict[int, dict[int, int]] = {}
        self._requests: list[tuple[int, int, int, int]] = []
        #: True: accept connections and requests but never answer.
        self.silent = False
        #: Exception code answered for every read of a role, e.g. {"mppt": 0x0B}.
        self.exception_override: dict[str, int] = {}
        #: Exception code for a unit ID without the addressed device (0x0B before Venus OS 3.70).
        self.absent_code = 0x0A
        #: True: values stop updating (set_values ignored), reads still succeed -- a frozen GX.
        self.frozen = False
        #: True: out-of-range values wrap around their register, as Victron's server does.
        self.wrap = False
        #: Flicker of the fast-moving AC powers in W, alternating sign per set_values() (0: exact values).
        self.jitter_w = 0
        self._publishes = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._server: ModbusTcpServer | None = None
        self._start_error = ""

    # --- configuration and values (any thread) -------------------------------

    @property
    def port(self) -> int:
        """The TCP port: the bound one once started (kept for restarts), else the requested one."""
        return self._port

    @property
    def unit_ids(self) -> dict[str, int]:
        """Unit ID of each role currently served."""
        with self._lock:
            return dict(self._units)

    @property
    def requests(self) -> list[tuple[int, int, int, int]]:
        """Every request received so far: (unit_id, function_code, address, count)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._requests.clear()

    def set_values(self, values: Mapping[str, float | None]) -> None:
        """Set values by register name in decoded units (None: invalid, reads 0); all or none."""
        if self.frozen:
            return
        encoded: list[tuple[Register, list[int], int | None]] = []
        self._publishes += 1
        flicker = self.jitter_w if self._publishes % 2 else -self.jitter_w
        for name, value in values.items():
            base, _, unit = name.partition(CHARGER_SEPARATOR)
            register = self._by_name.get(base)
            if register is None or (unit and (register.role != "mppt" or int(unit) not in self._chargers)):
                raise ValueError(f"GX simulator: unknown value name {name!r}")
            if flicker and value is not None and name.startswith(METERED_PREFIXES) and name.endswith("_w"):
                value = max(0.0, value + flicker) if name.startswith("ac_consumption") else value + flicker
            if self.wrap and value is not None:
                value = wrapped(register, value)
            encoded.append((register, encode_register(register, value), int(unit) if unit else None))
        with self._lock:
            for register, words, charger in encoded:
                store = self._words[register.role] if charger is None else self._chargers[charger]
                for offset, word in enumerate(words):
                    store[register.address + offset] = word

    def set_invalid(self, names: Iterable[str]) -> None:
        """Make values read as 0, the GX's invalid D-Bus value."""
        self.set_values(dict.fromkeys(names))

    def add_charger(self, unit_id: int) -> None:
        """Serve one more solar charger at unit_id; its values are named e.g. "mppt_yield_w#<unit_id>"."""
        device = self._map.devices["mppt"]
        with self._lock:
            self._chargers[unit_id] = {
                a: RESERVED_WORD for first, last in device.reserved for a in range(first, last + 1)
            }

    def remove_device(self, role: str) -> None:
        """Stop serving a role: its unit ID then answers `absent_code`."""
        with self._lock:
            self._units.pop(role, None)

    def add_device(self, role: str, unit_id: int | None = None) -> None:
        """Serve a role (again), at unit_id or its configured unit ID."""
        if role not in self._map.devices:
            raise ValueError(f"GX simulator: the register map has no role {role!r}")
        uid = unit_id if unit_id is not None else self._configured.get(role)
        if uid is None:
            raise ValueError(f"GX simulator: no unit ID for role {role!r}")
        with self._lock:
            self._units[role] = uid

    # --- server lifecycle ----------------------------------------------------

    def start(self) -> GxSimulator:
        """Start serving in a background thread (no-op when running); return self."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._start_error = ""
        thread = threading.Thread(target=self._serve, args=(ready,), name="gx-simulator", daemon=True)
        thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise PvHeaterError(f"GX simulator did not start on {self.host}:{self._port}")
        if self._start_error:
            thread.join(START_TIMEOUT_S)
            raise PvHeaterError(self._start_error)
        self._thread = thread
        log.debug("GX simulator listening on %s:%d", self.host, self._port)
        return self

    def stop(self) -> None:
        """Stop serving and drop every connection (no-op when stopped); start() serves again on the same port."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or event is None:
            return
        loop.call_soon_threadsafe(event.set)
        thread.join(START_TIMEOUT_S)
        self._thread = None

    def drop_connections(self) -> int:
        """Reset every client connection now, as a dropped link does; the server keeps listening. How many."""
        loop = self._loop
        if self._thread is None or loop is None:
            return 0
        return asyncio.run_coroutine_threadsafe(self._drop_connections(), loop).result(START_TIMEOUT_S)

    async def _drop_connections(self) -> int:
        server = self._server
        if server is None:
            return 0
        connections = list(server.active_connections.values())
        for connection in connections:
            transport = connection.transport
            if transport is not None:
                transport.abort()  # type: ignore[attr-defined]
        return len(connections)

    def __enter__(self) -> GxSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        server = ModbusTcpServer(_GxContext(self), address=(self.host, self._port), ignore_missing_devices=True)
        try:
            await server.serve_forever(background=True)
        except RuntimeError:
            self._start_error = (
                f"GX simulator cannot listen on {self.host}:{self._port} (port in use or address not available)"
            )
            ready.set()
            return
        listener = server.transport
        sockets = getattr(listener, "sockets", None) or ()
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        self._server = server
        ready.set()
        await self._stop_event.wait()
        self._server = None
        await server.shutdown()

    # --- answering (server thread) -------------------------------------------

    def _answer(
        self, unit_id: int, function_code: int, address: int, count: int, write: bool
    ) -> list[int] | ExcCodes | None:
        """Record a request and answer it: words, an exception code, or None to stay silent."""
        with self._lock:
            self._requests.append((unit_id, function_code, address, count))
            if self.silent:
                return None
            if function_code not in READ_CODES | WRITE_CODES:
                return ExcCodes.ILLEGAL_FUNCTION
            roles = {role for role, uid in self._units.items() if uid == unit_id}
            if unit_id == 0 and "system" in self._units:
                roles.add("system")
            charger = self._chargers.get(unit_id)
            if charger is not None:
                roles.add("mppt")
            if not roles:
                return ExcCodes(self.absent_code)
            role = self._map.role_at(address)
            if role is None:
                return ExcCodes.ILLEGAL_ADDRESS
            if role not in roles:
                return ExcCodes(self.absent_code)
            if role in self.exception_override:
                return ExcCodes(self.exception_override[role])
            if write or function_code not in READ_CODES:
                return ExcCodes.ILLEGAL_ADDRESS
            if count < 1 or self._map.devices[role].served_range(address, address + count - 1) is None:
                return ExcCodes.ILLEGAL_ADDRESS
            words = charger if role == "mppt" and charger is not None else self._words[role]
            return [words.get(a, 0) for a in range(address, address + count)]

"""Read the Venus GX over Modbus-TCP: one block read per device, decoded into a Measurements snapshot.

This is the only module of the control path that imports pymodbus, and it
only ever sends read requests (function code 3). Every Modbus or socket
failure leaves it as one of our errors:

- `GxUnavailable`: no connection, no answer within `timeout_s`, a dropped
  link, a reply that does not match its request. The client is closed and the next attempt waits (capped exponential
  backoff from `reconnect_min_s` to `reconnect_max_s`, measured with the
  injected clock); until then `read()` fails at once without network traffic.
- `DeviceAbsent`: the GX says no system service sits behind its unit ID.
  Other absent devices (exception 0x0A / 0x0B) do not raise: their role goes
  into `Measurements.absent_roles` and a message into `GxReader.problems`.
- `GxError`: any other exception reply, e.g. 0x02 when the register map does
  not match this GX.

One deadline per read: connect and every request of one `read()` share
`timeout_s` (monotonic), and each socket wait is bounded by the time left, so a
GX that answers slowly -- or dribbles a frame in pieces -- cannot stretch a
read past it. The snapshot is stamped with the time its first request was
sent. Every reply is checked byte by byte against its request before pymodbus
decodes it (protocol ID 0, transaction ID, unit ID, function code 3 or its
exception 0x83, byte count = 2 x the registers asked for, exactly one frame);
anything else is a failed read, and at most one frame's bytes are ever held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from pvheater.config import GxConfig
from pvheater.control.measurements import CHARGER_SEPARATOR, Measurements
from pvheater.errors import DeviceAbsent, GxError, GxUnavailable
from pvheater.registers import Block, Register, RegisterMap, plan_blocks

log = logging.getLogger(__name__)
# pymodbus logs every failed connect at ERROR on its own logger; we report those
# ourselves as GxUnavailable. Without a handler Python's last-resort handler
# would print them to stderr beside our one-line messages.
logging.getLogger("pymodbus").addHandler(logging.NullHandler())

#: pymodbus data type of each register type of the map.
DATATYPES: dict[str, ModbusTcpClient.DATATYPE] = {
    "int16": ModbusTcpClient.DATATYPE.INT16,
    "uint16": ModbusTcpClient.DATATYPE.UINT16,
    "int32": ModbusTcpClient.DATATYPE.INT32,
    "uint32": ModbusTcpClient.DATATYPE.UINT32,
}
#: Exception codes meaning "no such device behind this unit ID" (0x0A since Venus OS 3.70, 0x0B before).
ABSENT_CODES = frozenset({0x0A, 0x0B})
ILLEGAL_ADDRESS = 0x02
EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target failed to respond",
}
#: Unit IDs a GX can have, probed by discovery (the common ones first): the system (100, 0); the unit IDs that
#: Victron's unitid2di.csv maps to device instances above 247 -- VE.Bus ports (Venus GX 242, Cerbo GX 227,
#: MultiPlus-II / EasySolar-II GX 228, CCGX 246), VE.Direct ports (Venus GX 245 243, Cerbo GX 226 224 223,
#: MultiPlus-II GX 229 230, CCGX 247 245, USB 231-239), the CAN-bus BMS 225, further ttys 204-222 and 244;
#: and devices whose unit ID is their device instance: energy meters (VRM instance, often 30-33, 40-43),
#: VE.Can solar chargers and BMSs (small instances, 1-9).
KNOWN_UNIT_IDS: tuple[int, ...] = (
    100, 0, 242, 227, 228, 245, 243, 226, 224, 223, 229, 230, 239, 225, 30, 40, 31, 32, 33, 41, 42, 43, 246, 247,
    244, *range(231, 239), *range(204, 223), *range(1, 10),
)
#: What sits behind each unit ID of Victron's unitid2di.csv (dbus-modbustcp v1.0.101): the GX model's port whose
#: device instance the table maps to that unit ID. The VE.Bus port's instance differs by GX model, so its unit ID
#: does too. The Ekrano GX is not in that table: its ports' unit IDs are whatever its Available services list
#: shows (discovery probes every unit ID of the table; --full all 0-247).
PORT_UNIT_IDS: dict[int, str] = {
    242: "Venus GX VE.Bus port", 243: "Venus GX VE.Direct 2 port", 245: "Venus GX VE.Direct 1 / CCGX VE.Direct 2 port",
    227: "Cerbo GX VE.Bus port", 226: "Cerbo GX VE.Direct 1 port", 224: "Cerbo GX VE.Direct 2 port",
    223: "Cerbo GX VE.Direct 3 port",
    228: "MultiPlus-II / EasySolar-II GX VE.Bus port", 229: "MultiPlus-II / EasySolar-II GX VE.Direct port (ttyS2)",
    230: "MultiPlus-II / EasySolar-II GX VE.Direct port (ttyS1)",
    246: "CCGX VE.Bus port", 247: "CCGX VE.Direct 1 port", 225: "CAN-bus BMS", 239: "VE.Direct via USB (ttyUSB0)",
    **{u: f"VE.Direct via USB / Octo GX VE.Direct {n}" for u, n in
       ((238, 3), (237, 4), (236, 5), (235, 6), (233, 7), (232, 8), (231, 9), (234, 10))},
    100: "system service",
}
#: The only function code pvheater sends (read holding registers), and its exception reply.
READ_HOLDING = 0x03
READ_HOLDING_EXCEPTION = 0x83
#: MBAP header bytes before the function code: transaction ID, protocol ID, length, unit ID.
MBAP_BYTES = 7
#: Largest Modbus-TCP frame (MBAP + 253-byte PDU); the reader never holds more than one.
MAX_FRAME_BYTES = 260


def decode_words(register: Register, words: Sequence[int]) -> float | None:
    """Decode one register from its words; None when the value is implausible."""
    raw = ModbusTcpClient.convert_from_registers(list(words), DATATYPES[register.type])
    if not isinstance(raw, int):  # pragma: no cover - integer types always give int
        raise TypeError(f"register {register.name!r}: pymodbus returned {raw!r}")
    value = register.decode_raw(raw)
    return value if register.plausible(value) else None


#: Watts below which a power counts as "about zero" in the balance checks (meter noise, standby).
BALANCE_MARGIN_W = 50.0


def refuse_implausible(values: dict[str, float | None]) -> dict[str, str]:
    """Mark as invalid (None, in place) the values the energy balance refutes; why, by register name.

    The GX sends an invalid D-Bus value as 0, indistinguishable from a real 0,
    and a 16-bit register out of range wraps. Conservative rules, each one a
    physical impossibility:

    - PV 0 W (system or MPPT) while the battery charges more than the grid
      (and AC-coupled PV) gives: the charge comes from PV, so PV is unknown; PV 0 W
      while the inverter makes more AC from DC (AC out - AC in) than the battery
      gives; AC PV 0 W on every phase while the battery charges more than grid and DC PV give;
    - grid (system or meter) 0 W on a phase with consumption and no inverter
      output on it: that consumption comes from the grid;
    - grid 0 W on a phase where the other grid register (the system's, or the
      meter's it is taken from) shows more than the margin either way;
    - grid 0 W on a phase whose inverter feeds back through its AC input more
      than the loads on that input can take: the rest goes to the grid (export);
    - consumption 0 W on a phase the inverter feeds;
    - grid 0 W on a phase whose loads take more than the inverter (and AC PV) give
      (less what it feeds back through its input), or whose inverter draws from its AC input;
    - consumption 0 W on a phase importing power the inverter does not take;
    - inverter AC out 0 W on a phase consuming more than grid and AC PV give, AC in
      0 W on a phase importing more than it consumes;
    - battery power (system or BMS) 0 W with a battery current of 1 A or more, and the reverse;
    - battery power (int16) far from voltage x current, or with the current
      unknown: a wrapped register cannot be ruled out.
    """
    refused: dict[str, str] = {}
    v = dict(values)

    def known(name: str) -> float | None:
        return v.get(name)

    def refuse(name: str, why: str) -> None:
        if values.get(name) is not None:
            values[name] = None
            refused[name] = why

    battery_w = known("battery_power_w")
    if battery_w is None:
        battery_w = known("bms_power_w")
    grid = [known(f"grid_l{n}_w") for n in (1, 2, 3)]
    grid_w = sum(g for g in grid if g is not None) if any(g is not None for g in grid) else None
    ac_pv_w = sum(known(f"pv_ac_out_l{n}_w") or 0.0 for n in (1, 2, 3))
    import_w = max(0.0, grid_w or 0.0) + ac_pv_w  # AC-coupled PV charges the battery through the inverter
    if battery_w is not None and grid_w is not None and battery_w > import_w + BALANCE_MARGIN_W:
        for name in ("pv_dc_w", "mppt_yield_w"):
            if known(name) == 0:
                refuse(name, f"0 W while the battery charges {battery_w:.0f} W, more than the grid gives")
    for name, other in (("pv_dc_w", "mppt_yield_w"), ("mppt_yield_w", "pv_dc_w")):
        other_w = known(other)
        if known(name) == 0 and other_w is not None and other_w > BALANCE_MARGIN_W:
            refuse(name, f"0 W while {other} shows {other_w:.0f} W of the same DC PV")
    outs = [(known(f"vebus_ac_out_l{n}_w"), known(f"vebus_ac_in_l{n}_w")) for n in (1, 2, 3)]
    inverting_w = sum(out - inp for out, inp in outs if out is not None and inp is not None)
    if battery_w is not None and inverting_w > max(0.0, -battery_w) + BALANCE_MARGIN_W:
        for name in ("pv_dc_w", "mppt_yield_w"):  # the inverter's DC comes from PV or the battery
            if known(name) == 0:
                refuse(name, f"0 W while the inverter makes {inverting_w:.0f} W from DC, more than the battery "
                             "gives")
    dc_pv_w = values.get("pv_dc_w")
    if dc_pv_w is None:
        dc_pv_w = values.get("mppt_yield_w")
    grid_import_w = max(0.0, grid_w or 0.0)
    if (battery_w is not None and grid_w is not None and ac_pv_w == 0
            and battery_w > grid_import_w + (dc_pv_w or 0.0) + BALANCE_MARGIN_W):
        for name in ("pv_ac_out_l1_w", "pv_ac_out_l2_w", "pv_ac_out_l3_w"):
            if known(name) == 0:
                refuse(name, f"0 W while the battery charges {battery_w:.0f} W, more than grid and DC PV give")
    for n in (1, 2, 3):
        consumption = known(f"ac_consumption_l{n}_w")
        inverter = known(f"vebus_ac_out_l{n}_w")
        multi_in = known(f"vebus_ac_in_l{n}_w")
        pv_ac = known(f"pv_ac_out_l{n}_w") or 0.0
        fed_back_w = max(0.0, -multi_in) if multi_in is not None else 0.0  # the inverter feeding its input's loads
        if (consumption is not None and inverter is not None
                and consumption > inverter + pv_ac + fed_back_w + BALANCE_MARGIN_W):
            for name in (f"grid_l{n}_w", f"meter_l{n}_w"):
                if known(name) == 0:
                    refuse(name, f"0 W while L{n} consumes {consumption:.0f} W and the inverter gives {inverter:.0f} W")
        if multi_in is not None and multi_in > BALANCE_MARGIN_W:
            for name in (f"grid_l{n}_w", f"meter_l{n}_w"):
                if known(name) == 0:
                    refuse(name, f"0 W while the inverter draws {multi_in:.0f} W from the grid on L{n}")
        if multi_in is not None and consumption is not None and inverter is not None:
            # loads on the inverter's AC input: all consumption beyond what its output (and AC PV there) carries;
            # the grid is the AC input's flow plus those loads (less any PV on the input, which only exports more)
            input_loads_w = max(0.0, consumption - inverter - pv_ac)
            if multi_in + input_loads_w < -BALANCE_MARGIN_W:
                for name in (f"grid_l{n}_w", f"meter_l{n}_w"):
                    if known(name) == 0:
                        refuse(name, f"0 W while the inverter feeds {-multi_in:.0f} W back on L{n} and its "
                                     f"input's loads take {input_loads_w:.0f} W")
        for name, other in ((f"grid_l{n}_w", f"meter_l{n}_w"), (f"meter_l{n}_w", f"grid_l{n}_w")):
            other_w = known(other)  # the system's grid is the meter's reading: one 0 beside the other is invalid
            if known(name) == 0 and other_w is not None and abs(other_w) > BALANCE_MARGIN_W:
                refuse(name, f"0 W while {other} shows {other_w:.0f} W of the same grid")
        grid_n = values.get(f"grid_l{n}_w")  # after the grid's own checks: a refused grid blames nothing else
        if grid_n is None:
            grid_n = values.get(f"meter_l{n}_w")
        if inverter is not None and inverter > BALANCE_MARGIN_W and known(f"ac_consumption_l{n}_w") == 0:
            refuse(f"ac_consumption_l{n}_w", f"0 W while the inverter feeds L{n} with {inverter:.0f} W")
        if (grid_n is not None and grid_n > BALANCE_MARGIN_W and multi_in is not None and abs(multi_in) < 20
                and known(f"ac_consumption_l{n}_w") == 0):
            refuse(f"ac_consumption_l{n}_w", f"0 W while L{n} imports {grid_n:.0f} W the inverter does not take")
        if (consumption is not None and grid_n is not None and consumption > grid_n + pv_ac + BALANCE_MARGIN_W
                and known(f"vebus_ac_out_l{n}_w") == 0):
            refuse(f"vebus_ac_out_l{n}_w", f"0 W while L{n} consumes {consumption:.0f} W, more than the grid gives")
        if (grid_n is not None and consumption is not None and grid_n > consumption + BALANCE_MARGIN_W
                and known(f"vebus_ac_in_l{n}_w") == 0):
            refuse(f"vebus_ac_in_l{n}_w", f"0 W while L{n} imports {grid_n:.0f} W beyond its {consumption:.0f} W loads")
    power, current, volts = known("battery_power_w"), known("battery_current_a"), known("battery_voltage_v")
    bms = known("bms_power_w")
    if power == 0 and current is not None and abs(current) >= 1.0:
        refuse("battery_power_w", f"0 W with {current:g} A")
    elif current == 0 and power is not None and abs(power) >= BALANCE_MARGIN_W:
        # an invalid 0 A, or an idle battery behind a wrapped 16-bit power: neither can be told, neither is believed
        refuse("battery_current_a", f"0 A with {power:.0f} W")
        refuse("battery_power_w", f"{power:.0f} W with 0 A: wrapped, or the current is an invalid 0")
    elif power is not None and current is None:
        refuse("battery_power_w", "battery current unknown: a 16-bit power cannot be checked for a wrap")
    elif power is not None and current is not None and volts is not None:
        product_w = volts * current
        if abs(power - product_w) > max(200.0, 0.25 * abs(product_w)):
            refuse("battery_power_w", f"{power:.0f} W but {volts:g} V x {current:g} A = {product_w:.0f} W (wrapped?)")
    power, current = values.get("battery_power_w"), values.get("battery_current_a")  # what survived the checks
    if bms == 0 and ((current is not None and abs(current) >= 1.0) or (power is not None and abs(power) >= 50)):
        refuse("bms_power_w", "0 W while the system sees the battery " + (
            f"at {current:g} A" if current is not None and abs(current) >= 1.0 else f"at {power:.0f} W"))
    return refused


def absent_message(role: str, unit_id: int, code: int) -> str:
    """The one-line explanation for a device the GX says is not there."""
    return (
        f"no {role} device at unit ID {unit_id} (GX answered 0x{code:02X}); check Settings > Services > "
        "Modbus TCP > Available services on the GX, or run 'pvheater read-registers --discover'"
    )


class _ExceptionReply(Exception):
    """Internal: the GX answered a request with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exception 0x{code:02X}")
        self.code = code


class _ConnectFailed(ConnectionException):
    """Internal: the TCP connection to the GX could not be opened."""


class _NoAnswer(ModbusIOException):
    """Internal: the read's deadline passed before a whole reply arrived."""


class _BadReply(ModbusIOException):
    """Internal: a reply that does not match its request (or is no Modbus-TCP frame)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def check_reply(request: bytes, reply: bytes) -> bool:
    """True when reply holds one whole frame that answers request (FC 3); raises _BadReply when it cannot.

    False: a valid beginning, wait for more bytes. Checked: protocol ID 0, the
    request's transaction and unit ID, function code 3 (or exception 0x83),
    byte count twice the registers asked for, a length field that fits, and no
    byte beyond the frame.
    """
    if len(reply) >= 4 and reply[2:4] != b"\0\0":
        raise _BadReply(f"protocol ID {int.from_bytes(reply[2:4], 'big')} instead of 0")
    if len(reply) >= 2 and reply[0:2] != request[0:2]:
        raise _BadReply(
            f"transaction ID {int.from_bytes(reply[0:2], 'big')} instead of {int.from_bytes(request[0:2], 'big')}"
        )
    if len(reply) >= MBAP_BYTES and reply[6] != request[6]:
        raise _BadReply(f"unit ID {reply[6]} instead of {request[6]}")
    if len(reply) < MBAP_BYTES + 1:
        return False
    function_code = reply[7]
    length = int.from_bytes(reply[4:6], "big")
    if function_code == READ_HOLDING_EXCEPTION:
        expected = 3  # unit ID, function code, exception code
    elif function_code == READ_HOLDING:
        words = int.from_bytes(request[10:12], "big")
        expected = 3 + 2 * words  # unit ID, function code, byte count, data
        if len(reply) >= MBAP_BYTES + 2 and reply[8] != 2 * words:
            raise _BadReply(f"byte count {reply[8]} for {words} registers")
    else:
        raise _BadReply(f"function code 0x{function_code:02X} in reply to 0x03")
    if length != expected:
        raise _BadReply(f"length field {length} instead of {expected}")
    if len(reply) > 6 + length:
        raise _BadReply(f"{len(reply) - 6 - length} bytes beyond the frame")
    return len(reply) == 6 + length


class _DeadlineClient(ModbusTcpClient):
    """pymodbus' TCP client with every socket wait bounded by the read's deadline and each reply checked.

    `deadline_s` (time.monotonic) is set by the reader before each read;
    `recv` lowers the client's timeout to the time left before every wait
    (pymodbus checks its own timeout only when bytes arrive), and the
    trace_packet hook sees the request sent and every byte received.
    """

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        super().__init__(host, port=port, timeout=timeout_s, retries=0, trace_packet=self._trace)
        self.deadline_s = time.monotonic() + timeout_s
        #: The last request frame sent (to check its reply against).
        self.request = b""
        #: time.monotonic() of the last request sent.
        self.sent_s: float | None = None

    def time_left_s(self) -> float:
        """Seconds until the deadline (at least a millisecond, so a wait never becomes unbounded)."""
        return max(0.001, self.deadline_s - time.monotonic())

    def connect(self) -> bool:
        """Open the connection within the time left."""
        self.comm_params.timeout_connect = self.time_left_s()
        return bool(super().connect())

    def recv(self, size: int | None) -> bytes:
        """Wait for bytes at most until the deadline; _NoAnswer once it has passed."""
        if time.monotonic() >= self.deadline_s:
            raise _NoAnswer("deadline passed")
        self.comm_params.timeout_connect = self.time_left_s()
        data = super().recv(size)
        if not data and time.monotonic() >= self.deadline_s:
            raise _NoAnswer("deadline passed")
        return data

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.request = bytes(data)
            self.sent_s = time.monotonic()
            return data
        check_reply(self.request, data)  # a bad header or anything beyond one frame raises here
        if len(data) > MAX_FRAME_BYTES:  # pragma: no cover - check_reply bounds a frame by its length field
            raise _BadReply(f"{len(data)} bytes without a whole frame")
        return data


class GxReader:
    """Reads every mapped value from the GX over one persistent Modbus-TCP connection.

    `clock` returns monotonic seconds; it stamps the snapshots and times the
    reconnect backoff, so tests can inject a fake one.
    """

    def __init__(
        self,
        gx: GxConfig,
        register_map: RegisterMap,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gx = gx
        self._map = register_map
        self._clock = clock
        self._client: _DeadlineClient | None = None
        #: (role or "mppt#<unit>" for an extra solar charger, unit ID, block, suffix of its value names).
        self._plan: list[tuple[str, int, Block, str]] = []
        for role, device in register_map.devices.items():
            unit_id = getattr(gx.unit_ids, role, None)
            if unit_id is not None:
                self._plan.extend((role, unit_id, block, "") for block in plan_blocks(device))
        self._extra_chargers: tuple[int, ...] = ()
        if "mppt" in register_map.devices and gx.solar_chargers:
            self._extra_chargers = tuple(u for u in dict.fromkeys(gx.solar_chargers) if u != gx.unit_ids.mppt)
            for unit_id in self._extra_chargers:
                suffix = f"{CHARGER_SEPARATOR}{unit_id}"
                self._plan.extend(
                    (f"mppt{suffix}", unit_id, block, suffix) for block in plan_blocks(register_map.devices["mppt"])
                )
        #: Why each absent role was not read in the last read(), by role.
        self.problems: dict[str, str] = {}
        self.refused: dict[str, str] = {}
        self._failures = 0
        self._retry_at_s: float | None = None
        self._last_failure = ""

    @property
    def endpoint(self) -> str:
        """The GX as host:port."""
        return f"{self._gx.host}:{self._gx.port}"

    @property
    def unit_ids(self) -> dict[str, int | None]:
        """The configured unit ID of each mapped role (None: not installed)."""
        return {role: getattr(self._gx.unit_ids, role, None) for role in self._map.devices}

    def read(self) -> Measurements:
        """Read every configured device once, all within timeout_s, and return the decoded snapshot.

        The snapshot is stamped (with the injected clock) when its first request is sent.
        """
        self._check_backoff(self._clock())
        values: dict[str, float | None] = {reg.name: None for reg in self._map.all_registers()}
        absent: dict[str, str] = {}
        stamp_s: float | None = None
        try:
            client = self._connect()
            for role, unit_id, block, suffix in self._plan:
                if role in absent:
                    continue
                if stamp_s is None:
                    stamp_s = self._clock()
                try:
                    words = self._read_words(client, unit_id, block.address, block.count)
                except _ExceptionReply as reply:
                    absent[role] = self._explain(reply.code, role, unit_id, block)
                    continue
                for reg in block.registers:
                    offset = reg.address - block.address
                    values[reg.name + suffix] = decode_words(reg, words[offset : offset + reg.words])
        except (ModbusException, OSError) as exc:
            raise self._unavailable(exc) from None
        self._succeeded()
        for role in absent.keys() - self.problems.keys():
            log.info("%s", absent[role])  # reported to the caller in absent_roles / problems
        self.problems = absent
        #: Values the energy balance refuted in the last read (now None), with the reason, by register name.
        self.refused = refuse_implausible(values)
        self._sum_chargers(values, absent)
        return Measurements(
            time_s=self._clock() if stamp_s is None else stamp_s, values=values, absent_roles=frozenset(absent),
            refused=frozenset(self.refused),
        )

    def _sum_chargers(self, values: dict[str, float | None], absent: dict[str, str]) -> None:
        """With several solar chargers, mppt_yield_w becomes their sum (None when one of them is unknown)."""
        if not self._extra_chargers:
            return
        yields = [values.get("mppt_yield_w")] + [
            values.get(f"mppt_yield_w{CHARGER_SEPARATOR}{u}") for u in self._extra_chargers
        ]
        values["mppt_yield_w"] = None if any(y is None for y in yields) else sum(y for y in yields if y is not None)

    def probe(self, unit_id: int) -> tuple[str, ...]:
        """Which mapped roles answer at a unit ID, within timeout_s (reads each role's first register; never writes)."""
        self._check_backoff(self._clock())
        found: list[str] = []
        try:
            client = self._connect()
            for role, device in self._map.devices.items():
                first = device.registers[0]
                try:
                    self._read_words(client, unit_id, first.address, first.words)
                except _ExceptionReply:
                    continue
                found.append(role)
        except (ModbusException, OSError) as exc:
            raise self._unavailable(exc) from None
        self._succeeded()
        return tuple(found)

    def close(self) -> None:
        """Close the connection (the next read opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> GxReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals ---------------------------------------------------------

    def _connect(self) -> _DeadlineClient:
        """The client, connected, with the deadline of this read set timeout_s from now."""
        if self._client is None:
            self._client = _DeadlineClient(self._gx.host, self._gx.port, self._gx.timeout_s)
        self._client.deadline_s = time.monotonic() + self._gx.timeout_s
        if not self._client.connected:
            log.debug("connecting to GX at %s", self.endpoint)
            if not self._client.connect():
                raise _ConnectFailed(self.endpoint)
        return self._client

    @staticmethod
    def _read_words(client: _DeadlineClient, unit_id: int, address: int, count: int) -> list[int]:
        """One read_holding_registers request (function code 3); the only request this module sends."""
        if time.monotonic() >= client.deadline_s:
            raise _NoAnswer("deadline passed before the request")
        client.comm_params.timeout_connect = client.time_left_s()  # pymodbus' own deadline for this reply
        response = client.read_holding_registers(address, count=count, device_id=unit_id)
        if response.function_code not in (READ_HOLDING, READ_HOLDING_EXCEPTION):  # checked on the bytes too
            raise _BadReply(f"function code 0x{response.function_code:02X} in reply to 0x03")
        if response.isError():
            raise _ExceptionReply(int(getattr(response, "exception_code", 0)))
        words = list(response.registers)
        if len(words) != count:
            raise ModbusIOException(f"asked for {count} registers at {address}, got {len(words)}")
        return words

    def _explain(self, code: int, role: str, unit_id: int, block: Block) -> str:
        """Turn an exception reply into the message of an absent role, or raise."""
        if code in ABSENT_CODES:
            message = absent_message(role, unit_id, code)
            if role == "system":
                raise DeviceAbsent(
                    role,
                    unit_id,
                    f"GX at {self.endpoint} has no system service at unit ID {unit_id} "
                    f"(answered 0x{code:02X}); is gx.host a Victron GX? The system service answers on unit 100",
                )
            return message
        last = block.address + block.count - 1
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        if code == ILLEGAL_ADDRESS:
            raise GxError(
                f"GX at {self.endpoint} refused {role} registers {block.address}-{last} at unit ID {unit_id} "
                f"(0x02 {name}): the register map does not match this GX's firmware"
            )
        raise GxError(
            f"GX at {self.endpoint} answered 0x{code:02X} ({name}) reading {role} registers "
            f"{block.address}-{last} at unit ID {unit_id}"
        )

    def _check_backoff(self, now_s: float) -> None:
        if self._retry_at_s is not None and now_s < self._retry_at_s:
            raise GxUnavailable(f"{self._last_failure}; next attempt in {self._retry_at_s - now_s:.1f} s")

    def _unavailable(self, exc: BaseException) -> GxUnavailable:
        """Close the link, schedule the next attempt and build the one-line error."""
        self.close()
        self._last_failure = (
            f"GX at {self.endpoint} {self._describe(exc)}; check gx.host / gx.port and that Modbus TCP "
            "is enabled on the GX (Settings > Services > Modbus TCP)"
        )
        self._failures += 1
        doublings = min(self._failures - 1, 30)  # no float overflow after a long outage
        delay_s = min(self._gx.reconnect_min_s * 2**doublings, self._gx.reconnect_max_s)
        self._retry_at_s = self._clock() + delay_s
        log.debug("GX unavailable (%s); next attempt in %.1f s", exc, delay_s)
        return GxUnavailable(self._last_failure)

    def _describe(self, exc: BaseException) -> str:
        """What went wrong, in words, for the one-line error."""
        if isinstance(exc, _ConnectFailed):
            return f"cannot be reached (connection refused, unreachable or timed out after {self._gx.timeout_s:g} s)"
        if isinstance(exc, _NoAnswer):
            return f"did not answer within {self._gx.timeout_s:g} s"
        if isinstance(exc, _BadReply):
            return f"sent a reply that does not match the request ({exc.detail})"
        if isinstance(exc, ModbusIOException):
            return f"sent an unexpected reply ({exc})"
        if isinstance(exc, ConnectionException):
            return "closed the connection"
        return f"failed with a socket error ({exc})"

    def _succeeded(self) -> None:
        if self._failures:
            log.info("GX at %s answers again after %d failed attempt(s)", self.endpoint, self._failures)
        self._failures = 0
        self._retry_at_s = None
        self._last_failure = ""

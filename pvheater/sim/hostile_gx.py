"""A hostile GX of the project's own: a byte-level Modbus-TCP proxy on raw sockets (no pymodbus).

It sits between pvheater's reader and the project's GX simulator: every
request frame is forwarded to the simulator, and its reply frame comes back
through `mode`, which can misbehave at the byte level. Modes (set `mode` from
any thread; it applies to the next request):

- "pass": the simulator's reply as it is;
- "slow_split": the reply in two halves, each after `delay_s` (valid, but late);
- "wrong_fc_4" / "wrong_fc_0x17": the reply's function code byte set to 4 / 0x17;
- "wrong_tid" / "wrong_unit": transaction ID / unit ID off by one;
- "wrong_byte_count": the byte count two less than the data that follow;
- "pid_flood": no reply, a flood of frames with protocol ID 1 (until the client goes, at most `flood_s`);
- "truncated": the first half of the reply, then silence;
- "oversized": the reply followed by 300 bytes of garbage in the same write;
- "reset": the connection reset (RST) at each request;
- "frozen": the first reply seen for each (unit, address, count), replayed for ever with the new transaction ID;
- "max32": every 32-bit register of the map reads 0x7FFFFFFF.

`stop()` closes everything; the proxy's threads are daemons, its loops end on
their own once stopped.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from pvheater.registers import RegisterMap

MODES = (
    "pass", "slow_split", "wrong_fc_4", "wrong_fc_0x17", "wrong_tid", "wrong_unit", "wrong_byte_count",
    "pid_flood", "truncated", "oversized", "reset", "frozen", "max32",
)
_MBAP = 7


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _recv_frame(sock: socket.socket) -> bytes | None:
    """One Modbus-TCP frame (MBAP + PDU), None when the peer closed."""
    head = _recv_exact(sock, _MBAP)
    if head is None:
        return None
    length = struct.unpack(">H", head[4:6])[0]
    body = _recv_exact(sock, length - 1) if length > 1 else b""
    return None if body is None else head + body


class HostileGx:
    """The proxy: listens on 127.0.0.1 (an ephemeral port), forwards to upstream, mangles replies per `mode`."""

    def __init__(self, upstream_port: int, register_map: RegisterMap, *, delay_s: float = 1.0,
                 flood_s: float = 30.0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.register_map = register_map
        self.mode = "pass"
        self.delay_s = delay_s
        self.flood_s = flood_s
        #: Bytes of flood sent so far (pid_flood).
        self.flooded_bytes = 0
        self._frozen: dict[tuple[int, int, int], bytes] = {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="hostile-gx", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._stop.set()
        self._thread.join(timeout=2)
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()

    def clear_frozen(self) -> None:
        """Forget the replies "frozen" replays: the next freeze starts from the replies seen then."""
        self._frozen.clear()

    def __enter__(self) -> HostileGx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- server threads ---------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(client)
            threading.Thread(target=self._serve, args=(client,), name="hostile-gx-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._conns.append(upstream)
            while not self._stop.is_set():
                request = _recv_frame(client)
                if request is None:
                    return
                mode = self.mode
                if mode == "reset":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                upstream.sendall(request)
                reply = _recv_frame(upstream)
                if reply is None:
                    return
                if not self._answer(client, request, reply, mode):
                    return
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()

    def _answer(self, client: socket.socket, request: bytes, reply: bytes, mode: str) -> bool:
        """Send the (mangled) reply; False to end the connection."""
        unit, address, count = request[6], *struct.unpack(">HH", request[8:12])
        if mode == "slow_split":
            half = len(reply) // 2
            for part in (reply[:half], reply[half:]):
                if self._stop.wait(self.delay_s):
                    return False
                client.sendall(part)
            return True
        if mode == "truncated":
            client.sendall(reply[: len(reply) // 2])
            return not self._stop.wait(self.flood_s) and False
        if mode == "pid_flood":
            frame = request[0:2] + b"\x00\x01" + reply[4:]
            burst = frame * 64
            until = time.monotonic() + self.flood_s
            while time.monotonic() < until and not self._stop.is_set():
                client.sendall(burst)
                self.flooded_bytes += len(burst)
            return False
        out = bytearray(reply)
        if mode == "wrong_fc_4":
            out[7] = 0x04
        elif mode == "wrong_fc_0x17":
            out[7] = 0x17
        elif mode == "wrong_tid":
            out[0:2] = struct.pack(">H", (struct.unpack(">H", reply[0:2])[0] + 1) & 0xFFFF)
        elif mode == "wrong_unit":
            out[6] = (reply[6] + 1) & 0xFF
        elif mode == "wrong_byte_count" and out[7] == 0x03:
            out[8] = max(0, out[8] - 2)
        elif mode == "oversized":
            out += bytes(range(256)) + bytes(44)
        elif mode == "frozen":
            key = (unit, address, count)
            cached = self._frozen.setdefault(key, reply)
            out = bytearray(reply[0:2] + cached[2:])
        elif mode == "max32" and out[7] == 0x03:
            self._max32(out, address, count)
        client.sendall(bytes(out))
        return True

    def _max32(self, out: bytearray, address: int, count: int) -> None:
        """Every 32-bit register inside the reply's words set to 0x7FFFFFFF."""
        for register in self.register_map.all_registers():
            if register.words == 2 and address <= register.address and register.address + 1 < address + count:
                offset = 9 + 2 * (register.address - address)
                out[offset : offset + 4] = b"\x7f\xff\xff\xff"

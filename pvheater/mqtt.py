"""MQTT with Home Assistant discovery: the service's state out, mode and boost commands in (optional, `.[mqtt]`).

The only module that imports paho-mqtt. `MqttFrontend` is a front-end of
the hub (pvheater/service/hub.py): the control tick hands each new state to
`_take`, which keeps it in a one-slot queue (the newest replaces an older
one not yet sent: several states waiting go out as one, the newest). No
paho network thread runs (no `loop_start`): one worker thread drives the
client -- it waits in `select` on the broker's socket and a wake-up pipe,
connects and reconnects with backoff (1 s doubling up to
`mqtt.reconnect_max_s`), reads the broker's messages (commands), sends the
keep-alive pings (`loop_misc`), the announcements and any state the tick
did not send. While the connection is up and idle (the worker is not using
the client -- a lock taken only if free -- and nothing is left to write),
`_take` publishes the state itself: without a loop thread paho writes it
straight to the non-blocking socket, so it costs one socket write and wakes
no thread. Otherwise `_take` writes one byte to the wake-up pipe and
returns. Either way it never waits: a broker that is down, slow or stopped
never delays a tick, and what waits for it is bounded (one state in the
slot, at most one in paho's send queue).

Topics under `mqtt.base_topic` (default ``pvheater``):

- ``state``: the hub's state dict as JSON, retained; sent on every tick that
  changed something (besides its clock fields) and at least every
  `mqtt.publish_every_s`.
- ``availability``: ``online`` (retained) once connected; ``offline`` on a
  clean stop, and as the last will the broker sends when pvheater vanishes
  (kill -9, power cut, network loss).
- ``set/mode`` (auto, solar_only, off), ``set/boost`` (minutes, ``start``
  for the boost_minutes value, ``cancel``, or a JSON object such as
  ``{"temp_c": 60}``), ``set/boost_minutes`` (the boost button's length):
  validated, then sent to the hub as ``{"cmd": "mode", ...}`` /
  ``{"cmd": "boost", ...}``; the answer goes to ``result`` (not retained).
  Malformed ones are ignored with one log line per episode.
- ``boost_minutes``: the boost button's length (retained), the number's state.

With `mqtt.discovery_prefix` set, one retained config per entity under
``<prefix>/<component>/<node_id>/<object>/config`` makes Home Assistant
show one device with sensors, binary sensors, a mode select, boost buttons
and a boost-minutes number; sent on each connect and when Home Assistant
announces itself on ``<prefix>/status``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import select
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvheater import __version__
from pvheater.config import Config, MqttConfig
from pvheater.errors import ConfigError, PvHeaterError
from pvheater.service.hub import Hub

try:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
except ImportError:  # the optional extra is not installed: MqttFrontend.from_config says so in one line
    paho = None  # type: ignore[assignment]

log = logging.getLogger("pvheater")

#: The modes `set/mode` takes (hot_water.mode's choices).
MODES = ("auto", "solar_only", "off")
#: Longest command payload accepted, in bytes.
MAX_COMMAND_BYTES = 256
#: Commands waiting for the worker; more are dropped (one log line per episode).
MAX_PENDING_COMMANDS = 16
#: State fields that change on every tick by themselves: a change in them alone is not worth a publish.
CLOCK_FIELDS = ("wall_s", "data_age_s")
#: Seconds a TCP connect to the broker may take (in the worker; bounds close() too).
CONNECT_TIMEOUT_S = 3.0
#: Longest wait of the worker with nothing to do, in seconds (it also sends the keep-alive pings).
IDLE_WAIT_S = 15.0
#: Seconds close() waits for the broker to take the final `offline`.
CLOSE_WAIT_S = 2.0
#: Tank temperatures a boost may aim at, degC (the config's goal range).
BOOST_TEMP_RANGE_C = (30.0, 95.0)


# --- Home Assistant discovery ---------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity: its component, object id, name and the component-specific keys."""

    component: str
    object_id: str
    name: str
    fields: dict[str, Any]


def _pick(key: str) -> str:
    """A value_template reading one key of the JSON state (a missing or null key: unknown)."""
    return "{{ value_json.get('" + key + "') }}"


def _sensor(object_id: str, name: str, key: str, device_class: str | None = None, state_class: str | None = None,
            unit: str | None = None, **extra: Any) -> Entity:
    fields: dict[str, Any] = {"value_template": _pick(key), **extra}
    for name_, value in (("device_class", device_class), ("state_class", state_class),
                         ("unit_of_measurement", unit)):
        if value is not None:
            fields[name_] = value
    return Entity("sensor", object_id, name, fields)


def _power(object_id: str, name: str, key: str) -> Entity:
    return _sensor(object_id, name, key, "power", "measurement", "W", suggested_display_precision=0)


def _binary(object_id: str, name: str, template: str, device_class: str | None = None, **extra: Any) -> Entity:
    fields: dict[str, Any] = {"value_template": template, **extra}
    if device_class is not None:
        fields["device_class"] = device_class
    return Entity("binary_sensor", object_id, name, fields)


def _on_if(condition: str) -> str:
    return "{{ 'ON' if " + condition + " else 'OFF' }}"


#: The heater heats: relay closed and power measured (or, without a measurement, commanded) above 20 W.
HEATING_TEMPLATE = (
    "{% set w = value_json.get('heater_measured_w') %}"
    "{% if w is none %}{% set w = value_json.get('heater_command_w') %}{% endif %}"
    "{{ 'ON' if value_json.get('relay_on') and (w or 0) > 20 else 'OFF' }}"
)


def entities(boost_max_min: float) -> list[Entity]:
    """Every entity pvheater announces (state topics and command topics are filled in by discovery_configs)."""
    diagnostic = {"entity_category": "diagnostic"}
    return [
        _power("pv_power", "PV power", "pv_w"),
        _power("battery_power", "Battery power", "battery_w"),
        _sensor("battery_soc", "Battery SoC", "soc_pct", "battery", "measurement", "%", suggested_display_precision=0),
        _power("grid_power", "Grid power", "grid_w"),
        _power("house_power", "House power", "house_w"),
        _power("heater_power", "Heater power", "heater_measured_w"),
        _power("heater_command", "Heater power commanded", "heater_command_w"),
        _sensor("servo_angle", "Servo angle", "servo_deg", None, "measurement", "°", icon="mdi:knob", **diagnostic),
        _sensor("tank_temperature", "Tank temperature", "tank_temp_c", "temperature", "measurement", "°C",
                suggested_display_precision=1),
        _sensor("energy_today_solar", "Heater energy today from solar", "energy_today_solar_kwh", "energy",
                "total_increasing", "kWh", suggested_display_precision=2),
        _sensor("energy_today_grid", "Heater energy today from grid", "energy_today_grid_kwh", "energy",
                "total_increasing", "kWh", suggested_display_precision=2),
        _sensor("boost_left", "Boost left", "boost_left_s", "duration", "measurement", "s"),
        Entity("sensor", "forced", "Forced heating",
               {"value_template": "{{ value_json.get('forced') or 'none' }}", "icon": "mdi:fire-alert"}),
        Entity("sensor", "reason", "Reason",
               {"value_template": "{{ (value_json.get('reason') or '')[:255] }}", "icon": "mdi:comment-question"}),
        Entity("sensor", "last_error", "Last error",
               {"value_template": "{{ (value_json.get('last_error') or 'none')[:255] }}", "icon": "mdi:alert",
                **diagnostic}),
        _sensor("data_age", "GX data age", "data_age_s", "duration", "measurement", "s", **diagnostic),
        _sensor("last_60c", "Tank last at legionella temperature", "last_60c", "date", icon="mdi:bacteria-outline"),
        _binary("relay", "Relay", _on_if("value_json.get('relay_on')"), "power"),
        _binary("heating", "Heating", HEATING_TEMPLATE, "heat"),
        _binary("tank_full", "Tank full", _on_if("value_json.get('tank_full')"), None, icon="mdi:water-boiler"),
        _binary("failsafe", "Fail-safe", _on_if("value_json.get('failsafe')"), "problem"),
        Entity("select", "mode", "Mode", {"options": list(MODES), "value_template": _pick("mode"),
                                          "icon": "mdi:water-boiler-auto"}),
        Entity("button", "boost", "Boost", {"payload_press": "start", "icon": "mdi:fire"}),
        Entity("button", "boost_cancel", "Cancel boost", {"payload_press": "cancel", "icon": "mdi:fire-off"}),
        Entity("number", "boost_minutes", "Boost minutes",
               {"min": 1, "max": boost_max_min, "step": 1, "mode": "box", "unit_of_measurement": "min",
                "device_class": "duration", "icon": "mdi:timer-outline"}),
    ]


def discovery_configs(settings: MqttConfig, device: dict[str, Any], boost_max_min: float) -> dict[str, dict[str, Any]]:
    """{discovery topic: config payload} for every entity (empty without a discovery prefix)."""
    if settings.discovery_prefix is None:
        return {}
    base = settings.base_topic
    command = {"select": f"{base}/set/mode", "number": f"{base}/set/boost_minutes"}
    out: dict[str, dict[str, Any]] = {}
    for entity in entities(boost_max_min):
        config: dict[str, Any] = {
            "name": entity.name,
            "unique_id": f"{settings.node_id}_{entity.object_id}",
            "availability_topic": f"{base}/availability",
            "device": device,
            "origin": {"name": "pvheater", "sw_version": __version__},
            **entity.fields,
        }
        if entity.component in ("sensor", "binary_sensor", "select"):
            config["state_topic"] = f"{base}/state"
        if entity.component == "number":
            config["state_topic"] = f"{base}/boost_minutes"
        if entity.component == "button":
            config["command_topic"] = f"{base}/set/boost"
        elif entity.component in command:
            config["command_topic"] = command[entity.component]
        topic = f"{settings.discovery_prefix}/{entity.component}/{settings.node_id}/{entity.object_id}/config"
        out[topic] = config
    return out


def device_info(settings: MqttConfig, configuration_url: str | None) -> dict[str, Any]:
    """The one Home Assistant device every entity belongs to."""
    name = "pvheater" if settings.node_id == "pvheater" else f"pvheater ({settings.node_id})"
    device: dict[str, Any] = {
        "identifiers": [f"pvheater_{settings.node_id}"],
        "name": name,
        "manufacturer": "pvheater",
        "model": "PV surplus water heater (Victron GX)",
        "sw_version": __version__,
    }
    if configuration_url is not None:
        device["configuration_url"] = configuration_url
    return device


def configuration_url(cfg: Config) -> str | None:
    """The status page's address from web.listen ("HOST:PORT") when the config has one, else None."""
    web = getattr(cfg, "web", None)
    listen = getattr(web, "listen", None)
    if not isinstance(listen, str) or getattr(web, "enabled", True) is False:
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


# --- commands ----------------------------------------------------------------------------------


class MalformedCommand(ValueError):
    """A command payload that does not mean anything: ignored, logged once per episode."""


def _number(text: str, what: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MalformedCommand(f"{what}: expected a number, got {text[:40]!r}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise MalformedCommand(f"{what}: expected a number from {lo:g} to {hi:g}, got {text[:40]!r}")
    return value


def _boost_request(text: str, boost_minutes: float, boost_max_min: float) -> dict[str, Any]:
    """The hub command of a set/boost payload."""
    word = text.lower()
    if word == "cancel":
        return {"cmd": "boost", "cancel": True}
    if word in ("start", "press", ""):
        return {"cmd": "boost", "minutes": boost_minutes}
    if word.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            raise MalformedCommand("boost: not valid JSON") from None
        if not isinstance(obj, dict) or len(obj) != 1:
            raise MalformedCommand('boost: expected one of {"minutes": N}, {"temp_c": T}, {"cancel": true}')
        (key, value), = obj.items()
        if key == "cancel" and value is True:
            return {"cmd": "boost", "cancel": True}
        if key in ("minutes", "temp_c") and isinstance(value, int | float) and not isinstance(value, bool):
            lo, hi = (1.0, boost_max_min) if key == "minutes" else BOOST_TEMP_RANGE_C
            return {"cmd": "boost", key: _number(str(value), f"boost {key}", lo, hi)}
        raise MalformedCommand('boost: expected one of {"minutes": N}, {"temp_c": T}, {"cancel": true}')
    return {"cmd": "boost", "minutes": _number(text, "boost minutes", 1.0, boost_max_min)}


def parse_command(subtopic: str, payload: bytes, boost_minutes: float, boost_max_min: float) -> dict[str, Any]:
    """The command a set/<subtopic> message means: a hub request, or {"boost_minutes": N}; MalformedCommand if none."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise MalformedCommand(f"{subtopic[:40]}: payload of {len(payload)} bytes (at most {MAX_COMMAND_BYTES})")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MalformedCommand(f"{subtopic[:40]}: payload is not UTF-8 text") from None
    if subtopic == "mode":
        if text not in MODES:
            raise MalformedCommand(f"mode: expected one of {', '.join(MODES)}, got {text[:40]!r}")
        return {"cmd": "mode", "mode": text}
    if subtopic == "boost":
        return _boost_request(text, boost_minutes, boost_max_min)
    if subtopic == "boost_minutes":
        return {"boost_minutes": _number(text, "boost_minutes", 1.0, boost_max_min)}
    raise MalformedCommand(f"unknown command topic set/{subtopic[:40]} (expected set/mode, set/boost, "
                           "set/boost_minutes)")


# --- the front-end -----------------------------------------------------------------------------


def read_password(settings: MqttConfig) -> str | None:
    """The broker password from mqtt.password_file or mqtt.password_env; ConfigError naming the key if unreadable."""
    if settings.password_file is not None:
        path = Path(settings.password_file)
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file: cannot read {str(path)!r} ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"mqtt.password_file: {str(path)!r} is not UTF-8 text") from None
        password = text.splitlines()[0].strip() if text.strip() else ""
        if not password:
            raise ConfigError(f"mqtt.password_file: {str(path)!r} is empty")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("mqtt.password_file %s can be read by other users (mode %03o): chmod 600 it",
                        path, stat.S_IMODE(mode))
        return password
    if settings.password_env is not None:
        password = os.environ.get(settings.password_env, "")
        if not password:
            raise ConfigError(f"mqtt.password_env: the environment variable {settings.password_env} is not set "
                              "(or empty)")
        return password
    return None


class MqttFrontend:
    """Publishes the hub's state (and Home Assistant discovery) to a broker and turns set/... messages into commands."""

    def __init__(self, settings: MqttConfig, *, password: str | None = None, boost_max_min: float = 180.0,
                 configuration_url: str | None = None) -> None:
        if paho is None:
            raise PvHeaterError("mqtt.enabled is true but paho-mqtt is not installed: pip install 'pvheater[mqtt]' "
                                "(from the source tree: pip install '.[mqtt]'), or set mqtt.enabled: false")
        self.settings = settings
        self.boost_max_min = boost_max_min
        #: Minutes the boost button (set/boost "start") heats for.
        self.boost_minutes = min(settings.boost_minutes, boost_max_min)
        self.device = device_info(settings, configuration_url)
        base = settings.base_topic
        self.state_topic = f"{base}/state"
        self.availability_topic = f"{base}/availability"
        self.result_topic = f"{base}/result"
        self.boost_minutes_topic = f"{base}/boost_minutes"
        self.command_prefix = f"{base}/set/"
        self.ha_status_topic = None if settings.discovery_prefix is None else f"{settings.discovery_prefix}/status"
        self.endpoint = f"{settings.host}:{settings.port}"
        self._password = password
        self._hub: Hub | None = None
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Held by whoever uses the paho client: the worker, or the tick's `_take` (only when it is free).
        self._io = threading.Lock()
        #: The wake-up pipe (read end, write end): a byte in it wakes the worker's select; closed under the lock.
        self._wake_r = self._wake_w = -1
        self._pipe_lock = threading.Lock()
        #: The newest state not yet handled by the worker (one slot: a newer state replaces it).
        self._newest: dict[str, Any] | None = None
        self._commands: queue.Queue[tuple[str, bytes]] = queue.Queue(MAX_PENDING_COMMANDS)
        self._connected = False
        self._announce = False
        self._ever_connected = False
        #: When the current outage began (monotonic); None while connected.
        self._down_since: float | None = None
        #: The current outage was logged (one line per episode).
        self._down_logged = False
        self._closing = False
        self._malformed_logged = False
        self._dropped_logged = False
        self._encode_failed = False
        #: The backoff before the last connect attempt (None: the next one waits the shortest).
        self._retry_delay_s: float | None = None
        #: The last state sent (without its clock fields), when (monotonic), and the last state looked at.
        self._last_sent: dict[str, Any] | None = None
        self._last_sent_s = -math.inf
        self._last_seen: dict[str, Any] | None = None
        #: State messages handed to the broker (for tests).
        self.state_publishes = 0

    @classmethod
    def from_config(cls, cfg: Config) -> MqttFrontend:
        """The front-end for cfg.mqtt: password read, CA file checked; PvHeaterError when paho-mqtt is missing."""
        settings = cfg.mqtt
        if settings.ca_file is not None and not os.access(settings.ca_file, os.R_OK):
            raise ConfigError(f"mqtt.ca_file: cannot read {settings.ca_file!r}")
        password = read_password(settings)
        return cls(settings, password=password, boost_max_min=cfg.hot_water.boost_max_min,
                   configuration_url=configuration_url(cfg))

    # --- the hub's front-end protocol ---------------------------------------------------------

    def start(self, hub: Hub) -> None:
        """Set up the client and start the worker, which connects in the background (never waits for the broker);
        subscribe to the hub's states."""
        s = self.settings
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pvheater-{s.node_id}")
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        if s.username is not None:
            client.username_pw_set(s.username, self._password)
        if s.tls:
            try:
                client.tls_set(ca_certs=s.ca_file)
            except (OSError, ValueError) as exc:
                raise PvHeaterError(f"mqtt: cannot set up TLS ({exc})") from None
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        try:
            client.connect_async(s.host, s.port, keepalive=s.keepalive_s)  # only stores the address: no network
        except (OSError, ValueError) as exc:
            raise PvHeaterError(f"mqtt: cannot connect to {self.endpoint} ({exc})") from None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._client = client
        self._hub = hub
        self._down_since = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="pvheater-mqtt", daemon=True)
        self._thread.start()
        hub.subscribe(self._take)
        log.info("mqtt: connecting to %s; state on %s%s", self.endpoint, self.state_topic,
                 "" if s.discovery_prefix is None else f", Home Assistant discovery under {s.discovery_prefix}/")

    def close(self) -> None:
        """Say offline (retained), disconnect, stop the worker; never raises."""
        client = self._client
        if client is None:
            return
        self._closing = True
        self._stop.set()
        self._poke()
        thread = self._thread
        if thread is not None:  # the worker says offline and disconnects; it may be inside a connect attempt
            thread.join(timeout=CONNECT_TIMEOUT_S + CLOSE_WAIT_S + 1.0)
        if thread is None or not thread.is_alive():
            with self._pipe_lock:
                for fd in (self._wake_r, self._wake_w):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._wake_r = self._wake_w = -1
        else:
            log.warning("mqtt: the connection to %s did not close in time; left to the broker's last will",
                        self.endpoint)
        self._client = None
        log.info("mqtt: disconnected from %s (availability offline)", self.endpoint)

    def _take(self, state: dict[str, Any]) -> None:
        """The hub's subscriber, in the tick's thread; never blocks and never waits for the broker.

        The newest state goes into the one slot. When the connection is up, the worker is not using the
        client (a lock taken only if free) and nothing earlier is still waiting to be written, the state is
        published from here: paho writes it to the non-blocking socket at once (the kernel's buffer takes it,
        whatever the broker does) -- no thread is woken. Otherwise the worker is woken and sends the newest
        state when it can (states that arrive meanwhile replace it: nothing piles up).
        """
        if self._closing:
            return
        self._newest = state
        client = self._client
        if self._connected and self._io.acquire(blocking=False):
            try:
                if self._connected and not self._announce and not client.want_write():
                    self._send_state_if_due(state)
                    if not self._connected or client.want_write():  # lost, or a part of it still to write
                        self._poke()
                    return
            except Exception:  # the worker tries again (and logs what keeps failing); never the tick's problem
                pass
            finally:
                self._io.release()
        self._poke()

    def _poke(self) -> None:
        """Wake the worker (one byte in a non-blocking pipe; a full pipe already wakes it)."""
        with self._pipe_lock, contextlib.suppress(OSError):  # full: the worker wakes anyway
            if self._wake_w >= 0:
                os.write(self._wake_w, b"\0")

    # --- paho's callbacks, called in the worker (inside loop_read) -------------------------------

    def _went_down(self, why: str) -> None:
        """Not connected: the first failure of an outage is logged, the retries that follow are not."""
        self._connected = False
        if self._closing or self._down_logged:
            return
        self._down_logged = True
        if self._down_since is None:
            self._down_since = time.monotonic()
        log.warning("mqtt: %s; retrying (every %d s at most), control goes on", why,
                    max(1, round(self.settings.reconnect_max_s)))

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._went_down(f"the broker at {self.endpoint} refused the connection ({reason_code})")
            return
        subscriptions = [(self.command_prefix + "#", 1)]
        if self.ha_status_topic is not None:
            subscriptions.append((self.ha_status_topic, 1))
        client.subscribe(subscriptions)
        down_s = time.monotonic() - (self._down_since or time.monotonic())
        if self._ever_connected:
            log.info("mqtt: connected to the broker at %s again after %.1f s; publishing resumes", self.endpoint,
                     down_s)
        elif self._down_logged:
            log.info("mqtt: connected to the broker at %s after %.1f s", self.endpoint, down_s)
        else:
            log.info("mqtt: connected to the broker at %s", self.endpoint)
        self._ever_connected = True
        self._down_since = None
        self._down_logged = False
        self._retry_delay_s = None  # the next outage's first retry waits the shortest delay again
        self._announce = True
        self._connected = True

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if self._connected:
            self._down_since = time.monotonic()
            self._went_down(f"lost the broker at {self.endpoint} ({reason_code})")
        self._connected = False

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        topic = message.topic
        if topic == self.ha_status_topic:
            if message.payload == b"online":  # Home Assistant restarted: announce again
                self._announce = True
            return
        if not topic.startswith(self.command_prefix) or message.retain:
            return  # a retained command is an old one left on the broker: never act on it at start
        try:
            self._commands.put_nowait((topic[len(self.command_prefix):], bytes(message.payload)))
        except queue.Full:
            if not self._dropped_logged:
                self._dropped_logged = True
                log.warning("mqtt: commands arrive faster than they are handled; dropping some")
            return
        self._dropped_logged = False

    # --- the worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        """Connect, reconnect, wait on the socket and the wake-up pipe, publish; at the end say offline."""
        client = self._client
        retry_at_s = 0.0  # the first connect at once
        while not self._stop.is_set():
            try:
                sock = client.socket()
                if sock is None:  # not connected: the next attempt when its backoff is over
                    wait_s = retry_at_s - time.monotonic()
                    if wait_s > 0:
                        self._wait([], wait_s)
                        continue
                    with self._io:
                        self._connect_once()
                    if client.socket() is None:
                        retry_at_s = time.monotonic() + self._next_delay_s()
                    continue
                self._serve(sock)
                if client.socket() is None:  # lost in this round (paho closed it and called _on_disconnect)
                    retry_at_s = time.monotonic() + self._next_delay_s()
            except Exception as exc:  # the worker must go on; the tick never sees this
                log.error("mqtt: publishing failed: %s: %s", type(exc).__name__, exc)
                self._stop.wait(1.0)
        self._say_offline()

    def _next_delay_s(self) -> float:
        """The backoff before the next connect attempt: 1 s, doubling up to mqtt.reconnect_max_s."""
        cap_s = self.settings.reconnect_max_s
        delay_s = min(1.0, cap_s) if self._retry_delay_s is None else min(2.0 * self._retry_delay_s, cap_s)
        self._retry_delay_s = delay_s
        return delay_s

    def _connect_once(self) -> None:
        """One connect attempt (TCP, TLS, the CONNECT packet); its CONNACK comes later through loop_read."""
        self._connected = False
        why = ""
        try:
            self._client.reconnect()
        except OSError as exc:  # refused, unreachable, timed out, a TLS failure
            why = f" ({type(exc).__name__}: {str(exc)[:160]})"
        if self._client.socket() is None:
            self._went_down(f"cannot reach the broker at {self.endpoint}{why}")

    def _wait(self, socks: list[Any], timeout_s: float, write: bool = False) -> tuple[list[Any], list[Any]]:
        """select() on socks and the wake-up pipe (emptied when it woke us); the ready socks to read and write."""
        try:
            readable, writable, _ = select.select([*socks, self._wake_r], socks if write else [], [],
                                                  max(0.0, timeout_s))
        except (OSError, ValueError):  # the socket was closed meanwhile (a failed write): the caller looks again
            return [], []
        if self._wake_r in readable:
            with contextlib.suppress(OSError):
                os.read(self._wake_r, 4096)
            readable.remove(self._wake_r)
        return readable, writable

    def _serve(self, sock: Any) -> None:
        """One round on an open socket: wait for the broker, a wake-up or a deadline, then read, write, ping, publish.

        Every use of the client here holds `_io` (the tick's `_take` publishes only while it is free); the wait
        does not."""
        client = self._client
        pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS bytes already decrypted
        readable, writable = self._wait([sock], 0.0 if pending else self._idle_s(), write=client.want_write())
        with self._io:
            if client.socket() is not sock:  # closed meanwhile (a failed write in the tick's publish)
                return
            if readable or pending:
                client.loop_read()
            if writable and client.socket() is not None:
                client.loop_write()
            if client.socket() is not None:
                client.loop_misc()  # keep-alive ping, and the end of a broker that stopped answering
            if self._stop.is_set():
                return
            self._handle_commands()
            if self._connected:
                self._send_due()

    def _idle_s(self) -> float:
        """How long the worker may wait with nothing new: until a state is due again, a ping, at most IDLE_WAIT_S."""
        wait_s = min(IDLE_WAIT_S, self.settings.keepalive_s / 4.0)
        if self._connected and self._newest is not None:
            wait_s = min(wait_s, self._last_sent_s + self.settings.publish_every_s - time.monotonic())
        return max(0.0, wait_s)

    def _send_due(self) -> None:
        """The announcements after a connect, then the newest state if it is due."""
        force = False
        if self._announce:
            self._announce = False
            self._send_announcements()
            force = True
        state = self._newest
        if state is not None and not self._client.want_write():  # a backlog first goes out (bounded: one state)
            self._send_state_if_due(state, force=force)

    def _send_state_if_due(self, state: dict[str, Any], *, force: bool = False) -> None:
        """Publish state if it changed (besides its clock fields) or publish_every_s has passed (holding `_io`)."""
        now_s = time.monotonic()
        timely = now_s - self._last_sent_s < self.settings.publish_every_s
        if state is self._last_seen and timely and not force:
            return  # this state was looked at already
        comparable = {k: v for k, v in state.items() if k not in CLOCK_FIELDS}
        if force or comparable != self._last_sent or not timely:
            if not self._publish_state(state):
                return  # not sent: the worker tries again
            self._last_sent, self._last_sent_s = comparable, now_s
        self._last_seen = state

    def _say_offline(self) -> None:
        """At the end, in the worker: `offline` (retained, waited for up to CLOSE_WAIT_S), then DISCONNECT."""
        client = self._client
        self._io.acquire()  # for good: `_closing` already keeps the tick away
        try:
            if self._connected and client.socket() is not None:
                info = client.publish(self.availability_topic, "offline", qos=1, retain=True)
                deadline_s = time.monotonic() + CLOSE_WAIT_S
                while not info.is_published() and client.socket() is not None:
                    left_s = deadline_s - time.monotonic()
                    if left_s <= 0:
                        break
                    readable, writable = self._wait([client.socket()], left_s, write=client.want_write())
                    if readable:
                        client.loop_read()
                    if writable and client.socket() is not None:
                        client.loop_write()
            client.disconnect()
        except Exception as exc:  # the service is ending: one line, and go on
            log.warning("mqtt: closing the connection to %s: %s: %s", self.endpoint, type(exc).__name__, exc)
        self._connected = False

    def _publish(self, topic: str, payload: str, *, retain: bool, qos: int = 0) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return bool(info.rc == paho.MQTT_ERR_SUCCESS)

    def _publish_state(self, state: dict[str, Any]) -> bool:
        try:
            assert self._hub is not None
            payload = self._hub.json_of(state)  # encoded once per state, shared with the page's /api/state
        except (TypeError, ValueError) as exc:
            if not self._encode_failed:
                log.error("mqtt: the state cannot be sent as JSON (%s); it is left out until it can", exc)
            self._encode_failed = True
            return False
        self._encode_failed = False
        sent = self._publish(self.state_topic, payload, retain=True)
        self.state_publishes += sent
        return sent

    def _send_announcements(self) -> None:
        """Availability online, the discovery configs and the boost length (all retained)."""
        self._publish(self.availability_topic, "online", retain=True, qos=1)
        for topic, config in discovery_configs(self.settings, self.device, self.boost_max_min).items():
            self._publish(topic, json.dumps(config, separators=(",", ":")), retain=True, qos=1)
        self._publish(self.boost_minutes_topic, f"{self.boost_minutes:g}", retain=True, qos=1)

    def _handle_commands(self) -> None:
        while True:
            try:
                subtopic, payload = self._commands.get_nowait()
            except queue.Empty:
                return
            self._handle_command(subtopic, payload)

    def _handle_command(self, subtopic: str, payload: bytes) -> None:
        """Validate one set/... message, dispatch it, publish the answer on <base>/result."""
        try:
            request = parse_command(subtopic, payload, self.boost_minutes, self.boost_max_min)
        except MalformedCommand as exc:
            if not self._malformed_logged:
                self._malformed_logged = True
                log.warning("mqtt: ignored a malformed command (%s); further ones are not logged until a good "
                            "one arrives", exc)
            answer: dict[str, Any] = {"ok": False, "error": f"ignored: {exc}"}
        else:
            self._malformed_logged = False
            if "boost_minutes" in request:
                self.boost_minutes = float(request["boost_minutes"])
                self._publish(self.boost_minutes_topic, f"{self.boost_minutes:g}", retain=True, qos=1)
                answer = {"ok": True, "message": f"the boost button now heats for {self.boost_minutes:g} min"}
            else:
                assert self._hub is not None
                answer = self._hub.dispatch(request)
                level = logging.INFO if answer.get("ok") else logging.WARNING
                log.log(level, "mqtt: set/%s %s -> %s", subtopic, payload[:40].decode("utf-8", "replace"),
                        answer.get("message") or answer.get("error"))
        with contextlib.suppress(Exception):
            self._publish(self.result_topic, json.dumps({"command": f"set/{subtopic[:40]}", **answer},
                                                        separators=(",", ":"), default=str), retain=False, qos=1)

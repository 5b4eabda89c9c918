"""MQTT with Home Assistant discovery: the service's state out, mode and boost commands in (optional, `.[mqtt]`).

The only module that imports paho-mqtt. `MqttFrontend` is a front-end of
the hub (pvheater/service/hub.py): the control tick hands each new state to
`_take`, which only stores it in a one-slot queue (the newest replaces an
older one not yet sent) and sets an event -- it never blocks and never
touches the network. A worker thread publishes from there; paho's own
network thread connects, reconnects with backoff (1 s doubling up to
`mqtt.reconnect_max_s`) and receives. So a broker that is down, slow or
stopped never delays a tick.

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
import socket
import stat
import sys
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
#: Seconds a TCP connect to the broker may take (paho's thread; bounds close() too).
CONNECT_TIMEOUT_S = 3.0
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
        self._wake = threading.Event()
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
        """Connect in the background (never waits for the broker), subscribe to the hub's states, start the worker."""
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
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(s.reconnect_max_s)))
        client.connect_timeout = CONNECT_TIMEOUT_S
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        try:
            client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        except (OSError, ValueError) as exc:
            raise PvHeaterError(f"mqtt: cannot connect to {self.endpoint} ({exc})") from None
        self._client = client
        self._hub = hub
        self._down_since = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="pvheater-mqtt", daemon=True)
        self._thread.start()
        client.loop_start()
        hub.subscribe(self._take)
        log.info("mqtt: connecting to %s; state on %s%s", self.endpoint, self.state_topic,
                 "" if s.discovery_prefix is None else f", Home Assistant discovery under {s.discovery_prefix}/")

    def close(self) -> None:
        """Say offline (retained), disconnect, stop both threads; never raises."""
        client = self._client
        if client is None:
            return
        self._closing = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=CLOSE_WAIT_S)
        try:
            if self._connected:
                info = client.publish(self.availability_topic, "offline", qos=1, retain=True)
                info.wait_for_publish(timeout=CLOSE_WAIT_S)
            client.disconnect()
            client.loop_stop()
        except Exception as exc:  # the service is ending: one line, and go on
            log.warning("mqtt: closing the connection to %s: %s: %s", self.endpoint, type(exc).__name__, exc)
        self._client = None
        log.info("mqtt: disconnected from %s (availability offline)", self.endpoint)

    def _take(self, state: dict[str, Any]) -> None:
        """The hub's subscriber, in the tick's thread: keep the newest state and wake the worker; nothing else."""
        if self._closing:
            return
        self._newest = state
        self._wake.set()

    # --- paho's thread ---------------------------------------------------------------------------

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
        self._announce = True  # before _connected: the worker never sends a state ahead of the announcements
        self._connected = True
        self._wake.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        exc = sys.exc_info()[1]  # paho calls this inside its `except OSError` around the connect
        why = "" if exc is None else f" ({type(exc).__name__}: {str(exc)[:160]})"
        self._went_down(f"cannot reach the broker at {self.endpoint}{why}")

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
                self._wake.set()
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
        self._wake.set()

    # --- the worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        last_sent: dict[str, Any] | None = None
        last_sent_s = -math.inf
        every_s = self.settings.publish_every_s
        while not self._stop.is_set():
            timeout_s = max(0.05, last_sent_s + every_s - time.monotonic()) if self._connected else 1.0
            self._wake.wait(min(timeout_s, every_s))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._handle_commands()
                force = False
                if self._announce and self._connected:
                    self._announce = False
                    self._send_announcements()
                    force = True
                state = self._newest
                if state is None or not self._connected:
                    continue
                comparable = {k: v for k, v in state.items() if k not in CLOCK_FIELDS}
                now_s = time.monotonic()
                due = force or comparable != last_sent or now_s - last_sent_s >= every_s
                if due and self._publish_state(state):
                    last_sent, last_sent_s = comparable, now_s
            except Exception as exc:  # the worker must go on; the tick never sees this
                log.error("mqtt: publishing failed: %s: %s", type(exc).__name__, exc)
                self._stop.wait(1.0)

    def _publish(self, topic: str, payload: str, *, retain: bool, qos: int = 0) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return bool(info.rc == paho.MQTT_ERR_SUCCESS)

    def _publish_state(self, state: dict[str, Any]) -> bool:
        try:
            payload = json.dumps(state, separators=(",", ":"), allow_nan=False, default=str)
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

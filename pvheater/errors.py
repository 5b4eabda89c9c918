"""One exception tree for the whole project."""


class PvHeaterError(Exception):
    """Base of every error pvheater raises on purpose."""


class ConfigError(PvHeaterError):
    """The configuration file is missing, unreadable or invalid."""


class RegisterMapError(PvHeaterError):
    """A register map file under registers/ is invalid."""


class GxError(PvHeaterError):
    """Something went wrong talking to the Venus GX."""


class GxUnavailable(GxError):
    """The GX did not answer: refused connection, timeout, dropped link."""


class DeviceAbsent(GxError):
    """The GX answered that no device sits behind a unit ID (exception 0x0A/0x0B)."""

    def __init__(self, role: str, unit_id: int, message: str) -> None:
        super().__init__(message)
        self.role = role
        self.unit_id = unit_id


class HardwareError(PvHeaterError):
    """The GPIO pins or their library could not be used."""

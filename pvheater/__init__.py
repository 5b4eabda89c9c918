"""pvheater: solar surplus into a water heater, read locally from a Victron Venus GX."""

__version__ = "0.1.0"

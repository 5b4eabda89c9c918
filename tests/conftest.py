"""Fixtures for the GX simulator: a real Modbus-TCP server on a loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pvheater.config import GxConfig, UnitIds
from pvheater.registers import RegisterMap, load_register_map
from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator


@pytest.fixture(scope="session")
def register_map() -> RegisterMap:
    """The shipped register map."""
    return load_register_map()


@pytest.fixture
def gx_sim(register_map: RegisterMap) -> Iterator[GxSimulator]:
    """A GX simulator on 127.0.0.1 (free port), default unit IDs, sample values."""
    simulator = GxSimulator(register_map, UnitIds(), host="127.0.0.1", port=0)
    simulator.set_values(SAMPLE_VALUES)
    with simulator:
        yield simulator


@pytest.fixture
def gx_config(gx_sim: GxSimulator) -> Callable[..., GxConfig]:
    """Build a GxConfig pointing at the gx_sim fixture, with short test timeouts; keywords override."""

    def make(**overrides: Any) -> GxConfig:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": gx_sim.port,
            "timeout_s": 0.5,
            "reconnect_min_s": 1.0,
            "reconnect_max_s": 4.0,
        }
        settings.update(overrides)
        return GxConfig(**settings)

    return make

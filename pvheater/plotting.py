"""matplotlib, optional: imported on demand with a headless backend, or a one-line error saying how to get it."""

from __future__ import annotations

from typing import Any

from pvheater.errors import PvHeaterError

INSTALL_HINT = "pip install 'pvheater[plot]' (or: pip install matplotlib)"


class PlotUnavailable(PvHeaterError):
    """matplotlib is not installed."""


def require_matplotlib() -> Any:
    """Import matplotlib with a headless backend, or raise PlotUnavailable saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable(f"--plot needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    return matplotlib

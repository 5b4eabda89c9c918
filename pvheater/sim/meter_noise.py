"""The AC powers a real meter measures: the GX simulator flickers them so a still plant does not look frozen."""

from __future__ import annotations

#: Register name prefixes of the AC powers a real meter measures (grid, grid meter, AC consumption).
METERED_PREFIXES = ("grid_l", "meter_l", "ac_consumption_l")

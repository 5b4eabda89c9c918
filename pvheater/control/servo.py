"""The servo's small-move rule (pure): when a new knob angle is worth a move."""

from __future__ import annotations


def worth_moving(current_deg: float | None, target_deg: float, zero_deg: float, min_move_deg: float) -> bool:
    """True when the servo should go from current_deg to target_deg.

    Always the first time (current_deg None) and always to the zero angle
    (heater off must really be off); otherwise only for a change of at least
    min_move_deg, so the servo does not hunt over a degree or two.
    """
    if current_deg is None:
        return True
    change_deg = abs(target_deg - current_deg)
    if change_deg == 0.0:
        return False
    return change_deg >= min_move_deg or target_deg == zero_deg

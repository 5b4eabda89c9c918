"""The knob's curve (watts <-> angle), the calibration sweep and its fit."""

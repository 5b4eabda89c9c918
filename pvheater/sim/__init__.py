"""Simulation: the Venus GX Modbus server, the plant model, scenarios and the bench."""

"""The runtime: control loop, tick runner, signals, reload, and the rig that wires source, heater and clock."""

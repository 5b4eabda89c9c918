"""The pure part: measurements, messages, controller, guard, reserve, sun, SCR curve. No I/O, no clock."""

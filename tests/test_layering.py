"""The design's rules, read from the code: no import cycles, a pure control part, libraries at their edges.

Every module's AST is walked -- imports at the top, inside functions and
under TYPE_CHECKING alike -- so a rule cannot be bent by hiding an import.
The checks are plain functions over {module: source}; the tests of the test
feed them small invented trees with one violation each.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "pvheater"

#: The pure part: no I/O, no clock, no logging.
PURE_PREFIX = "pvheater.control"
#: What the pure part may import from pvheater besides itself: the config schema and the error tree.
PURE_MAY_IMPORT = ("pvheater.config", "pvheater.errors", "pvheater.paths")
PURE_ALLOWED = (PURE_PREFIX, *PURE_MAY_IMPORT)
#: Standard library and third-party modules the pure part may not import.
PURE_FORBIDDEN = (
    "logging", "time", "urllib", "http", "socket", "sqlite3", "threading", "subprocess", "select", "os",
    "pymodbus", "gpiozero", "apscheduler", "yaml",
)
#: Calls that read the clock, by the name they are called on.
CLOCK_CALLS = {
    "time": ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "localtime", "gmtime"),
    "datetime": ("now", "utcnow", "today"),
    "date": ("today",),
}
#: Where a library may be imported.
LIBRARY_HOMES = {
    "pymodbus": ("pvheater.reader", "pvheater.sim.gx_server"),
    "gpiozero": ("pvheater.actuators",),
    "paho": ("pvheater.mqtt",),
}
#: Modules that may import the simulator: the commands (`--simulate`) and the simulator itself.
SIM_USERS = ("pvheater.sim", "pvheater.commands", "pvheater.service.rig")


def module_name(path: Path, root: Path) -> str:
    """pvheater/control/guard.py -> pvheater.control.guard; a package's __init__ -> the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_tree(root: Path) -> dict[str, str]:
    """{module name: source} of every module under the package directory root."""
    return {module_name(p, root): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py"))}


def _within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imports_of(module: str, source: str, known: Iterable[str]) -> set[str]:
    """Every module `module` imports, anywhere in its AST; `from pkg import sub` counts as pkg.sub when known."""
    known = set(known)
    out: set[str] = set()
    is_package = any(name.startswith(module + ".") for name in known)
    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    out.add(f"{base}.{alias.name}")
    return out


def import_graph(tree: Mapping[str, str]) -> dict[str, set[str]]:
    """Edges between the tree's own modules (a package's __init__ is not an edge: importing a.b runs a)."""
    names = set(tree)
    graph = {}
    for module, source in tree.items():
        targets = {t for t in imports_of(module, source, names) if t in names and t != module}
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    return graph


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles: each strongly connected component of more than one module, sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def _clock_calls(source: str) -> list[str]:
    """Calls like datetime.now(), time.time(), date.today() anywhere in the source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            value = node.func.value
            owner = value.attr if isinstance(value, ast.Attribute) else getattr(value, "id", "")
            if node.func.attr in CLOCK_CALLS.get(owner, ()):
                found.append(f"{owner}.{node.func.attr}()")
    return found


def violations(tree: Mapping[str, str]) -> list[str]:
    """Every broken rule of the tree, one line each."""
    names = set(tree)
    problems = [f"import cycle: {' -> '.join(c)}" for c in find_cycles(import_graph(tree))]
    for module, source in sorted(tree.items()):
        imported = imports_of(module, source, names)
        for target in sorted(imported):
            top = target.split(".", 1)[0]
            if _within(module, (PURE_PREFIX,)):
                if top in PURE_FORBIDDEN:
                    problems.append(f"{module}: the pure part imports {target}")
                elif top == "pvheater" and target != "pvheater" and not _within(target, PURE_ALLOWED):
                    problems.append(f"{module}: the pure part imports {target} (not pure)")
            for library, homes in LIBRARY_HOMES.items():
                if top == library and not _within(module, homes):
                    problems.append(f"{module}: imports {library} (only {', '.join(homes)} may)")
            if _within(target, ("pvheater.sim",)) and not _within(module, SIM_USERS):
                problems.append(f"{module}: production code imports the simulator ({target})")
        if _within(module, (PURE_PREFIX,)):
            problems.extend(f"{module}: the pure part reads the clock ({call})" for call in _clock_calls(source))
    return problems


# --- the project --------------------------------------------------------------------------------


def test_the_project_keeps_the_layering_rules() -> None:
    tree = read_tree(PACKAGE_DIR)
    assert "pvheater.control.controller" in tree and "pvheater.reader" in tree  # the walk found the package
    assert violations(tree) == []


def test_the_pure_part_exists_and_holds_controller_guard_and_reserve() -> None:
    tree = read_tree(PACKAGE_DIR)
    for name in ("controller", "guard", "reserve", "sun", "measurements", "messages", "timeofday"):
        assert f"{PURE_PREFIX}.{name}" in tree


# --- the test of the test: one invented violation each --------------------------------------------

CLEAN = {
    "pvheater": "",
    "pvheater.config": "import yaml\n",
    "pvheater.control": "",
    "pvheater.control.guard": "from pvheater.config import Config\nfrom pvheater.control import messages\n",
    "pvheater.control.messages": "from dataclasses import dataclass\n",
    "pvheater.reader": "from pymodbus.client import ModbusTcpClient\n",
    "pvheater.actuators": "import gpiozero\n",
    "pvheater.sim": "",
    "pvheater.sim.plant": "from pvheater.control.messages import x\n",
    "pvheater.commands.run": "def f():\n    from pvheater.sim.plant import Plant\n",
}


def test_a_clean_invented_tree_passes() -> None:
    assert violations(CLEAN) == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        # a cycle hidden behind TYPE_CHECKING
        ("pvheater.control.messages",
         "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pvheater.control.guard import G\n",
         "import cycle: pvheater.control.guard -> pvheater.control.messages"),
        # a cycle through a function-level import
        ("pvheater.config", "def f():\n    from pvheater.control.guard import soc_gate\n",
         "import cycle"),
        ("pvheater.control.guard", "import logging\n", "the pure part imports logging"),
        ("pvheater.control.guard", "import time\n", "the pure part imports time"),
        ("pvheater.control.guard", "import urllib.request\n", "the pure part imports urllib.request"),
        ("pvheater.control.guard", "import sqlite3\n", "the pure part imports sqlite3"),
        ("pvheater.control.guard", "def f():\n    import pymodbus\n", "the pure part imports pymodbus"),
        ("pvheater.control.guard", "from apscheduler.triggers.cron import CronTrigger\n",
         "the pure part imports apscheduler"),
        ("pvheater.control.guard", "import datetime\ndef f():\n    return datetime.datetime.now()\n",
         "reads the clock (datetime.now())"),
        ("pvheater.control.guard", "from pvheater.reader import GxReader\n", "(not pure)"),
        ("pvheater.history", "import pymodbus\n", "pvheater.history: imports pymodbus"),
        ("pvheater.stats", "def f():\n    import gpiozero\n", "pvheater.stats: imports gpiozero"),
        ("pvheater.service.runtime", "import paho.mqtt.client as mqtt\n", "runtime: imports paho"),
        ("pvheater.stats", "def f():\n    from pvheater.sim.plant import Plant\n", "imports the simulator"),
    ],
)
def test_each_rule_catches_its_violation(module: str, source: str, expected: str) -> None:
    tree = dict(CLEAN)
    tree[module] = source
    found = violations(tree)
    assert any(expected in line for line in found), found


def test_relative_and_package_imports_resolve() -> None:
    names = {"pvheater.control", "pvheater.control.guard", "pvheater.control.sun"}
    assert "pvheater.control.sun" in imports_of("pvheater.control.guard", "from . import sun\n", names)
    assert "pvheater.control.sun" in imports_of("pvheater.control.guard", "from .sun import x\n", names)
    assert "pvheater.control.sun" in imports_of("pvheater.control.guard", "from pvheater.control import sun\n", names)

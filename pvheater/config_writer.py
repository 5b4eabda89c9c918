"""Write a config.yaml: the shipped, commented file with chosen values filled in by key path.

The shipped config.yaml is edited as text, line by line, so every comment
stays where it is; only the value after `key:` changes (an inline comment
after it is kept). The result is then loaded with pvheater's own loader and
each chosen value compared, before it is written (atomically; an existing
file only when the caller says so).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pvheater.config import Config, load_config
from pvheater.errors import ConfigError
from pvheater.paths import packaged_config

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")
_BARE = re.compile(r"[A-Za-z0-9_./-]+")


def render_scalar(value: Any) -> str:
    """A YAML scalar for value: null, true/false, a number, or a string (quoted when YAML would misread it)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        if _BARE.fullmatch(value) and yaml.safe_load(value) == value:
            return value
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError(f"cannot write {value!r} as a config value")


def _split_comment(rest: str) -> tuple[str, str]:
    """(value text, ' # comment' or '') of what follows `key:` on a line."""
    text = rest.strip()
    if text.startswith(('"', "'")):
        end = text.find(text[0], 1)
        if end > 0:
            tail = text[end + 1:]
            return text[: end + 1], tail if tail.strip().startswith("#") else ""
    match = re.search(r"\s#", rest)
    if match is None:
        return text, ""
    return rest[: match.start()].strip(), "  " + rest[match.start():].strip()


def set_values(text: str, values: Mapping[str, Any]) -> str:
    """The YAML text with the value of each dotted key path replaced; ValueError when a path is not in it."""
    lines = text.splitlines(keepends=True)
    stack: list[tuple[int, str]] = []
    done: set[str] = set()
    for i, line in enumerate(lines):
        match = _KEY_LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [match["key"]])
        stack.append((indent, match["key"]))
        if path in values:
            value_text, comment = _split_comment(match["rest"])
            if not value_text:
                raise ValueError(f"{path} is a section in the config file, not a value")
            ending = "\n" if line.endswith("\n") else ""
            lines[i] = f"{match['indent']}{match['key']}: {render_scalar(values[path])}{comment}{ending}"
            done.add(path)
    missing = [p for p in values if p not in done]
    if missing:
        raise ValueError(f"not in the config file: {', '.join(missing)}")
    return "".join(lines)


def _lookup(cfg: Config, path: str) -> Any:
    obj: Any = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def config_text(values: Mapping[str, Any], header: str = "", template: Path | None = None) -> str:
    """The shipped config.yaml's text with values filled in and an optional header comment on top."""
    source = template if template is not None else packaged_config()
    text = set_values(source.read_text(encoding="utf-8"), values)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + "#\n" + text
    return text


def write_config(path: Path | str, text: str, values: Mapping[str, Any], *, overwrite: bool = False) -> Config:
    """Check that text loads with pvheater's loader and holds values, then write it to path; the loaded Config.

    FileExistsError when path exists and overwrite is False; ConfigError when the text does not load.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        cfg = load_config(tmp)
        for key, value in values.items():
            if _lookup(cfg, key) != value:
                raise ConfigError(f"{key}: the written file gives {_lookup(cfg, key)!r}, not {value!r}")
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails when target exists: never overwrites what appeared meanwhile
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return cfg

"""The one writer of BENCHMARKS.md sections: each bench script owns the part between its two markers."""

from __future__ import annotations

from pathlib import Path


def replace_section(text: str, section: str, begin: str, end: str) -> str:
    """text with the part from begin to end replaced by section (which carries both markers); appended if missing."""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + section + rest.split(end, 1)[1]
    return text.rstrip() + "\n\n" + section + "\n"


def write_section(path: Path, section: str, begin: str, end: str) -> None:
    """Replace (or append) the section between begin and end in the report at path; a missing file is created."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    path.write_text(replace_section(old, section, begin, end), encoding="utf-8")

"""The one writer of BENCHMARKS.md sections: each bench script owns the part between its two markers."""

from __future__ import annotations

from pathlib import Path

#: A hand-written block inside a generated section (what was tried, the physical limits): a rerun keeps it.
NOTES_BEGIN = "<!-- notes -->"
NOTES_END = "<!-- /notes -->"


def old_notes(old_section: str) -> str:
    """The notes block of a section as it stands (markers included), or ''."""
    if NOTES_BEGIN in old_section and NOTES_END in old_section:
        return NOTES_BEGIN + old_section.split(NOTES_BEGIN, 1)[1].split(NOTES_END, 1)[0] + NOTES_END
    return ""


def with_notes(section: str, notes: str) -> str:
    """section with the notes block after its heading (its first '## ' line), unless it already has one."""
    if not notes or NOTES_BEGIN in section:
        return section
    lines = section.split("\n")
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("## ")), 1)
    return "\n".join([*lines[:at], "", notes, *lines[at:]])


def replace_section(text: str, section: str, begin: str, end: str) -> str:
    """text with the part from begin to end replaced by section (which carries both markers); appended if missing.

    A notes block in the old section is carried into the new one.
    """
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        old, tail = rest.split(end, 1)
        return head + with_notes(section, old_notes(old)) + tail
    return text.rstrip() + "\n\n" + section + "\n"


def write_section(path: Path, section: str, begin: str, end: str) -> None:
    """Replace (or append) the section between begin and end in the report at path; a missing file is created."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    path.write_text(replace_section(old, section, begin, end), encoding="utf-8")

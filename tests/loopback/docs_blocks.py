"""The code blocks of the documentation, collected so that each one can be run as written.

Which files: every ``*.md`` at the repository root, under ``docs/`` and under ``server/`` (a new file or a new
block is picked up without touching this module). What happens to a block depends on its fence's language and
on an optional marker, an HTML comment on the last non-blank line before the fence (see CONTRIBUTING.md):

* ``python`` / ``py``: run as a script in a fresh interpreter, from the repository root, with
  ``NEMOGUARD_BASE_URL`` pointing at the interface simulator (what the docs tell users to set). A block that
  defines ``test_*`` functions is run with pytest instead (the ``nemoguard_simulator`` fixture is the plugin's).
* ``bash`` / ``sh`` / ``shell`` / ``console``: run with ``bash -euo pipefail``, same directory and environment,
  the project's ``nemoguard`` first on ``PATH``.
* ``yaml`` / ``yml`` / ``json``: parsed.
* anything else (no language, ``text``, ``markdown``...): text, not run.
* ``<!-- fragment -->`` or ``<!-- fragment: why -->``: a shape, not a program (a signature, part of a file);
  not run.
* ``<!-- skip: reason -->``: runnable, but not here (it needs a GPU, Docker, Kubernetes, the network, or it
  starts a server that runs until stopped); the reason is required and shows in the test report.

``python tests/loopback/docs_blocks.py`` prints every block with what happens to it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC_GLOBS = ("*.md", "docs/**/*.md", "server/**/*.md")

PYTHON = frozenset({"python", "py", "python3"})
SHELL = frozenset({"bash", "sh", "shell", "console", "zsh"})
DATA = frozenset({"yaml", "yml", "json"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>fragment|skip)\b\s*(?::\s*(?P<reason>.*?))?\s*-->\s*$")
_MARKER_LIKE = re.compile(r"^\s*<!--\s*(?:fragment|skip)\b")


class DocsBlockError(ValueError):
    """A marker the collector cannot read, or one that marks no block."""


@dataclass(frozen=True)
class Block:
    path: Path  # relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None = None  # "fragment" | "skip" | None
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.path.as_posix()}:{self.line}"

    @property
    def kind(self) -> str:
        """``python``, ``pytest``, ``shell``, ``data`` or ``text``: how the block is run (when it is)."""
        if self.lang in PYTHON:
            return "pytest" if re.search(r"^def test_\w*\(", self.code, re.M) else "python"
        if self.lang in SHELL:
            return "shell"
        if self.lang in DATA:
            return "data"
        return "text"

    @property
    def status(self) -> str:
        """``runs``, ``parsed``, ``fragment``, ``skipped`` or ``text`` (not code)."""
        if self.marker == "fragment":
            return "fragment"
        if self.marker == "skip":
            return "skipped"
        return {"python": "runs", "pytest": "runs", "shell": "runs", "data": "parsed"}.get(self.kind, "text")


def doc_files(root: Path = REPO) -> list[Path]:
    found: set[Path] = set()
    for pattern in DOC_GLOBS:
        found.update(p for p in root.glob(pattern) if p.is_file() and ".venv" not in p.parts)
    return sorted(found)


def blocks_in(path: Path, root: Path = REPO) -> Iterator[Block]:
    """The fenced blocks of one Markdown file, with their markers (CommonMark fences, indented ones too)."""
    rel = path.relative_to(root)
    lines = path.read_text(encoding="utf-8").splitlines()
    pending: tuple[int, str, str] | None = None  # a marker waiting for its fence: (line, kind, reason)
    i = 0
    while i < len(lines):
        text = lines[i]
        fence = _FENCE.match(text)
        if fence is None:
            marker = _MARKER.match(text)
            if marker is not None:
                if pending is not None:
                    raise DocsBlockError(f"{rel}:{pending[0]}: marker not followed by a code block")
                kind, reason = marker["kind"], (marker["reason"] or "").strip()
                if kind == "skip" and not reason:
                    raise DocsBlockError(f"{rel}:{i + 1}: <!-- skip: REASON --> needs a reason")
                pending = (i + 1, kind, reason)
            elif _MARKER_LIKE.match(text):
                raise DocsBlockError(f"{rel}:{i + 1}: unreadable marker {text.strip()!r}")
            elif text.strip() and pending is not None:
                raise DocsBlockError(f"{rel}:{pending[0]}: marker not followed by a code block")
            i += 1
            continue
        indent, mark = len(fence["indent"].expandtabs()), fence["fence"]
        lang = (fence["info"].split() or [""])[0].lower()
        closing = re.compile(rf"^[ \t]*{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            line = lines[j].expandtabs()
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            j += 1
        if j == len(lines):
            raise DocsBlockError(f"{rel}:{i + 1}: code block is never closed")
        kind, reason = (pending[1], pending[2]) if pending is not None else (None, "")
        yield Block(rel, i + 1, lang, "\n".join(body) + "\n", kind, reason)
        pending = None
        i = j + 1
    if pending is not None:
        raise DocsBlockError(f"{rel}:{pending[0]}: marker not followed by a code block")


def all_blocks(root: Path = REPO) -> list[Block]:
    return [b for path in doc_files(root) for b in blocks_in(path, root)]


def table(blocks: list[Block]) -> str:
    """One line per block: where, language, what happens, why."""
    rows = [("block", "lang", "status", "reason")]
    rows += [(b.id, b.lang or "-", b.status, b.reason) for b in blocks]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    lines = [" | ".join([*(r[c].ljust(widths[c]) for c in range(3)), r[3]]).rstrip() for r in rows]
    counts: dict[str, int] = {}
    for b in blocks:
        counts[b.status] = counts.get(b.status, 0) + 1
    lines.append(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(all_blocks()))
    sys.exit(0)

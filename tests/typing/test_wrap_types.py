"""``guard.wrap`` is typed: mypy infers ``GuardedRunnable[Input, Output]`` (``GuardedChatModel`` for a chat model)
and reports misuse - a misspelt keyword, a wrong value, an input of the wrong type (issue 11)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
USAGE = HERE / "wrap_usage.py"


def test_mypy_sees_the_types_and_the_misuse() -> None:
    expected = {
        i: m.group(1)
        for i, line in enumerate(USAGE.read_text().splitlines(), start=1)
        if (m := re.search(r"# E: ([a-z-]+)$", line))
    }
    assert len(expected) == 6
    out, err, _status = mypy_api.run(
        [
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--cache-dir",
            str(REPO / ".mypy_cache"),
            "--no-error-summary",
            "--show-error-codes",
            "--hide-error-context",
            str(USAGE),
        ]
    )
    assert not err, err
    found: dict[int, set[str]] = {}
    for line in out.splitlines():
        m = re.match(rf"{re.escape(str(USAGE))}:(\d+): error: .*\[([a-z-]+)\]$", line) or re.match(
            r".*wrap_usage\.py:(\d+): error: .*\[([a-z-]+)\]$", line
        )
        assert m is not None or ": note:" in line, line  # no error anywhere else
        if m is not None:
            found.setdefault(int(m.group(1)), set()).add(m.group(2))
    assert found == {i: {code} for i, code in expected.items()}, out

"""How the client recognises the interface simulator, so that its verdicts never pass for the model's.

The simulator (``nemoguard simulate``, the pytest fixture, the demo) answers every request with the header
below. The transport notices it on each answer, whatever URL the guard was given, and the guard marks the
verdict (``Verdict.simulator``); the CLI, ``check --json`` and ``nemoguard bench`` print :data:`LABEL` beside
it. The header is a courtesy of a test double, not an authentication: a real endpoint never sends it, and a
verdict marked by mistake only errs on the side of distrust.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

HEADER: Final = "x-nemoguard-simulator"
HEADER_VALUE: Final = "not-a-safety-model"
LABEL: Final = "interface simulator - not a safety model"

# The key the transport puts into a decoded answer that came from the simulator (never an OpenAI field name).
ANSWER_KEY: Final = "__nemoguard_simulator__"


def mark_answer(data: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
    """``data`` (a decoded answer) with :data:`ANSWER_KEY` set from the response headers, and only from them."""
    data.pop(ANSWER_KEY, None)  # a body cannot claim or disclaim it
    if headers.get(HEADER) is not None:
        data[ANSWER_KEY] = True
    return data


def answered_by_simulator(data: Mapping[str, Any]) -> bool:
    """True when the transport saw the simulator's header on the answer ``data`` came from."""
    return data.get(ANSWER_KEY) is True


__all__ = ["ANSWER_KEY", "HEADER", "HEADER_VALUE", "LABEL", "answered_by_simulator", "mark_answer"]

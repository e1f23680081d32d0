"""The interface simulator: a test double and demo backend for Nemotron 3.5 Content Safety. NOT A SAFETY MODEL.

An OpenAI-compatible server that follows the documented interface of the real model (server-side template
kwargs, the three output modes, ``</think>`` with no newline, ``reasoning_content``, 400 for non-alternating
roles, 500 for image-only input) with deterministic rule-based verdicts, latency and fault injection. It
exists so that the client can be tested end to end without a GPU, and says what it is wherever it runs.

Its server stack (starlette, uvicorn) is the ``simulator`` extra: ``pip install 'langchain-nemoguard[simulator]'``.
Names load on first use, so importing this package costs nothing until one is touched.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import BANNER, DEFAULT_MODEL, FaultSpec, SimulatorConfig
    from .endpoint import endpoint_or_simulator, guard_or_simulator
    from .process import SimulatorProcess, stop_process
    from .protocol import ContractError, parse_chat_request
    from .rules import BUILTIN_TAXONOMY, RuleMatch, RulesError, RuleSet
    from .server import SimulatorServer, run
    from .state import ForcedOutcome
    from .verdict import (
        CustomPolicy,
        CustomTaxonomy,
        ImageRuleError,
        SimulatedVerdict,
        compute_verdict,
        image_is_flagged,
        render_output,
    )

_WHERE = MappingProxyType(
    {
        "BANNER": "config",
        "BUILTIN_TAXONOMY": "rules",
        "DEFAULT_MODEL": "config",
        "ContractError": "protocol",
        "CustomPolicy": "verdict",
        "CustomTaxonomy": "verdict",
        "FaultSpec": "config",
        "ForcedOutcome": "state",
        "ImageRuleError": "verdict",
        "RuleMatch": "rules",
        "RuleSet": "rules",
        "RulesError": "rules",
        "SimulatedVerdict": "verdict",
        "SimulatorConfig": "config",
        "SimulatorProcess": "process",
        "SimulatorServer": "server",
        "compute_verdict": "verdict",
        "create_app": "app",
        "endpoint_or_simulator": "endpoint",
        "guard_or_simulator": "endpoint",
        "image_is_flagged": "verdict",
        "parse_chat_request": "protocol",
        "render_output": "verdict",
        "run": "server",
        "stop_process": "process",
    }
)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    except ModuleNotFoundError as exc:
        if exc.name in ("starlette", "uvicorn"):
            raise ModuleNotFoundError(
                f"the interface simulator needs {exc.name}: pip install 'langchain-nemoguard[simulator]'",
                name=exc.name,
            ) from exc
        raise
    globals()[name] = value
    return value


__all__ = [
    "BANNER",
    "BUILTIN_TAXONOMY",
    "DEFAULT_MODEL",
    "ContractError",
    "CustomPolicy",
    "CustomTaxonomy",
    "FaultSpec",
    "ForcedOutcome",
    "ImageRuleError",
    "RuleMatch",
    "RuleSet",
    "RulesError",
    "SimulatedVerdict",
    "SimulatorConfig",
    "SimulatorProcess",
    "SimulatorServer",
    "compute_verdict",
    "create_app",
    "endpoint_or_simulator",
    "guard_or_simulator",
    "image_is_flagged",
    "parse_chat_request",
    "render_output",
    "run",
    "stop_process",
]

"""The interface simulator: a test double and demo backend for Nemotron 3.5 Content Safety. NOT A SAFETY MODEL.

An OpenAI-compatible server that follows the documented interface of the real model (server-side template
kwargs, the three output modes, ``</think>`` with no newline, ``reasoning_content``, 400 for non-alternating
roles, 500 for image-only input) with deterministic rule-based verdicts, latency and fault injection. It
exists so that the client can be tested end to end without a GPU, and says what it is wherever it runs.
"""

from .app import create_app
from .config import BANNER, DEFAULT_MODEL, FaultSpec, SimulatorConfig
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
    "SimulatorServer",
    "compute_verdict",
    "create_app",
    "image_is_flagged",
    "parse_chat_request",
    "render_output",
    "run",
]

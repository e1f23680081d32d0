"""Model wire formats: request body, verdict parser, policy phrasing, token budgets. Nemotron 3.5 is the default."""

from .base import MODES, CallSpec, Mode, ModelFormat, ParsedCall
from .nemoguard8b import NemoGuard8BFormat
from .nemotron35 import Nemotron35Format, parse_verdict_text

__all__ = [
    "MODES",
    "CallSpec",
    "Mode",
    "ModelFormat",
    "NemoGuard8BFormat",
    "Nemotron35Format",
    "ParsedCall",
    "parse_verdict_text",
]

"""The framework-free core: no LangChain and no LiteLLM imports below this package."""

from .conversation import Conversation, Turn
from .errors import (
    ConfigurationError,
    ContentBlockedError,
    ErrorCode,
    GuardConnectionError,
    GuardHTTPError,
    GuardTimeoutError,
    GuardUnavailableError,
    ImageError,
    ImageTooLargeError,
    InputTooLargeError,
    InvalidInputError,
    NemoGuardError,
    PolicyNotFoundError,
    Stage,
    UnsafeURLError,
    VerdictParseError,
)
from .formats import CallSpec, ModelFormat, Nemotron35Format, ParsedCall, parse_verdict_text
from .guard import NemoGuard
from .images import ImageOptions, PreparedImage, aprepare_image, prepare_image
from .policy import DEFAULT_REFUSAL, Policy, PolicySet
from .streaming import StreamGuard, StreamOptions, StreamRefusal, for_stage
from .taxonomy import AEGIS_CATEGORIES, BUILTIN_TAXONOMY, Taxonomy
from .verdict import Action, Verdict
from .windows import WindowOptions, estimate_tokens, split_windows

__all__ = [
    "AEGIS_CATEGORIES",
    "BUILTIN_TAXONOMY",
    "DEFAULT_REFUSAL",
    "Action",
    "CallSpec",
    "ConfigurationError",
    "ContentBlockedError",
    "Conversation",
    "ErrorCode",
    "GuardConnectionError",
    "GuardHTTPError",
    "GuardTimeoutError",
    "GuardUnavailableError",
    "ImageError",
    "ImageOptions",
    "ImageTooLargeError",
    "InputTooLargeError",
    "InvalidInputError",
    "ModelFormat",
    "NemoGuard",
    "NemoGuardError",
    "Nemotron35Format",
    "ParsedCall",
    "Policy",
    "PolicyNotFoundError",
    "PolicySet",
    "PreparedImage",
    "Stage",
    "StreamGuard",
    "StreamOptions",
    "StreamRefusal",
    "Taxonomy",
    "Turn",
    "UnsafeURLError",
    "Verdict",
    "VerdictParseError",
    "WindowOptions",
    "aprepare_image",
    "estimate_tokens",
    "for_stage",
    "parse_verdict_text",
    "prepare_image",
    "split_windows",
]

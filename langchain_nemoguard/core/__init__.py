"""The framework-free core: no LangChain and no LiteLLM imports below this package.

Its public names load on first use (PEP 562), so that ``nemoguard --help`` and the modules that only need a
constant (``core.modes``) do not pay for the HTTP stack, Pillow and pydantic.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conversation import Conversation, Turn
    from .coverage import CoverageOptions
    from .errors import (
        ConfigurationError,
        ContentBlockedError,
        ErrorCode,
        GuardUnavailableError,
        ImageError,
        InputTooLargeError,
        InvalidInputError,
        NemoGuardError,
        PolicyNotFoundError,
        Stage,
        UnsafeURLError,
    )
    from .guard import NemoGuard
    from .images import ImageOptions
    from .options import AuditOptions, CacheOptions, CallOptions, TransportOptions
    from .policy import Policy, PolicySet
    from .verdict import Action, Outcome, Verdict
    from .windows import StreamOptions, WindowOptions

_WHERE = MappingProxyType(
    {
        "Action": "verdict",
        "AuditOptions": "options",
        "CacheOptions": "options",
        "CallOptions": "options",
        "ConfigurationError": "errors",
        "ContentBlockedError": "errors",
        "Conversation": "conversation",
        "CoverageOptions": "coverage",
        "ErrorCode": "errors",
        "GuardUnavailableError": "errors",
        "ImageError": "errors",
        "ImageOptions": "images",
        "InputTooLargeError": "errors",
        "InvalidInputError": "errors",
        "NemoGuard": "guard",
        "NemoGuardError": "errors",
        "Outcome": "verdict",
        "Policy": "policy",
        "PolicyNotFoundError": "errors",
        "PolicySet": "policy",
        "Stage": "errors",
        "StreamOptions": "windows",
        "TransportOptions": "options",
        "Turn": "conversation",
        "UnsafeURLError": "errors",
        "Verdict": "verdict",
        "WindowOptions": "windows",
    }
)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Action",
    "AuditOptions",
    "CacheOptions",
    "CallOptions",
    "ConfigurationError",
    "ContentBlockedError",
    "Conversation",
    "CoverageOptions",
    "ErrorCode",
    "GuardUnavailableError",
    "ImageError",
    "ImageOptions",
    "InputTooLargeError",
    "InvalidInputError",
    "NemoGuard",
    "NemoGuardError",
    "Outcome",
    "Policy",
    "PolicyNotFoundError",
    "PolicySet",
    "Stage",
    "StreamOptions",
    "TransportOptions",
    "Turn",
    "UnsafeURLError",
    "Verdict",
    "WindowOptions",
]

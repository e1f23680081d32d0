"""langchain-nemoguard: content-safety guardrails backed by NVIDIA Nemotron 3.5 Content Safety.

What users import lives here (``__all__``, pinned by ``tests/unit/test_architecture.py``); everything else is
reachable from its module (``langchain_nemoguard.core.windows.split_windows``, ...). Names load on first use,
so ``import langchain_nemoguard`` costs nothing until one is touched. The LangChain pieces
(``GuardedRunnable``, ``GuardedChatModel``, ``NemoGuardMiddleware``) need ``pip install 'langchain-nemoguard[langchain]'``.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.conversation import Conversation
    from .core.coverage import CoverageOptions
    from .core.errors import (
        ConfigurationError,
        ContentBlockedError,
        ErrorCode,
        GuardUnavailableError,
        InvalidInputError,
        NemoGuardError,
        PolicyNotFoundError,
        Stage,
    )
    from .core.guard import NemoGuard
    from .core.images import ImageOptions
    from .core.options import AuditOptions, CacheOptions, CallOptions, TransportOptions
    from .core.policy import Policy, PolicySet
    from .core.verdict import Action, Outcome, Verdict
    from .core.windows import StreamOptions, WindowOptions
    from .langchain.chat_model import GuardedChatModel
    from .langchain.middleware import NemoGuardMiddleware
    from .langchain.runnable import GuardedRunnable

__version__ = "0.1.0"

_WHERE = MappingProxyType(
    {
        # the guard and its verdicts
        "NemoGuard": "core.guard",
        "Verdict": "core.verdict",
        "Action": "core.verdict",
        "Outcome": "core.verdict",
        "Stage": "core.errors",
        "Conversation": "core.conversation",
        # policies
        "Policy": "core.policy",
        "PolicySet": "core.policy",
        # option groups of NemoGuard
        "TransportOptions": "core.options",
        "CacheOptions": "core.options",
        "CallOptions": "core.options",
        "AuditOptions": "core.options",
        "CoverageOptions": "core.coverage",
        "ImageOptions": "core.images",
        "WindowOptions": "core.windows",
        "StreamOptions": "core.windows",
        # errors
        "NemoGuardError": "core.errors",
        "InvalidInputError": "core.errors",
        "ConfigurationError": "core.errors",
        "PolicyNotFoundError": "core.errors",
        "GuardUnavailableError": "core.errors",
        "ContentBlockedError": "core.errors",
        "ErrorCode": "core.errors",
        # LangChain
        "GuardedRunnable": "langchain.runnable",
        "GuardedChatModel": "langchain.chat_model",
        "NemoGuardMiddleware": "langchain.middleware",
    }
)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


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
    "GuardedChatModel",
    "GuardedRunnable",
    "ImageOptions",
    "InvalidInputError",
    "NemoGuard",
    "NemoGuardError",
    "NemoGuardMiddleware",
    "Outcome",
    "Policy",
    "PolicyNotFoundError",
    "PolicySet",
    "Stage",
    "StreamOptions",
    "TransportOptions",
    "Verdict",
    "WindowOptions",
    "__version__",
]

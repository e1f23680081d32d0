"""langchain-nemoguard: content-safety guardrails backed by NVIDIA Nemotron 3.5 Content Safety.

The core (``NemoGuard``, ``Policy``, ``Verdict``) needs no framework. The LangChain pieces
(``GuardedRunnable``, ``NemoGuardMiddleware``) load on first use and need ``pip install
'langchain-nemoguard[langchain]'``.
"""

from __future__ import annotations

from typing import Any

from .core import *  # noqa: F403
from .core import __all__ as _core_all

__version__ = "0.1.0"

_LAZY = {
    "GuardedRunnable": "langchain.runnable",
    "NemoGuardMiddleware": "langchain.middleware",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'langchain_nemoguard' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [*_core_all, "GuardedRunnable", "NemoGuardMiddleware", "__version__"]  # noqa: F405

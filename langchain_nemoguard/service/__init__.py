"""``nemoguard server``: the guard as an HTTP service any stack can call (``pip install 'langchain-nemoguard[server]'``).

Three guardrail APIs over one :class:`~langchain_nemoguard.NemoGuard` - OpenAI's ``/v1/moderations``, NeMo
Guardrails' ``/v1/guardrail/checks`` and LiteLLM's generic guardrail API - with bearer keys, a policy per key,
request limits and the library's fail-closed rules; ``/health`` and Prometheus ``/metrics``. See
``docs/service.md``.

* :mod:`.app` - the ASGI app and its handlers; :mod:`.server` - serving it (foreground or a thread);
* :mod:`.moderations`, :mod:`.nemo_checks`, :mod:`.litellm_api` - each API's request and answer;
* :mod:`.categories` - the Aegis-to-OpenAI category table; :mod:`.keys` - API keys; :mod:`.config` - limits.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import GuardService, ServiceApp, create_app
    from .config import ServiceConfig
    from .keys import ApiKey, KeyRing
    from .server import GuardServer

_WHERE = MappingProxyType(
    {
        "ApiKey": ".keys",
        "GuardServer": ".server",
        "GuardService": ".app",
        "KeyRing": ".keys",
        "ServiceApp": ".app",
        "ServiceConfig": ".config",
        "create_app": ".app",
    }
)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = ["ApiKey", "GuardServer", "GuardService", "KeyRing", "ServiceApp", "ServiceConfig", "create_app"]

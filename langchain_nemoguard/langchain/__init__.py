"""The LangChain adapter: ``GuardedRunnable`` (``guard.wrap``), ``NemoGuardMiddleware`` for agents.

Needs the ``langchain`` extra (``pip install -e '.[langchain]'`` from a clone); without it, every way in
(``guard.wrap``, ``from langchain_nemoguard import NemoGuardMiddleware``) stops with one line naming the extra.
"""

from ..core.errors import missing_extra

try:
    import langchain  # noqa: F401  (the agent middleware's framework; the package alone, cheap)
    import langchain_core  # noqa: F401  (the runnable's)
except ImportError as exc:
    raise missing_extra(exc, "the LangChain adapter (guard.wrap, NemoGuardMiddleware)", "langchain") from None

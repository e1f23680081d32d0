"""What the CLI tells a user whose check got no verdict: where the guard looked, and how to point it elsewhere.

The core's error messages are terse on purpose (adapters pass them to untrusted callers, who must not learn
internal addresses). On the command line the user is the operator, so here the message may name the URL and
say what to change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.verdict import Verdict

POINT_ELSEWHERE = (
    "Point the guard at a Nemotron 3.5 Content Safety endpoint:\n"
    "  export NEMOGUARD_BASE_URL=http://HOST:PORT/v1        (or --base-url URL; the root including /v1)\n"
    "  --provider nvidia (NVIDIA_API_KEY) or --provider openrouter (OPENROUTER_API_KEY) for a hosted model\n"
    "  nemoguard serve                                      (vLLM on a GPU machine)\n"
    "or, to try the plumbing without a model, run the interface simulator (a test double, NOT a safety model):\n"
    "  nemoguard simulate --port 8000 &"
)

_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def no_verdict_hint(verdict: Verdict, base_urls: Sequence[str], *, configured: bool) -> str | None:
    """A few lines for stderr when ``verdict`` has no verdict; None when there is nothing useful to add.

    Args:
        verdict: The verdict of a failed check (``error`` set).
        base_urls: The URLs the guard was using.
        configured: Whether the user named the endpoint (a flag or a ``NEMOGUARD_*`` variable); otherwise the
            guard looked at the default, a local vLLM.
    """
    from ..core.errors import ErrorCode

    urls = ", ".join(base_urls)
    code = verdict.error
    if code is ErrorCode.CONNECT:
        if not configured:
            return f"nothing answers at {urls}, the default endpoint (a local vLLM).\n{POINT_ELSEWHERE}"
        return f"nothing answers at {urls}: check the host and port (--base-url or NEMOGUARD_BASE_URL)."
    if code is ErrorCode.TIMEOUT:
        return f"{urls} did not answer in time: raise --timeout, or check that the server is up and not overloaded."
    if code is ErrorCode.UNPARSABLE or code is ErrorCode.BAD_RESPONSE:
        return (
            f"{urls} answered, but not with a Nemotron 3.5 Content Safety verdict: is it an OpenAI-compatible "
            "endpoint serving that model (--model)?"
        )
    status = _status(verdict.error_message or "")
    if status == 404:
        missing_v1 = [u for u in base_urls if not u.rstrip("/").endswith("/v1")]
        if missing_v1:
            tries = ", ".join(f"{u.rstrip('/')}/v1" for u in missing_v1)
            return (
                f"{', '.join(missing_v1)} answered 404 Not Found for /chat/completions. The base URL is the "
                f"OpenAI-compatible root including /v1: try --base-url {tries}"
            )
        return (
            f"{urls} answered 404 Not Found: the server does not serve /chat/completions there, or not the model "
            "id the guard asked for (--model)."
        )
    if status in (401, 403):
        return (
            f"{urls} refused the request ({status}): set NEMOGUARD_API_KEY (or the provider's variable, "
            "NVIDIA_API_KEY / OPENROUTER_API_KEY)."
        )
    return None


def _status(message: str) -> int | None:
    """The HTTP status in a transport error message (``GuardHTTPError`` writes ``HTTP <status>: ...``)."""
    found = _STATUS.search(message)
    return int(found.group(1)) if found else None


__all__ = ["POINT_ELSEWHERE", "no_verdict_hint"]

"""The exception hierarchy.

Two families, kept apart on purpose:

* ``InvalidInputError`` (a ``ValueError``): the caller handed us something we cannot judge - an empty
  conversation, an image that does not decode, a URL we refuse to fetch. Raised, never swallowed.
* ``GuardUnavailableError``: the guard endpoint failed (timeout, HTTP status, unparsable output). ``check()``
  never raises these; it turns them into ``Verdict.error``. They exist for code that asks for raising
  (``Verdict.raise_for_error()``) and for the transport's internals.

``ContentBlockedError`` is what adapters raise when a policy says ``block``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .verdict import Verdict


class NemoGuardError(Exception):
    """Base class of every exception this package raises."""


# --- bad arguments -------------------------------------------------------------------------------------------


class InvalidInputError(NemoGuardError, ValueError):
    """The input cannot be judged as given (empty conversation, wrong type, bad role order...)."""


class InputTooLargeError(InvalidInputError):
    """The input is over ``max_input_chars``: refused before any call instead of sending hundreds of them."""


class ConfigurationError(NemoGuardError, ValueError):
    """A setting is wrong: unknown provider or mode, missing policy, malformed policy file."""


class PolicyNotFoundError(ConfigurationError, KeyError):
    """A policy was asked for by a name that no loaded policy set defines.

    Args:
        name: The name asked for.
        known: The names that exist (listed in the message).
    """

    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        self.known = sorted(known or [])
        hint = f"; known policies: {', '.join(self.known)}" if self.known else ""
        super().__init__(f"unknown policy {name!r}{hint}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ImageError(InvalidInputError):
    """An image could not be used: undecodable, wrong type, or over a limit."""


class ImageTooLargeError(ImageError):
    """An image is over the byte or pixel limit (decompression bombs land here)."""


class UnsafeURLError(InvalidInputError):
    """A remote URL was refused: fetching is off, a bad scheme, or it resolves to a private address."""


# --- operational failures ------------------------------------------------------------------------------------


class ErrorCode(StrEnum):
    """Stable reason codes for ``Verdict.error``; safe to match on and to export as metric labels."""

    TIMEOUT = "timeout"
    CONNECT = "connect"  # connection refused / reset / DNS failure
    HTTP_STATUS = "http_status"  # non-2xx after retries
    RATE_LIMITED = "rate_limited"  # 429 after retries
    UNPARSABLE = "unparsable"  # the model answered, but not in the verdict format
    TRUNCATED = "truncated"  # finish_reason == "length" before the verdict was complete
    BAD_RESPONSE = "bad_response"  # the body was not an OpenAI chat completion
    CANCELLED = "cancelled"
    INTERNAL = "internal"  # a bug on our side; reported, never silently allowed


_OUTAGE_DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.TIMEOUT: "the guard did not answer in time",
    ErrorCode.CONNECT: "the guard endpoint could not be reached",
    ErrorCode.HTTP_STATUS: "the guard endpoint answered with an error status",
    ErrorCode.RATE_LIMITED: "the guard endpoint is rate limiting",
    ErrorCode.UNPARSABLE: "the guard's answer could not be read",
    ErrorCode.TRUNCATED: "the guard's answer was cut off",
    ErrorCode.BAD_RESPONSE: "the guard endpoint's response was malformed",
    ErrorCode.CANCELLED: "the check was cancelled",
    ErrorCode.INTERNAL: "an internal error in the guard client",
}


def describe_outage(code: ErrorCode | str | None) -> str:
    """A description of an outage that is safe to show anywhere (traces, exceptions, end users): it names the
    kind of failure only, never the endpoint, host, status body or key (``Verdict.error_message`` may name the
    endpoint, for operators' logs)."""
    try:
        return _OUTAGE_DESCRIPTIONS[ErrorCode(code)] if code is not None else "no verdict"
    except ValueError:
        return "no verdict"


class GuardUnavailableError(NemoGuardError):
    """The guard could not produce a verdict.

    Args:
        code: Why (an :class:`ErrorCode`, stable for metrics and matching).
        message: What happened (never a key or request content).
        status: The HTTP status, when there was one.
    """

    def __init__(self, code: ErrorCode, message: str, *, status: int | None = None) -> None:
        self.code = code
        self.status = status
        super().__init__(f"guard unavailable ({code.value}): {message}")


class GuardTimeoutError(GuardUnavailableError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.TIMEOUT, message)


class GuardHTTPError(GuardUnavailableError):
    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        code = ErrorCode.RATE_LIMITED if status == 429 else ErrorCode.HTTP_STATUS
        self.retry_after = retry_after
        super().__init__(code, f"HTTP {status}: {message}", status=status)


class GuardConnectionError(GuardUnavailableError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.CONNECT, message)


class VerdictParseError(GuardUnavailableError):
    """The model's output broke a parser rule. ``output`` holds the offending text (model output only)."""

    def __init__(self, message: str, output: str = "", *, truncated: bool = False) -> None:
        self.output = output
        super().__init__(ErrorCode.TRUNCATED if truncated else ErrorCode.UNPARSABLE, message)


# --- policy outcomes -----------------------------------------------------------------------------------------


class Stage(StrEnum):
    """Where in a conversation a check ran."""

    INPUT = "input"
    OUTPUT = "output"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"


class ContentBlockedError(NemoGuardError):
    """A policy decided ``block``. Carries the verdict so callers can log or explain it.

    ``unavailable`` is true when the block comes from a failed guard under ``on_error="block"``: the message
    then says "guard unavailable" so that an outage never reads like a policy decision. The one class for a
    block in every adapter (LangChain raises it as a subclass that is also its ``ModelError``).

    Args:
        verdict: The verdict that blocked.
        stage: Where the check ran (input, output, tool call, tool result).
        message: The exception's text (None: built from the verdict).
    """

    def __init__(
        self, verdict: Verdict, stage: Stage | str = Stage.INPUT, message: str | None = None
    ) -> None:
        self.verdict = verdict
        self.stage = Stage(stage)
        self.categories: list[str] = list(verdict.categories)
        self.unavailable = verdict.error is not None
        if message is None:
            if self.unavailable:
                message = f"{self.stage.value} blocked: guard unavailable ({verdict.error})"
            else:
                cats = f" ({', '.join(self.categories)})" if self.categories else ""
                message = f"{self.stage.value} blocked by content-safety policy{cats}"
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "guard_unavailable" if self.unavailable else "content_blocked",
            "stage": self.stage.value,
            "categories": self.categories,
            "message": str(self),
        }


# --- optional extras -----------------------------------------------------------------------------------------

_OWN_PACKAGES = ("langchain_nemoguard", "litellm_hook")


class MissingExtraError(NemoGuardError, ImportError):
    """A feature needs an optional extra that is not installed; the message is the one line that says which.

    An ``ImportError`` too, so code that guards an optional import with ``except ImportError`` keeps working.

    Args:
        feature: What needs it, as the user wrote it (``guard.wrap``, ``import litellm_hook``).
        extra: The extra of ``langchain-nemoguard`` that installs it.
        module: The module that could not be imported.
    """

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(
            f"{feature} needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'langchain-nemoguard[{extra}]' (from a clone: pip install -e '.[{extra}]')",
            name=module,
        )


def missing_extra(exc: ImportError, feature: str, extra: str) -> ImportError:
    """What to raise for ``exc``: a :class:`MissingExtraError` when a third-party module is missing, else ``exc``
    itself (an ImportError inside this package is a bug, and must not read as a missing extra)."""
    name = exc.name or ""
    if not name or name.split(".")[0] in _OWN_PACKAGES:
        return exc
    return MissingExtraError(feature, extra, name.split(".")[0])

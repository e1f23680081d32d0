"""The service's error answers: OpenAI's error envelope, with a stable ``code`` per reason.

Messages never carry configuration: no endpoint URL, no key, no list of policies a caller may not use. An
outage says that the content was not judged and is not let through, and which stable reason code it had.
"""

from __future__ import annotations

from typing import Any, Final

from ..core.errors import ErrorCode


class ServiceError(Exception):
    """An answer other than 200 (see the subclasses).

    Args:
        message: What went wrong, for the caller.
        param: The request field at fault, when there is one.
    """

    status: int = 400
    type: str = "invalid_request_error"
    code: str = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(ServiceError):
    """400: the request is not one the endpoint accepts."""


class Unauthorized(ServiceError):
    """401: no key, or not a configured one."""

    status, type, code = 401, "authentication_error", "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="nemoguard"'}


class Forbidden(ServiceError):
    """403: the key may not do this (name this policy)."""

    status, type, code = 403, "permission_error", "policy_not_allowed"


class TooLarge(ServiceError):
    """413: over a request limit (body bytes, inputs, images, characters)."""

    status, code = 413, "request_too_large"


class UnsupportedMediaType(ServiceError):
    """415: the body is not JSON."""

    status, code = 415, "unsupported_media_type"


class GuardUnavailable(ServiceError):
    """503: the guard produced no verdict and fails closed - the content was not judged and must not pass."""

    status, type = 503, "guard_unavailable"

    def __init__(self, reason: ErrorCode) -> None:
        super().__init__(
            f"guard unavailable ({reason.value}): the content was not judged and is not let through (fail closed)"
        )
        self.code = reason.value

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


INTERNAL: Final = {
    "error": {"message": "internal error: no verdict", "type": "server_error", "code": "internal", "param": None}
}


__all__ = [
    "INTERNAL",
    "BadRequest",
    "Forbidden",
    "GuardUnavailable",
    "ServiceError",
    "TooLarge",
    "Unauthorized",
    "UnsupportedMediaType",
]

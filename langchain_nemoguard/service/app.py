"""The guard service's ASGI app: three guardrail APIs over one :class:`NemoGuard`, plus health and metrics.

Routes:

* ``POST /v1/moderations`` - OpenAI's moderation API (:mod:`.moderations`);
* ``POST /v1/guardrail/checks`` - NeMo Guardrails' checks endpoint (:mod:`.nemo_checks`);
* ``POST /beta/litellm_basic_guardrail_api`` - LiteLLM's Generic Guardrail API (:mod:`.litellm_api`);
* ``GET /health`` - ``{"status": "ok"}``, no key needed, nothing about the configuration;
* ``GET /metrics`` - Prometheus text (a key is needed when keys are configured, unless ``metrics_public``).

Every request is treated as hostile: a key is required when keys are configured (``Authorization: Bearer`` or
LiteLLM's ``x-api-key``); the body must be JSON and at most ``max_body_bytes`` (checked against
``Content-Length`` and again while reading); inputs, images and characters are bounded; a request names a
policy only when its key allows it; images are URLs the core's rules accept (``data:``, and ``http(s)`` only
when the operator enabled fetching - never a local path); errors are OpenAI's envelope and reveal no address,
key or policy list. Outages follow the guard's ``on_error``: failing closed is a 503 that says so.

Each check is recorded with ``source="service"`` and the request id (``x-request-id``, or LiteLLM's call id, or
a new one), so metrics, traces and audit records of the service are those of its guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.conversation import Conversation
from ..core.errors import ConfigurationError, InvalidInputError, Stage
from ..core.policy import Policy
from ..core.verdict import Verdict
from . import litellm_api, moderations, nemo_checks
from .config import LOOPBACK, ServiceConfig
from .errors import (
    INTERNAL,
    BadRequest,
    Forbidden,
    ServiceError,
    TooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from .keys import ANONYMOUS, ApiKey
from .verdicts import raise_for_outage

if TYPE_CHECKING:
    from ..core.guard import NemoGuard
    from ..observability.metrics import GuardMetrics

logger = logging.getLogger("langchain_nemoguard.service")

_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_JSON_HEADERS: Final = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers={**_JSON_HEADERS, **(headers or {})}, media_type="application/json")


class ServiceApp:
    """The ASGI app: the body limit by ``Content-Length`` and the ``Host`` allow-list of an anonymous (loopback)
    service, then the route - a dictionary lookup, since the service sits on the hot path of every guarded
    request (Starlette supplies the request and response objects and the lifespan). ``service`` is the
    :class:`GuardService` behind it."""

    def __init__(self, service: GuardService, routes: dict[tuple[str, str], Handler], lifespan: ASGIApp) -> None:
        self.service = service
        self.routes = routes
        self.paths = {path for _, path in routes}
        self.lifespan = lifespan
        self.max_body = service.config.max_body_bytes
        self.check_host = service.config.anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.lifespan(scope, receive, send)  # lifespan (closes the guard at shutdown); no websockets
            return
        length = host = None
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                length = v
            elif k == b"host":
                host = v
        if self.check_host and not _loopback_host(host):
            await _send(send, BadRequest("the Host header must name a loopback address", "host"))
            return
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _send(send, TooLarge(f"the request body is over the {self.max_body}-byte limit"))
            return
        handler = self.routes.get((scope["method"], scope["path"]))
        if handler is None:
            if scope["path"] in self.paths:
                await _send(send, _NotAllowed(f"{scope['method']} is not allowed here"))
            else:
                await _send(send, _NotFound(f"no such endpoint: {scope['path'][:80]}"))
            return
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)


class _NotFound(ServiceError):
    status, type, code = 404, "not_found_error", "not_found"


class _NotAllowed(ServiceError):
    status, code = 405, "method_not_allowed"


def _loopback_host(host: bytes | None) -> bool:
    if not host:
        return False
    name = host.decode("latin-1").strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    else:
        name = name.rsplit(":", 1)[0]
    return name in LOOPBACK


async def _send(send: Send, error: ServiceError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
    start: Message = {"type": "http.response.start", "status": error.status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})


class GuardService:
    """The route handlers over one guard (no module-level state: everything hangs off this object).

    Args:
        guard: The guard that judges.
        config: Keys and limits.
        metrics: What ``/metrics`` serves (None: 404 there).
    """

    def __init__(self, guard: NemoGuard, config: ServiceConfig, metrics: GuardMetrics | None = None) -> None:
        self.guard = guard
        self.config = config
        self.metrics = metrics
        self.default_policy = guard.policy.name
        if config.keys is not None:  # misconfiguration stops the start: every policy a key names must exist
            for name in sorted(config.keys.policies()):
                try:
                    guard.policy_for(name)
                except ConfigurationError:
                    raise ConfigurationError(f"the keys name policy {name!r}, which is not loaded") from None

    # --- shared steps --------------------------------------------------------------------------------------

    def _caller(self, request: Request) -> ApiKey:
        keys = self.config.keys
        if keys is None:
            return ANONYMOUS
        auth = request.headers.get("authorization")
        presented = None
        if auth is not None:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer":
                presented = value.strip()
        if presented is None:
            presented = request.headers.get("x-api-key")
        key = keys.find(presented)
        if key is None:
            raise Unauthorized("a valid API key is required (Authorization: Bearer <key>)")
        return key

    def _policy(self, key: ApiKey, requested: Any) -> Policy:
        if requested is not None and not isinstance(requested, str):
            raise BadRequest("a policy is named by a string", "policy")
        name = requested or key.policy
        if requested is not None and not key.may_use(requested, self.default_policy):
            # the same answer whether or not such a policy exists: the caller learns nothing about the config
            raise Forbidden(f"this API key may not use policy {requested[:64]!r}", "policy")
        return self.guard.policy if name is None or name == self.default_policy else self.guard.policy_for(name)

    async def _body(self, request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
        limit = self.config.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"the request body is over the {limit}-byte limit")
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the request body must be a JSON object")
        return data

    def _bounded(self, conversations: Sequence[Conversation], inputs: int) -> None:
        c = self.config
        if inputs > c.max_inputs:
            raise TooLarge(f"at most {c.max_inputs} inputs per request, got {inputs}", "input")
        images = sum(len(conv.images) for conv in conversations)
        if images > c.max_images:
            raise TooLarge(f"at most {c.max_images} images per request, got {images}", "input")
        chars = sum(len(conv.prompt) + len(conv.response or "") for conv in conversations)
        if chars > c.max_text_chars:
            raise TooLarge(f"at most {c.max_text_chars} characters of text per request", "input")

    async def _judge(
        self, items: Sequence[tuple[Conversation, Stage | None]], policy: Policy, request_id: str
    ) -> list[Verdict]:
        async def one(conv: Conversation, stage: Stage | None) -> Verdict:
            return await self.guard.acheck(
                conversation=conv, policy=policy, stage=stage, request_id=request_id, source="service"
            )

        if len(items) == 1:
            return [await one(*items[0])]
        results = await asyncio.gather(*(one(c, s) for c, s in items), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return list(results)  # type: ignore[arg-type]

    @staticmethod
    def _request_id(request: Request, given: str | None = None) -> str:
        rid = given or request.headers.get("x-request-id")
        return rid if rid is not None and _REQUEST_ID.match(rid) else os.urandom(16).hex()

    # --- endpoints -----------------------------------------------------------------------------------------

    async def moderations(self, request: Request) -> Response:
        key = self._caller(request)
        body = await self._body(request)
        policy = self._policy(key, body.get("policy"))
        convs = moderations.conversations(body)
        self._bounded(convs, len(convs))
        rid = self._request_id(request)
        verdicts = await self._judge([(c, Stage.INPUT) for c in convs], policy, rid)
        raise_for_outage(verdicts)
        results = [moderations.result(v, c) for v, c in zip(verdicts, convs, strict=True)]
        data = {"id": f"modr-{os.urandom(12).hex()}", "model": self.guard.model, "results": results}
        return _json(data, headers={"x-request-id": rid})

    async def checks(self, request: Request) -> Response:
        key = self._caller(request)
        body = await self._body(request)
        policy = self._policy(key, nemo_checks.requested_policy(body))
        conv, messages = nemo_checks.conversation(body)
        self._bounded([conv], messages)
        rid = self._request_id(request)
        (verdict,) = await self._judge([(conv, None)], policy, rid)
        raise_for_outage([verdict])
        return _json(nemo_checks.response(verdict, conv, policy.name), headers={"x-request-id": rid})

    async def litellm(self, request: Request) -> Response:
        key = self._caller(request)
        body = await self._body(request)
        req = litellm_api.parse(body)
        policy = self._policy(key, req.policy)
        convs = [item.conversation for item in req.items]
        self._bounded(convs, len(req.items))
        rid = self._request_id(request, req.call_id)
        if not req.items:
            return _json({"action": "NONE"}, headers={"x-request-id": rid})
        verdicts = await self._judge([(i.conversation, i.stage) for i in req.items], policy, rid)
        raise_for_outage(verdicts)
        return _json(litellm_api.answer(req, verdicts, policy.refusal), headers={"x-request-id": rid})

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def metrics_text(self, request: Request) -> Response:
        if not self.config.metrics_public:
            self._caller(request)
        if self.metrics is None:
            return _json({"error": {"message": "metrics are off", "type": "not_found", "code": "not_found"}}, 404)
        return Response(self.metrics.exposition(), headers=_JSON_HEADERS, media_type=self.metrics.content_type)


def _endpoint(handler: Handler) -> Handler:
    """Turn the typed errors of a handler into answers; anything else is a 500 that says nothing."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ServiceError as exc:
            return _json(exc.body(), exc.status, exc.headers())
        except InvalidInputError as exc:  # the core's message says what is wrong with the caller's input
            return _json(BadRequest(str(exc)[:500]).body(), 400)
        except Exception:
            logger.exception("nemoguard server: internal error")
            return _json(INTERNAL, 500)

    return wrapped


def create_app(
    guard: NemoGuard,
    config: ServiceConfig | None = None,
    *,
    metrics: GuardMetrics | None = None,
    close_guard: bool = True,
) -> ServiceApp:
    """The service's ASGI app over ``guard`` (``app.service`` is its :class:`GuardService`).

    Args:
        guard: The guard that judges (the service records ``source="service"`` on it).
        config: Keys and limits (None: no keys, default limits).
        metrics: What ``/metrics`` serves (observing ``guard``; None: 404 there).
        close_guard: Close the guard when the app shuts down (draining its THINK audits).
    """
    config = config or ServiceConfig()
    service = GuardService(guard, config, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if close_guard:
            await guard.aclose()

    routes = {
        ("POST", "/v1/moderations"): _endpoint(service.moderations),
        ("POST", "/v1/guardrail/checks"): _endpoint(service.checks),
        ("POST", "/beta/litellm_basic_guardrail_api"): _endpoint(service.litellm),
        ("GET", "/health"): _endpoint(service.health),
        ("GET", "/metrics"): _endpoint(service.metrics_text),
    }
    return ServiceApp(service, routes, Starlette(lifespan=lifespan))


__all__ = ["GuardService", "ServiceApp", "create_app"]

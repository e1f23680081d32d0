"""The simulator's ASGI app: an OpenAI-compatible endpoint that behaves like a served Nemotron 3.5 guard.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``, ``GET /metrics``, and the admin API
under ``/_simulator/`` (``force``, ``reset``, ``requests``) that tests use to script outcomes and to see the
exact JSON a client sent. Every response carries ``x-nemoguard-simulator: not-a-safety-model``.

Admin API:

* ``POST /_simulator/force`` ``{"verdicts": [...], "match": "<optional substring of the user text>"}`` queues
  outcomes, consumed FIFO by the next requests whose user text contains ``match`` (case-sensitive). Each entry
  is ``{"user": "safe|unsafe", "response": ..., "categories": [...], "reasoning": "..."}`` (missing fields
  keep the rule-based values; the request's output mode still applies), ``{"raw": "<exact output>",
  "finish_reason": "stop|length", "reasoning_content": optional}``, or ``{"fault": "500|429|reset|..."}``.
  Answers ``{"queued": n, "pending": m}``. Forced outcomes win over random faults; contract errors (400/500
  for a malformed request) win over both and consume nothing. A verdict entry may also set ``user_score`` /
  ``response_score``: the probability of ``unsafe`` that logprobs carry at that verdict word
  (:mod:`.logprobs`; requests that ask for ``logprobs`` get them, streamed answers do not).
* ``POST /_simulator/reset`` clears the queue, the request log, the counters and the verdict cache, and
  reseeds the random generators.
* ``GET /_simulator/requests`` ``{"requests": [...]}``: the last 100 bodies as parsed JSON, oldest first
  (a body that is not JSON is recorded as its text).

Faults that are not HTTP answers need the raw connection: ``reset`` closes the socket with an RST (SO_LINGER 0)
and no response at all, so clients see a connection error (httpx ``ReadError``/``RemoteProtocolError``, aiohttp
``ServerDisconnectedError``/``ClientOSError``) rather than a 500; ``timeout`` holds the request open until the
client gives up. The outermost app records uvicorn's transport in the ASGI scope for that purpose; under a
server that does not expose it, ``reset`` degrades to an exception (which such servers turn into a 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from .config import BANNER, SIMULATOR_HEADER, SimulatorConfig
from .logprobs import token_logprobs, verdict_probability
from .protocol import (
    ChatRequest,
    ContractError,
    ModelOutput,
    completion_body,
    error_body,
    limit_tokens,
    parse_chat_request,
    shape_output,
    stream_frames,
    tokens_of,
)
from .rules import RuleSet
from .state import ForcedOutcome, SimulatorState
from .verdict import ImageRuleError, SimulatedVerdict, compute_verdict, render_output

TRANSPORT_SCOPE_KEY: Final = "nemoguard.simulator.transport"

GARBAGE_OUTPUT: Final = "I think this conversation is probably fine, but I am not completely sure about it."
"""What the ``garbage`` fault answers: fluent text with no verdict line, as a misbehaving model might."""
TRUNCATED_OUTPUT: Final = "<think>\nThe user is asking about something, and I need to check whether it falls"
"""What the ``truncated`` fault answers: a THINK trace cut off by max_tokens, never closed, no verdict."""
FORCED_REASONING: Final = "This verdict was forced through the simulator's admin API."

_HEADER: Final = (SIMULATOR_HEADER[0].encode(), SIMULATOR_HEADER[1].encode())


# --- responses that are not responses ----------------------------------------------------------------------


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.01)  # a server that keeps answering http.request must not make this spin


def _abort(scope: Scope) -> bool:
    """Reset the client connection (RST, no response); False when the server does not expose its transport."""
    transport = scope.get(TRANSPORT_SCOPE_KEY)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


class _ResetResponse(Response):
    """Drops the connection without sending a status line."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _abort(scope):
            raise ConnectionResetError("simulated connection reset (server does not expose its transport)")
        # Let the server notice the lost connection before the app returns, so it does not try to answer.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_wait_for_disconnect(receive), timeout=1.0)


class _HangResponse(Response):
    """Sends nothing until the client gives up (or ``seconds`` pass, then resets)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(status_code=504)
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.wait_for(_wait_for_disconnect(receive), timeout=self.seconds)
        except TimeoutError:
            if not _abort(scope):
                raise ConnectionResetError("simulated timeout expired") from None


# --- the app -----------------------------------------------------------------------------------------------


class _SimulatorApp(Starlette):
    """Starlette plus two things every request needs: the banner header, and access to the raw transport."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # uvicorn passes the bound RequestResponseCycle.send; its cycle owns the asyncio transport.
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None:
            scope[TRANSPORT_SCOPE_KEY] = transport

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), _HEADER]
            await send(message)

        await super().__call__(scope, receive, send_marked)


class _Endpoints:
    """Route handlers bound to one state object (no module-level state)."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.config = state.config

    # -- OpenAI surface -----------------------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        state = self.state
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            state.record(raw.decode("utf-8", errors="replace"))
            return self._error(400, "request body is not valid JSON", "invalid_json")
        state.record(body)
        fault = state.draw_fault()
        delay = state.latency_s()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            chat = parse_chat_request(body, self.config)
        except ContractError as exc:
            return self._error(exc.status, exc.message, exc.code)

        forced = state.take_forced(chat.user_text)
        if forced is not None and forced.kind == "fault" and forced.fault is not None:
            return self._fault(forced.fault, chat)
        if forced is None and fault is not None:
            return self._fault(fault, chat)
        try:
            if forced is not None and forced.kind == "raw":
                output = self._raw_output(forced)
                if chat.logprobs and not chat.stream:  # every token certain: scores of 0 or 1
                    text = (forced.raw_reasoning or "") + (forced.raw or "")
                    output = self._with_logprobs(output, text, {}, chat)
            else:
                output = self._model_output(chat, forced)
        except ImageRuleError as exc:
            return self._error(400, str(exc), "bad_image")
        return self._answer(chat, output)

    async def models(self, request: Request) -> Response:
        data = [
            {
                "id": model,
                "object": "model",
                "created": 0,
                "owned_by": "nemoguard-simulator",
                "root": model,
                "max_model_len": 131072,
                "description": BANNER,
            }
            for model in dict.fromkeys((self.config.model, *self.config.extra_models))
        ]
        return JSONResponse({"object": "list", "data": data})

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(self.state.metrics_text(), media_type="text/plain; version=0.0.4")

    # -- admin API ----------------------------------------------------------------------------------------

    async def force(self, request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return self._admin_error("body is not valid JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("verdicts"), list):
            return self._admin_error("expected {'verdicts': [...], 'match': optional substring}")
        match = payload.get("match")
        if match is not None and (not isinstance(match, str) or not match):
            return self._admin_error("'match' must be a non-empty string")
        try:
            outcomes = [ForcedOutcome.from_json(spec, match) for spec in payload["verdicts"]]
        except ValueError as exc:
            return self._admin_error(str(exc))
        self.state.queue(outcomes)
        return JSONResponse({"queued": len(outcomes), "pending": len(self.state.forced)})

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return JSONResponse({"reset": True})

    async def requests(self, request: Request) -> Response:
        return JSONResponse({"requests": list(self.state.recorded)})

    # -- helpers ------------------------------------------------------------------------------------------

    def _error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
        self.state.statuses[str(status)] += 1
        return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)

    @staticmethod
    def _admin_error(message: str) -> Response:
        return JSONResponse(error_body(400, message, "bad_admin_request"), status_code=400)

    def _fault(self, kind: str, chat: ChatRequest) -> Response:
        self.state.faults[kind] += 1
        if kind == "reset":
            self.state.statuses["reset"] += 1
            return _ResetResponse()
        if kind == "timeout":
            self.state.statuses["timeout"] += 1
            return _HangResponse(self.config.timeout_fault_s)
        if kind == "garbage":
            return self._answer(
                chat, shape_output(GARBAGE_OUTPUT, "stop", reasoning_field=self.config.reasoning_field)
            )
        if kind == "truncated":
            truncated = shape_output(TRUNCATED_OUTPUT, "length", reasoning_field=self.config.reasoning_field)
            return self._answer(chat, truncated)
        status = int(kind)
        headers = {"Retry-After": "1"} if status == 429 else None
        return self._error(status, f"simulated fault: HTTP {status}", "simulated_fault", headers)

    def _raw_output(self, forced: ForcedOutcome) -> ModelOutput:
        text = forced.raw or ""
        if forced.raw_reasoning is not None:
            # An explicit reasoning_content means "answer in the hosted-endpoint shape", whatever the config.
            tokens = tokens_of(text) + tokens_of(forced.raw_reasoning)
            return ModelOutput(text, forced.raw_reasoning, forced.finish_reason, tokens)
        return shape_output(text, forced.finish_reason, reasoning_field=self.config.reasoning_field)

    def _model_output(self, chat: ChatRequest, forced: ForcedOutcome | None) -> ModelOutput:
        key = (chat.user_text, chat.response_text, chat.image, chat.custom_policy, chat.custom_taxonomy)
        verdict = self.state.verdict(
            key,
            lambda: compute_verdict(
                chat.user_text,
                chat.response_text,
                image=chat.image,
                custom_policy=chat.custom_policy,
                custom_taxonomy=chat.custom_taxonomy,
                rules=self.state.rules,
                max_image_pixels=self.config.max_image_pixels,
            ),
        )
        if forced is not None:
            verdict = _overlay(verdict, forced)
        text = render_output(verdict, think=chat.enable_thinking, with_categories=chat.request_categories)
        text, finish = limit_tokens(text, chat.max_tokens)
        output = shape_output(text, finish, reasoning_field=self.config.reasoning_field)
        if not chat.logprobs or chat.stream:
            return output
        probabilities = {"user": verdict_probability(chat.user_text, not verdict.user_safe)}
        if verdict.response_safe is not None:
            probabilities["response"] = verdict_probability(chat.response_text, not verdict.response_safe)
        if forced is not None and forced.user_score is not None:
            probabilities["user"] = forced.user_score
        if forced is not None and forced.response_score is not None:
            probabilities["response"] = forced.response_score
        return self._with_logprobs(output, text, probabilities, chat)

    def _with_logprobs(
        self, output: ModelOutput, text: str, probabilities: dict[str, float], chat: ChatRequest
    ) -> ModelOutput:
        tokens = token_logprobs(
            text, probabilities, top=chat.top_logprobs, split_verdicts=self.config.split_verdict_tokens
        )
        return dataclasses.replace(output, logprobs=tokens)

    def _answer(self, chat: ChatRequest, output: ModelOutput) -> Response:
        self.state.statuses["200"] += 1
        reasoning_field = self.config.reasoning_field or output.reasoning is not None
        if not chat.stream:
            body = completion_body(chat.model, output, chat.prompt_tokens, reasoning_field=reasoning_field)
            return Response(body, media_type="application/json")
        frames = stream_frames(
            chat.model,
            output,
            chat.prompt_tokens,
            reasoning_field=reasoning_field,
            include_usage=chat.include_usage,
        )

        async def emit() -> AsyncIterator[bytes]:
            for frame in frames:
                yield frame

        return StreamingResponse(
            emit(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )


def _overlay(computed: SimulatedVerdict, forced: ForcedOutcome) -> SimulatedVerdict:
    """A forced verdict: given fields win, missing ones keep the rule-based values."""
    user_safe = computed.user_safe if forced.user_safe is None else forced.user_safe
    response_safe = computed.response_safe
    if response_safe is not None and forced.response_safe is not None:
        response_safe = forced.response_safe
    categories = computed.categories if forced.categories is None else forced.categories
    # The default trace must not repeat "User Safety:" lines: strict parsers reject duplicated verdicts.
    said = f"the user input is {'safe' if user_safe else 'unsafe'}"
    if response_safe is not None:
        said += f" and the assistant response is {'safe' if response_safe else 'unsafe'}"
    reasoning = forced.reasoning or f"{FORCED_REASONING} It says {said}."
    return SimulatedVerdict(user_safe, response_safe, categories, reasoning)


def create_app(config: SimulatorConfig | None = None, *, rules: RuleSet | None = None) -> Starlette:
    """Build one simulator app; its state is reachable as ``app.state.simulator`` (a ``SimulatorState``)."""
    config = config if config is not None else SimulatorConfig()
    rules = rules if rules is not None else RuleSet.load(config.rules_path)
    state = SimulatorState(config, rules)
    ep = _Endpoints(state)
    routes = [
        Route("/v1/chat/completions", ep.chat_completions, methods=["POST"]),
        Route("/v1/models", ep.models, methods=["GET"]),
        Route("/health", ep.health, methods=["GET"]),
        Route("/metrics", ep.metrics, methods=["GET"]),
        Route("/_simulator/force", ep.force, methods=["POST"]),
        Route("/_simulator/reset", ep.reset, methods=["POST"]),
        Route("/_simulator/requests", ep.requests, methods=["GET"]),
    ]
    app = _SimulatorApp(routes=routes)
    app.state.simulator = state
    return app

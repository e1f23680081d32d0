"""A small OpenAI-compatible upstream that really streams: the main model behind the LiteLLM proxy in tier 3.

Unlike ``mock_response`` (which LiteLLM answers itself), this is a separate HTTP server the proxy reaches over a
socket, so streams arrive in many chunks, with pauses, the way a real provider sends them. It speaks:

* ``POST /v1/chat/completions`` - text, tool calls and ``reasoning_content``, streamed (SSE) or not;
* ``POST /v1/completions`` - the legacy completions route;
* ``POST /v1/responses`` - the Responses API, with its typed streaming events (text, function-call
  arguments, reasoning summaries, ``response.completed``);
* ``POST /v1/embeddings``.

What it answers is chosen by the requested model name (a :data:`SCRIPTS` key), and every request it received is
kept (``requests``), so a test can tell whether the proxy called the model at all.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

UNSAFE = "then kill him with a knife while he sleeps"
SAFE_ANSWER = "Paris is the capital of France."
LONG_SAFE = "Here is a calm overview of the topic you asked about, written in plain words. " * 6


@dataclass(frozen=True)
class Script:
    """One canned answer: text, tool calls (name, arguments JSON) and reasoning."""

    text: str = ""
    tool_calls: tuple[tuple[str, str], ...] = ()
    reasoning: str = ""


SCRIPTS: dict[str, Script] = {
    "safe": Script(text=SAFE_ANSWER),
    "unsafe-late": Script(text=LONG_SAFE + f"And {UNSAFE}. That is the end of the answer."),
    "unsafe-short": Script(text=f"You should {UNSAFE}."),
    "tool-unsafe": Script(tool_calls=(("send_note", json.dumps({"to": "bob", "note": f"I will {UNSAFE}"})),)),
    "reasoning-unsafe": Script(text="Here is a short poem about spring.", reasoning=f"Plan: {UNSAFE}."),
    "structured-unsafe": Script(text=json.dumps({"title": "plan", "step": f"Step one: {UNSAFE}"})),
}

CHUNK = 3  # characters per streamed piece: many chunks
PAUSE_S = 0.002


def _pieces(text: str) -> list[str]:
    return [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]


@dataclass
class FakeUpstream:
    """The server in a background thread; ``base_url`` is what LiteLLM's ``api_base`` takes."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def paths(self) -> list[str]:
        return [r["_path"] for r in self.requests]

    def reset(self) -> None:
        self.requests.clear()

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/completions", self._completions, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/health", lambda r: JSONResponse({"ok": True})),
            ]
        )
        config = uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning", log_config=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.02)
        raise RuntimeError("the fake upstream did not start")

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    # --- routes --------------------------------------------------------------------------------------------------

    async def _body(self, request: Request) -> tuple[dict[str, Any], Script]:
        body = await request.json()
        self.requests.append({**body, "_path": request.url.path})
        name = str(body.get("model", "safe")).rsplit("/", 1)[-1]
        return body, SCRIPTS.get(name, SCRIPTS["safe"])

    async def _chat(self, request: Request) -> Response:
        body, script = await self._body(request)
        model = body.get("model", "fake")
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": script.text or None}
            if script.reasoning:
                message["reasoning_content"] = script.reasoning
            if script.tool_calls:
                message["tool_calls"] = [
                    {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                    for i, (n, a) in enumerate(script.tool_calls)
                ]
            finish = "tool_calls" if script.tool_calls else "stop"
            return JSONResponse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(payload)}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            for piece in _pieces(script.reasoning):
                yield chunk({"reasoning_content": piece})
                await asyncio.sleep(PAUSE_S)
            for piece in _pieces(script.text):
                yield chunk({"content": piece})
                await asyncio.sleep(PAUSE_S)
            for i, (name, args) in enumerate(script.tool_calls):
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": f"call_{i}",
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    }
                )
                for piece in _pieces(args):
                    yield chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
                    await asyncio.sleep(PAUSE_S)
            yield chunk({}, "tool_calls" if script.tool_calls else "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _completions(self, request: Request) -> Response:
        body, script = await self._body(request)
        model = body.get("model", "fake")

        def payload(text: str, finish: str | None) -> dict[str, Any]:
            return {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
            }

        if not body.get("stream"):
            out = payload(script.text, "stop")
            out["usage"] = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
            return JSONResponse(out)

        async def events() -> AsyncIterator[str]:
            for piece in _pieces(script.text):
                yield f"data: {json.dumps(payload(piece, None))}\n\n"
                await asyncio.sleep(PAUSE_S)
            yield f"data: {json.dumps(payload('', 'stop'))}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def _embeddings(self, request: Request) -> Response:
        body, _ = await self._body(request)
        inputs = body.get("input")
        n = len(inputs) if isinstance(inputs, list) else 1
        return JSONResponse(
            {
                "object": "list",
                "model": body.get("model", "fake"),
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(n)],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        )

    async def _responses(self, request: Request) -> Response:
        body, script = await self._body(request)
        model = body.get("model", "fake")
        items = _response_items(script)
        full = _response_object(model, items, "completed")
        if not body.get("stream"):
            return JSONResponse(full)

        async def events() -> AsyncIterator[str]:
            seq = 0

            def event(kind: str, **fields: Any) -> str:
                nonlocal seq
                seq += 1
                return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': seq, **fields})}\n\n"

            yield event("response.created", response=_response_object(model, [], "in_progress"))
            yield event("response.in_progress", response=_response_object(model, [], "in_progress"))
            for index, item in enumerate(items):
                kind = item["type"]
                if kind == "reasoning":
                    yield event("response.output_item.added", output_index=index, item={**item, "summary": []})
                    text = item["summary"][0]["text"]
                    part = {"type": "summary_text", "text": ""}
                    yield event(
                        "response.reasoning_summary_part.added",
                        item_id=item["id"], output_index=index, summary_index=0, part=part,
                    )
                    for piece in _pieces(text):
                        yield event(
                            "response.reasoning_summary_text.delta",
                            item_id=item["id"], output_index=index, summary_index=0, delta=piece,
                        )
                        await asyncio.sleep(PAUSE_S)
                    yield event(
                        "response.reasoning_summary_text.done",
                        item_id=item["id"], output_index=index, summary_index=0, text=text,
                    )
                elif kind == "message":
                    text = item["content"][0]["text"]
                    yield event(
                        "response.output_item.added",
                        output_index=index, item={**item, "content": [], "status": "in_progress"},
                    )
                    part = {"type": "output_text", "text": "", "annotations": []}
                    yield event(
                        "response.content_part.added",
                        item_id=item["id"], output_index=index, content_index=0, part=part,
                    )
                    for piece in _pieces(text):
                        yield event(
                            "response.output_text.delta",
                            item_id=item["id"], output_index=index, content_index=0, delta=piece, logprobs=[],
                        )
                        await asyncio.sleep(PAUSE_S)
                    yield event(
                        "response.output_text.done",
                        item_id=item["id"], output_index=index, content_index=0, text=text, logprobs=[],
                    )
                    yield event(
                        "response.content_part.done",
                        item_id=item["id"], output_index=index, content_index=0,
                        part={**part, "text": text},
                    )
                else:  # function_call
                    yield event(
                        "response.output_item.added",
                        output_index=index, item={**item, "arguments": "", "status": "in_progress"},
                    )
                    for piece in _pieces(item["arguments"]):
                        yield event(
                            "response.function_call_arguments.delta",
                            item_id=item["id"], output_index=index, delta=piece,
                        )
                        await asyncio.sleep(PAUSE_S)
                    yield event(
                        "response.function_call_arguments.done",
                        item_id=item["id"], output_index=index, arguments=item["arguments"],
                    )
                yield event("response.output_item.done", output_index=index, item=item)
            yield event("response.completed", response=full)

        return StreamingResponse(events(), media_type="text/event-stream")


def _response_items(script: Script) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if script.reasoning:
        items.append(
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": script.reasoning}]}
        )
    if script.text:
        items.append(
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": script.text, "annotations": []}],
            }
        )
    for i, (name, args) in enumerate(script.tool_calls):
        items.append(
            {
                "type": "function_call",
                "id": f"fc_{i}",
                "call_id": f"call_{i}",
                "name": name,
                "arguments": args,
                "status": "completed",
            }
        )
    return items


def _response_object(model: str, items: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": items,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 5,
            "output_tokens": 7,
            "total_tokens": 12,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }

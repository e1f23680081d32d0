"""LiteLLM's shapes <-> the core's: requests, responses and stream chunks of every route in; checks out; verdicts
back as LiteLLM's errors, chunks and log entries.

Pure translation, no decisions: what is judged is the core's coverage rule (``core.coverage``) - the readers
here only turn each route's wire shape into the core's :class:`Message` / :class:`Output` values:

* chat completions (``messages``), the Responses API (``instructions`` and ``input`` items), Anthropic's
  ``/v1/messages`` (``system`` and ``messages`` blocks), legacy completions (``prompt``), embeddings (``input``,
  judged only with ``check_embeddings``), image generation (``prompt``);
* their responses: ``ModelResponse``, ``ResponsesAPIResponse``, ``TextCompletionResponse``, Anthropic's message
  dict;
* their streams: chat chunks (text, tool-call deltas, reasoning), Responses events, Anthropic SSE bytes,
  completion chunks.

A shape the readers cannot read raises :class:`InvalidInputError`, which the guardrail answers with an HTTP 400:
it is refused, never skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from litellm.types.utils import GuardrailStatus, ModelResponseStream, StreamingChoices

from langchain_nemoguard.core.coverage import (
    Check,
    CoverageOptions,
    Message,
    Output,
    ToolCall,
    embedding_check,
    input_checks,
    last_user_text,
    output_check,
    prompt_texts,
    read_message,
    read_parts,
    serialise,
)
from langchain_nemoguard.core.errors import ContentBlockedError, InvalidInputError, Stage
from langchain_nemoguard.core.verdict import Verdict

# --- requests ---------------------------------------------------------------------------------------------------

_EMBEDDINGS = frozenset({"embedding", "aembedding"})
_COMPLETIONS = frozenset({"text_completion", "atext_completion"})
_RESPONSES = frozenset({"responses", "aresponses"})
_ANTHROPIC = frozenset({"anthropic_messages"})
_PROMPT_ONLY = frozenset({"image_generation", "aimage_generation", "image_edit", "aimage_edit"})
# Responses items the model wrote earlier that are neither a message nor a *_call (replayed as history)
_ASSISTANT_ITEMS = frozenset({"mcp_list_tools", "mcp_approval_request", "compaction"})


def request_messages(call_type: str | None, data: Mapping[str, Any]) -> list[Message]:
    """The request's messages as the core reads them, for any route (see the module docstring)."""
    call = str(call_type or "")
    if call in _RESPONSES or ("input" in data and "messages" not in data and call not in _EMBEDDINGS):
        return responses_messages(data)
    if call in _ANTHROPIC or ("system" in data and "messages" in data):
        return anthropic_messages(data)
    if "messages" in data:
        return chat_messages(data.get("messages"))
    if call in _COMPLETIONS or call in _PROMPT_ONLY or "prompt" in data:
        return [Message("user", "\n".join(prompt_texts(data.get("prompt"), where="prompt")))]
    return []


def request_checks(call_type: str | None, data: Mapping[str, Any], options: CoverageOptions) -> tuple[Check, ...]:
    """Every check a request needs before the model runs; an unreadable shape raises InvalidInputError."""
    if not isinstance(data, Mapping):
        raise InvalidInputError("the request body must be a JSON object")
    if str(call_type or "") in _EMBEDDINGS:
        check = embedding_check(data.get("input"), options)
        return (check,) if check is not None else ()
    return input_checks(request_messages(call_type, data), options)


def request_prompt(call_type: str | None, data: Mapping[str, Any]) -> str:
    """The user text an answer is judged after (context only: the input check refuses what cannot be read)."""
    try:
        return last_user_text(request_messages(call_type, data))
    except InvalidInputError:
        return ""


def chat_messages(messages: Any) -> list[Message]:
    """OpenAI chat ``messages``: roles, string or part content, assistant tool calls and reasoning."""
    if not isinstance(messages, list):
        raise InvalidInputError("messages must be a list")
    out = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            raise InvalidInputError(f"{where} must be an object")
        calls = _openai_tool_calls(msg.get("tool_calls"), where)
        fn = msg.get("function_call")
        if isinstance(fn, Mapping):
            calls.append(ToolCall(str(fn.get("name") or ""), fn.get("arguments", "")))
        reasoning = _reasoning_text(msg)
        out.append(read_message(msg.get("role"), msg.get("content"), tool_calls=calls, reasoning=reasoning, where=where))
    return out


def responses_messages(data: Mapping[str, Any]) -> list[Message]:
    """The Responses API's ``instructions`` (a system message) and ``input`` (a string or a list of items)."""
    out: list[Message] = []
    instructions = data.get("instructions")
    if isinstance(instructions, str):
        out.append(Message("system", instructions))
    elif instructions is not None:
        out.extend(_response_items(instructions, "instructions"))
    items = data.get("input")
    if isinstance(items, str):
        out.append(Message("user", items))
    elif items is not None:
        out.extend(_response_items(items, "input"))
    return out


def _response_items(items: Any, where: str) -> list[Message]:
    if not isinstance(items, list):
        raise InvalidInputError(f"{where} must be a string or a list of items")
    out: list[Message] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if isinstance(item, str):
            out.append(Message("user", item))
            continue
        if not isinstance(item, Mapping):
            raise InvalidInputError(f"{at} must be an object")
        kind = item.get("type", "message")
        if kind == "message" or (kind is None and "role" in item):
            out.append(read_message(item.get("role"), item.get("content"), where=at))
        elif kind in ("function_call", "custom_tool_call", "mcp_call"):
            args = item.get("arguments", item.get("input", ""))
            out.append(Message("assistant", tool_calls=(ToolCall(str(item.get("name") or ""), args),)))
        elif isinstance(kind, str) and kind.endswith("_call_output"):
            parts = read_parts(item.get("output"), where=f"{at}.output")
            out.append(Message("tool", "\n".join(parts.texts), images=tuple(parts.images)))
        elif kind == "reasoning":
            texts = read_parts(item.get("summary") or [], where=f"{at}.summary").texts
            out.append(Message("assistant", reasoning="\n".join(texts)))
        elif isinstance(kind, str) and (kind.endswith("_call") or kind in _ASSISTANT_ITEMS):
            # a built-in tool's call or listing the model produced earlier (web search, MCP...): its JSON
            body = {k: v for k, v in item.items() if k not in ("id", "status", "type")}
            out.append(Message("assistant", tool_calls=(ToolCall(kind, body),)))
        elif kind == "mcp_approval_response":
            out.append(Message("user", serialise({k: v for k, v in item.items() if k != "id"})))
        elif kind == "item_reference":
            continue  # an earlier item of a stored response: judged when it was new
        else:
            raise InvalidInputError(f"{at}: input item of type {kind!r} cannot be checked")
    return out


def anthropic_messages(data: Mapping[str, Any]) -> list[Message]:
    """Anthropic's ``/v1/messages``: ``system`` (a string or text blocks) and ``messages`` of content blocks."""
    out: list[Message] = []
    system = data.get("system")
    if system is not None:
        parts = read_parts(system, where="system")
        out.append(Message("system", "\n".join(parts.texts), images=tuple(parts.images)))
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise InvalidInputError("messages must be a list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping):
            raise InvalidInputError(f"messages[{i}] must be an object")
        out.append(read_message(msg.get("role"), msg.get("content"), where=f"messages[{i}]"))
    return out


def _openai_tool_calls(calls: Any, where: str) -> list[ToolCall]:
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise InvalidInputError(f"{where}.tool_calls must be a list")
    out = []
    for call in calls:
        call = _plain(call)
        fn = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(fn, Mapping):
            out.append(ToolCall(str(fn.get("name") or ""), fn.get("arguments") or ""))
        elif isinstance(call, Mapping):
            out.append(ToolCall(str(call.get("name") or call.get("type") or ""), serialise(call)))
    return out


def _reasoning_text(msg: Mapping[str, Any]) -> str:
    parts = []
    if isinstance(msg.get("reasoning_content"), str):
        parts.append(msg["reasoning_content"])
    blocks = msg.get("thinking_blocks")
    if isinstance(blocks, list):
        for block in blocks:
            block = _plain(block)
            if isinstance(block, Mapping) and isinstance(block.get("thinking"), str):
                parts.append(block["thinking"])
    return "\n".join(p for p in parts if p)


# --- responses --------------------------------------------------------------------------------------------------


def response_output(response: Any) -> Output | None:
    """What a response carries to the caller, for every route; None when it carries no text (embeddings)."""
    plain = _plain(response)
    if not isinstance(plain, Mapping):
        return None
    if isinstance(plain.get("output"), list):  # Responses API
        return _responses_output(plain["output"])
    if plain.get("type") == "message" and isinstance(plain.get("content"), list):  # Anthropic
        parts = read_parts([b for b in plain["content"] if isinstance(b, Mapping)], where="content")
        return Output(text="\n".join(parts.texts), tool_calls=tuple(parts.tool_calls), reasoning="\n".join(parts.reasoning))
    choices = plain.get("choices")
    if isinstance(choices, list) and choices:
        texts, calls, reasoning = [], [], []
        for choice in choices:
            if not isinstance(choice, Mapping):
                continue
            if isinstance(choice.get("text"), str):  # legacy completions
                texts.append(choice["text"])
            message = choice.get("message")
            if isinstance(message, Mapping):
                parts = read_parts(message.get("content"), where="message.content")
                texts.extend(parts.texts)
                calls.extend(_openai_tool_calls(message.get("tool_calls"), "message"))
                fn = message.get("function_call")
                if isinstance(fn, Mapping):
                    calls.append(ToolCall(str(fn.get("name") or ""), fn.get("arguments", "")))
                reasoning.append(_reasoning_text(message))
                audio = message.get("audio")
                if isinstance(audio, Mapping) and isinstance(audio.get("transcript"), str):
                    texts.append(audio["transcript"])
        return Output(
            text="\n".join(t for t in texts if t),
            tool_calls=tuple(calls),
            reasoning="\n".join(r for r in reasoning if r),
        )
    return None


def _responses_output(items: list[Any]) -> Output:
    texts, calls, reasoning, other = [], [], [], []
    for item in items:
        item = _plain(item)
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "message":
            parts = read_parts(item.get("content") or [], where="output.content")
            texts.extend(parts.texts)
        elif kind == "function_call":
            calls.append(ToolCall(str(item.get("name") or ""), item.get("arguments") or ""))
        elif kind == "reasoning":
            reasoning.extend(read_parts(item.get("summary") or [], where="output.summary").texts)
            reasoning.extend(read_parts(item.get("content") or [], where="output.content").texts)
        else:  # any other item reaches the caller too: judged as its JSON, never skipped
            other.append({k: v for k, v in item.items() if k not in ("id", "status")})
    return Output(
        text="\n".join(t for t in texts if t),
        tool_calls=tuple(calls),
        reasoning="\n".join(r for r in reasoning if r),
        structured=other or None,
    )


def response_checks(response: Any, prompt: str, options: CoverageOptions) -> Check | None:
    output = response_output(response)
    return None if output is None else output_check(output, prompt=prompt, options=options)


def rewrite_response(response: Any, refusal: str) -> Any:
    """The response with every channel the caller reads replaced by the refusal (a ``rewrite`` of the output)."""
    plain = _plain(response)
    if isinstance(response, dict) and response.get("type") == "message":  # Anthropic
        response["content"] = [{"type": "text", "text": refusal}]
        response["stop_reason"] = "refusal"
        return response
    if isinstance(plain, Mapping) and isinstance(plain.get("output"), list):  # Responses
        response.output = [
            {
                "type": "message",
                "id": "msg_nemoguard_refusal",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": refusal, "annotations": []}],
            }
        ]
        return response
    for i, choice in enumerate(getattr(response, "choices", None) or []):
        message = getattr(choice, "message", None)
        if message is not None:
            message.content = refusal if i == 0 else ""
            for attr in ("tool_calls", "function_call", "reasoning_content", "thinking_blocks"):
                if getattr(message, attr, None) is not None:
                    setattr(message, attr, None)
        elif hasattr(choice, "text"):
            choice.text = refusal if i == 0 else ""
        if hasattr(choice, "finish_reason"):
            choice.finish_reason = "content_filter"
    return response


# --- streams ----------------------------------------------------------------------------------------------------

# Responses events whose text is new (a delta); the *.done / completed events repeat text already counted.
_RESPONSES_DELTAS = {
    "response.output_text.delta": "text",
    "response.refusal.delta": "text",
    "response.function_call_arguments.delta": "tool",
    "response.custom_tool_call_input.delta": "tool",
    "response.mcp_call_arguments.delta": "tool",
    "response.reasoning_summary_text.delta": "reasoning",
    "response.reasoning_text.delta": "reasoning",
}


def stream_text(chunk: Any, options: CoverageOptions) -> str:
    """The judged text a stream chunk adds (text, tool-call names and arguments, reasoning), for every route."""
    if isinstance(chunk, (bytes, bytearray, str)):
        return _anthropic_sse_text(chunk, options)
    kind = getattr(chunk, "type", None)
    if isinstance(kind, str) and kind.startswith("response."):
        return _responses_event_text(chunk, kind, options)
    parts: list[str] = []
    for choice in getattr(chunk, "choices", None) or []:
        if isinstance(getattr(choice, "text", None), str):  # legacy completions
            parts.append(choice.text)
        delta = getattr(choice, "delta", None)
        if delta is None:
            continue
        content = getattr(delta, "content", None)
        if isinstance(content, str):
            parts.append(content)
        for call in getattr(delta, "tool_calls", None) or []:
            fn = getattr(call, "function", None)
            name = getattr(fn, "name", None)
            args = getattr(fn, "arguments", None)
            parts.append((f"{name}: " if name else "") + (args if isinstance(args, str) else ""))
        fn = getattr(delta, "function_call", None)
        if fn is not None:
            parts.append((getattr(fn, "name", None) or "") + (getattr(fn, "arguments", None) or ""))
        if options.check_reasoning:
            reasoning = getattr(delta, "reasoning_content", None)
            if isinstance(reasoning, str):
                parts.append(reasoning)
    return "".join(parts)


def _responses_event_text(event: Any, kind: str, options: CoverageOptions) -> str:
    channel = _RESPONSES_DELTAS.get(kind)
    if channel is not None:
        if channel == "reasoning" and not options.check_reasoning:
            return ""
        delta = _field(event, "delta")
        return delta if isinstance(delta, str) else ""
    if kind == "response.output_item.added":
        item = _plain(_field(event, "item"))
        if isinstance(item, Mapping) and item.get("type") in ("function_call", "custom_tool_call", "mcp_call"):
            return f"{item.get('name') or ''}: "
    return ""


def _anthropic_sse_text(chunk: bytes | bytearray | str, options: CoverageOptions) -> str:
    raw = chunk.decode("utf-8", "replace") if isinstance(chunk, (bytes, bytearray)) else chunk
    parts: list[str] = []
    for line in raw.splitlines():
        if not line.startswith("data:"):
            continue
        try:
            event = json.loads(line[5:].strip())
        except json.JSONDecodeError:
            continue
        if not isinstance(event, Mapping):
            continue
        if event.get("type") == "content_block_start":
            block = event.get("content_block")
            if isinstance(block, Mapping) and block.get("type") in ("tool_use", "server_tool_use"):
                parts.append(f"{block.get('name') or ''}: ")
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        delta = event.get("delta")
        if event.get("type") == "content_block_delta" and isinstance(delta, Mapping):
            for key in ("text", "partial_json"):
                if isinstance(delta.get(key), str):
                    parts.append(delta[key])
            if options.check_reasoning and isinstance(delta.get("thinking"), str):
                parts.append(delta["thinking"])
    return "".join(parts)


class StreamEnd:
    """Builds the chunks that end a stream the guard stopped, in the stream's own wire shape."""

    def __init__(self) -> None:
        self.first: Any = None
        self.last: Any = None

    def seen(self, chunk: Any) -> None:
        if self.first is None:
            self.first = chunk
        self.last = chunk

    def chunks(self, refusal: str | None, *, inline: str | None = None) -> list[Any]:
        """The closing chunk(s): the refusal (``rewrite``) or nothing (``block``), ``content_filter``-style.

        ``inline`` is the refusal as it continues released text (``StreamRefusal.text``: after a paragraph
        break); the routes whose refusal extends the streamed text (chat, completions) send it, the routes that
        put the refusal in a block or message of its own (Anthropic, Responses) send the bare ``refusal``."""
        sample = self.first if self.first is not None else self.last
        continued = inline if inline is not None and refusal is not None else refusal
        if isinstance(sample, (bytes, bytearray, str)):
            return _anthropic_end(refusal)
        kind = getattr(sample, "type", None)
        if isinstance(kind, str) and kind.startswith("response."):
            return _responses_end(sample, refusal)
        if sample is not None and not hasattr(sample, "choices"):
            return []
        if sample is not None and sample.choices and hasattr(sample.choices[0], "text"):
            return [_completion_end(sample, continued)]
        return [final_chunk(self.last, continued)]


def final_chunk(last: ModelResponseStream | None, content: str | None) -> ModelResponseStream:
    """The chat chunk that ends a stream the guard stopped: the refusal (rewrite) or nothing (block)."""
    from litellm.types.utils import Delta

    fields: dict[str, Any] = {}
    if last is not None:
        fields = {"id": last.id, "model": last.model, "created": last.created}
    return ModelResponseStream(
        **fields,
        choices=[
            StreamingChoices(
                index=0,
                delta=Delta(content=content, role="assistant" if last is None else None),
                finish_reason="content_filter",
            )
        ],
    )


def _completion_end(sample: Any, refusal: str | None) -> Any:
    from litellm.types.utils import TextChoices, TextCompletionResponse

    return TextCompletionResponse(
        id=getattr(sample, "id", None),
        model=getattr(sample, "model", None),
        created=getattr(sample, "created", None),
        choices=[TextChoices(index=0, text=refusal or "", finish_reason="content_filter")],
    )


def _responses_end(sample: Any, refusal: str | None) -> list[Any]:
    from litellm.types.llms.openai import ResponseIncompleteEvent, ResponsesAPIResponse

    base = _field(sample, "response")
    plain = _plain(base) if base is not None else {}
    body = dict(plain) if isinstance(plain, Mapping) else {}
    body.update(
        {
            "id": body.get("id") or "resp_nemoguard",
            "created_at": body.get("created_at") or 0,
            "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
            "output": [],
        }
    )
    if refusal is not None:
        body["output"] = [
            {
                "type": "message",
                "id": "msg_nemoguard_refusal",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": refusal, "annotations": []}],
            }
        ]
    return [
        ResponseIncompleteEvent(
            type="response.incomplete", response=ResponsesAPIResponse(**body), sequence_number=10**9
        )
    ]


def _anthropic_end(refusal: str | None) -> list[bytes]:
    def sse(kind: str, payload: dict[str, Any]) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()

    out = []
    if refusal is not None:
        index = 10_000  # a block of its own, after any the stream opened
        out.append(sse("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
        out.append(sse("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": refusal}}))
        out.append(sse("content_block_stop", {"index": index}))
    out.append(
        sse("message_delta", {"delta": {"stop_reason": "refusal", "stop_sequence": None}, "usage": {"output_tokens": 0}})
    )
    out.append(sse("message_stop", {}))
    return out


# --- verdicts back as LiteLLM's -----------------------------------------------------------------------------------


class GuardrailBlocked(HTTPException):
    """A policy block (HTTP 400); its class name is LiteLLM's metric ``error_type`` label for a block."""


class GuardrailUnavailable(HTTPException):
    """No verdict under fail-closed (HTTP 503); its class name labels an outage in LiteLLM's metrics."""


class GuardrailInvalidRequest(HTTPException):
    """The request holds content the guard cannot read, or names a policy it may not use (HTTP 400)."""


def blocked_error(verdict: Verdict, stage: Stage, guardrail: str | None) -> HTTPException:
    """400 ``content_blocked`` for a policy block; 503 ``guard_unavailable`` for an outage (fail closed).

    An outage's body names the error code only: the guard's address and its error text stay in the log.
    """
    error = ContentBlockedError(verdict, stage)
    body = {**error.to_dict(), "guardrail": guardrail, "policy": verdict.policy}
    if error.unavailable:
        body["reason"] = verdict.error.value if verdict.error else "unknown"
        return GuardrailUnavailable(status_code=503, detail={"error": body})
    return GuardrailBlocked(status_code=400, detail={"error": body})


def invalid_input_error(exc: InvalidInputError, guardrail: str | None) -> HTTPException:
    """400 ``invalid_input``: the request holds something the guard cannot read (refused, never skipped)."""
    return GuardrailInvalidRequest(
        status_code=400,
        detail={
            "error": {
                "type": "invalid_input",
                "message": f"content-safety check could not read the request: {exc}",
                "guardrail": guardrail,
            }
        },
    )


def policy_not_available_error(name: str, guardrail: str | None) -> HTTPException:
    """400 ``policy_not_available``: the same answer for an unknown policy and one this request may not use."""
    return GuardrailInvalidRequest(
        status_code=400,
        detail={
            "error": {
                "type": "policy_not_available",
                "message": f"policy {name[:80]!r} is not available to this request",
                "guardrail": guardrail,
            }
        },
    )


def status(verdict: Verdict) -> GuardrailStatus:
    if verdict.error is not None:
        return "guardrail_failed_to_respond"
    if verdict.safe:
        return "success"
    return "guardrail_flagged" if verdict.allowed else "guardrail_intervened"


def metadata_buckets(request_data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        b
        for b in (request_data.get("metadata"), request_data.get("litellm_metadata"))
        if isinstance(b, Mapping)
    ]


# --- helpers ----------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A pydantic / OpenAI object as plain data (dicts and lists pass through)."""
    if isinstance(value, (Mapping, list, str, int, float, bool)) or value is None:
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump()
        except Exception:  # some LiteLLM objects dump lazily; fall back to their dict
            pass
    as_dict = getattr(value, "__dict__", None)
    return dict(as_dict) if isinstance(as_dict, dict) else value


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    getter = getattr(obj, "get", None)
    if callable(getter):
        try:
            return getter(name)
        except (KeyError, TypeError):
            pass
    return getattr(obj, name, None)


__all__ = [
    "GuardrailBlocked",
    "GuardrailInvalidRequest",
    "GuardrailUnavailable",
    "StreamEnd",
    "anthropic_messages",
    "blocked_error",
    "chat_messages",
    "final_chunk",
    "invalid_input_error",
    "metadata_buckets",
    "policy_not_available_error",
    "request_checks",
    "request_messages",
    "request_prompt",
    "response_checks",
    "response_output",
    "responses_messages",
    "rewrite_response",
    "status",
    "stream_text",
]

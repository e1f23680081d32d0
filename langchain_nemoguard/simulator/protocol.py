"""The HTTP contract of the simulated endpoint: what a request must look like, and what comes back.

The simulator is deliberately *stricter* than the real server wherever the real one fails silently, so that
client bugs surface in tests instead of in production:

* a ``system`` message is rejected with 400 (the real chat template silently drops it);
* roles must alternate starting with ``user`` (the real template raises "Conversation roles must alternate");
* more than one image is a 400 (vLLM's ``--limit-mm-per-prompt image=1``); an image with no text is a 500,
  which is what the NIM answers;
* ``chat_template_kwargs`` values are type-checked: a string ``"false"`` for ``enable_thinking`` would be
  truthy inside the real Jinja template, so it is a 400 here;
* ``custom_policy`` together with ``custom_taxonomy`` is a 400 (the model's Mode A and B are exclusive).

Token accounting is a convention, not a tokenizer: one output token per four characters, rounded up. An output
longer than ``max_tokens * 4`` characters is cut there and finishes with ``"length"``, which reproduces the
real failure mode of a THINK trace that never closes.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .config import SYSTEM_FINGERPRINT, SimulatorConfig

CHARS_PER_TOKEN: Final = 4
TEMPLATE_PROMPT_TOKENS: Final = 420
"""Rough size of the server-side classifier prompt (intro + 24-line taxonomy + format), added to usage."""
IMAGE_PROMPT_TOKENS: Final = 256
"""Gemma 3's SigLIP encoder turns one 896x896 image into 256 soft tokens."""

FinishReason = Literal["stop", "length"]


class ContractError(Exception):
    """A request the documented interface does not accept; becomes an OpenAI-style error response."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    @property
    def error_type(self) -> str:
        return error_type_for(self.status)


def error_type_for(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status == 404:
        return "not_found_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def error_body(status: int, message: str, code: str) -> dict[str, Any]:
    """The OpenAI error envelope; ``code`` is a stable slug tests and clients can match on."""
    return {"error": {"message": message, "type": error_type_for(status), "code": code, "param": None}}


def tokens_of(text: str) -> int:
    """The simulator's token count: one token per four characters, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat-completion request, reduced to what the simulated model reads."""

    model: str
    user_text: str
    response_text: str | None
    image: bytes | None
    image_remote: bool
    enable_thinking: bool
    request_categories: bool
    custom_policy: str | None
    custom_taxonomy: str | None
    max_tokens: int | None
    stream: bool
    include_usage: bool
    prompt_tokens: int
    logprobs: bool = False
    top_logprobs: int = 0


def _content_parts(message: Mapping[str, Any], index: int) -> tuple[list[str], list[str]]:
    """(texts, image urls) of one message, whichever content shape it uses."""
    content = message.get("content")
    if isinstance(content, str):
        return [content], []
    if content is None:
        raise ContractError(400, f"messages[{index}] has no content", "missing_content")
    if not isinstance(content, list):
        raise ContractError(
            400, f"messages[{index}].content must be a string or a list of parts", "bad_content"
        )
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        where = f"messages[{index}].content[{j}]"
        if not isinstance(part, Mapping):
            raise ContractError(400, f"{where} must be an object", "bad_content")
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise ContractError(400, f"{where}.text must be a string", "bad_content")
            texts.append(text)
        elif kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
            if not isinstance(url, str) or not url:
                raise ContractError(400, f"{where}.image_url.url must be a non-empty string", "bad_image")
            images.append(url)
        else:
            raise ContractError(400, f"{where}: unsupported content part type {kind!r}", "unsupported_part")
    return texts, images


def _decode_image_url(url: str) -> tuple[bytes | None, bool]:
    """(bytes, remote): data URLs are decoded; http(s) URLs are accepted but never fetched."""
    if url.startswith(("http://", "https://")):
        return None, True
    if not url.startswith("data:"):
        raise ContractError(400, "image_url must be a data: URL or an http(s) URL", "bad_image")
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header or not header[5:].startswith("image/"):
        raise ContractError(400, "image data URL must look like data:image/<type>;base64,<data>", "bad_image")
    try:
        return base64.b64decode(payload, validate=True), False
    except (binascii.Error, ValueError):
        raise ContractError(400, "image data URL is not valid base64", "bad_image") from None


def _kwargs(body: Mapping[str, Any]) -> tuple[bool, bool, str | None, str | None]:
    raw = body.get("chat_template_kwargs")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ContractError(400, "chat_template_kwargs must be an object", "bad_kwargs")
    thinking = raw.get("enable_thinking", False)
    if not isinstance(thinking, bool):
        raise ContractError(
            400,
            f"chat_template_kwargs.enable_thinking must be a JSON boolean, got {thinking!r} "
            "(a string would be truthy in the model's template)",
            "bad_kwargs",
        )
    categories = raw.get("request_categories", "/no_categories")
    if categories not in ("/categories", "/no_categories"):
        raise ContractError(
            400,
            f'chat_template_kwargs.request_categories must be "/categories" or "/no_categories", got {categories!r}',
            "bad_kwargs",
        )
    policy, taxonomy = raw.get("custom_policy"), raw.get("custom_taxonomy")
    for key, value in (("custom_policy", policy), ("custom_taxonomy", taxonomy)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ContractError(400, f"chat_template_kwargs.{key} must be a non-empty string", "bad_kwargs")
    if policy is not None and taxonomy is not None:
        raise ContractError(
            400,
            "custom_policy and custom_taxonomy are mutually exclusive (Mode A and Mode B); send two requests",
            "exclusive_kwargs",
        )
    return thinking, categories == "/categories", policy, taxonomy


def _logprobs(body: Mapping[str, Any]) -> tuple[bool, int]:
    """``logprobs`` (a boolean) and ``top_logprobs`` (0-20, only with ``logprobs``), as OpenAI checks them."""
    wanted = body.get("logprobs", False)
    if wanted is None:
        wanted = False
    if not isinstance(wanted, bool):
        raise ContractError(400, "logprobs must be a boolean", "bad_logprobs")
    top = body.get("top_logprobs")
    if top is None:
        return wanted, 0
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= 20:
        raise ContractError(400, "top_logprobs must be an integer between 0 and 20", "bad_logprobs")
    if not wanted:
        raise ContractError(400, "top_logprobs needs logprobs to be true", "bad_logprobs")
    return wanted, top


def parse_chat_request(body: Any, config: SimulatorConfig) -> ChatRequest:
    """Validate ``body`` against the documented Nemotron 3.5 interface; raise ``ContractError`` otherwise.

    The judged user text is every user turn joined by a blank line; the judged response is the final message
    when it is an assistant turn (so ``[user, assistant, user]`` asks only for ``User Safety``). The template's
    real multi-turn behaviour is undocumented (nemotron-formats section 7), so clients should not rely on it.
    """
    if not isinstance(body, Mapping):
        raise ContractError(400, "request body must be a JSON object", "invalid_body")
    model = body.get("model", config.model)
    if not isinstance(model, str) or not model:
        raise ContractError(400, "model must be a non-empty string", "invalid_model")
    if config.strict_model and model not in (config.model, *config.extra_models):
        raise ContractError(400, f"The model `{model}` does not exist on this server.", "model_not_found")

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ContractError(400, "messages must be a non-empty list", "missing_messages")
    user_texts: list[str] = []
    images: list[str] = []
    last_assistant: str | None = None
    prompt_chars = 0
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ContractError(400, f"messages[{i}] must be an object", "invalid_message")
        role = message.get("role")
        if role == "system":
            raise ContractError(
                400,
                "system messages are not part of the Nemotron 3.5 interface: the model's chat template would "
                "silently drop it; send only the user turn and an optional assistant turn",
                "system_message",
            )
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ContractError(
                400,
                f"Conversation roles must alternate user/assistant/user/assistant/... starting with user; "
                f"messages[{i}] has role {role!r}",
                "roles_not_alternating",
            )
        texts, urls = _content_parts(message, i)
        text = "\n".join(texts)
        prompt_chars += len(text)
        if role == "user":
            if urls and not text.strip():
                raise ContractError(500, "image input without text is not supported", "image_without_text")
            user_texts.append(text)
            images.extend(urls)
            last_assistant = None
        else:
            if urls:
                raise ContractError(400, "images are accepted only in user turns", "image_in_assistant_turn")
            last_assistant = text
    if len(images) > 1:
        raise ContractError(
            400,
            f"At most 1 image(s) may be provided in one request; got {len(images)} "
            "(the server runs with --limit-mm-per-prompt image=1)",
            "too_many_images",
        )
    image, remote = _decode_image_url(images[0]) if images else (None, False)

    thinking, categories, policy, taxonomy = _kwargs(body)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise ContractError(400, "max_tokens must be a positive integer", "bad_max_tokens")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ContractError(400, "stream must be a boolean", "bad_stream")
    options = body.get("stream_options")
    include_usage = bool(isinstance(options, Mapping) and options.get("include_usage"))
    logprobs, top_logprobs = _logprobs(body)
    for kwarg in (policy, taxonomy):
        prompt_chars += len(kwarg or "")
    return ChatRequest(
        model=model,
        user_text="\n\n".join(user_texts),
        response_text=last_assistant,
        image=image,
        image_remote=remote,
        enable_thinking=thinking,
        request_categories=categories,
        custom_policy=policy,
        custom_taxonomy=taxonomy,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=include_usage,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        prompt_tokens=TEMPLATE_PROMPT_TOKENS
        + -(-prompt_chars // CHARS_PER_TOKEN)
        + IMAGE_PROMPT_TOKENS * len(images),
    )


# --- output ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """The generated text (or, with the reasoning field on, its two halves) and why generation stopped."""

    content: str | None
    reasoning: str | None
    finish_reason: FinishReason
    completion_tokens: int
    logprobs: list[dict[str, Any]] | None = None  # choices[0].logprobs.content, when asked for


def limit_tokens(text: str, max_tokens: int | None) -> tuple[str, FinishReason]:
    """Cut ``text`` at ``max_tokens`` simulated tokens, as a length-limited generation would."""
    if max_tokens is not None and tokens_of(text) > max_tokens:
        return text[: max_tokens * CHARS_PER_TOKEN], "length"
    return text, "stop"


def shape_output(
    text: str, finish_reason: FinishReason, *, reasoning_field: bool, tokens: int | None = None
) -> ModelOutput:
    """Place a THINK trace inline (raw vLLM, self-hosted NIM) or in ``reasoning_content`` (hosted endpoints).

    In the reasoning-field shape an unclosed trace leaves ``content`` null, as vLLM's reasoning parser does.
    """
    completion_tokens = tokens_of(text) if tokens is None else tokens
    if not reasoning_field or not text.startswith("<think>"):
        return ModelOutput(text, None, finish_reason, completion_tokens)
    inner = text[len("<think>") :]
    trace, closed, rest = inner.partition("</think>")
    return ModelOutput(rest if closed else None, trace.strip("\n"), finish_reason, completion_tokens)


def completion_id() -> str:
    return f"chatcmpl-sim-{uuid.uuid4().hex}"


def completion_body(
    request_model: str, output: ModelOutput, prompt_tokens: int, *, reasoning_field: bool
) -> bytes:
    """A complete ``chat.completion`` object, serialised."""
    message: dict[str, Any] = {"role": "assistant", "content": output.content}
    if reasoning_field:
        message["reasoning_content"] = output.reasoning
    body = {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request_model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None if output.logprobs is None else {"content": output.logprobs},
                "finish_reason": output.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": output.completion_tokens,
            "total_tokens": prompt_tokens + output.completion_tokens,
        },
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _pieces(text: str | None) -> Sequence[str]:
    if not text:
        return ()
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]


def stream_frames(
    request_model: str,
    output: ModelOutput,
    prompt_tokens: int,
    *,
    reasoning_field: bool,
    include_usage: bool,
) -> Iterator[bytes]:
    """Server-sent ``chat.completion.chunk`` frames, one simulated token per frame, then ``[DONE]``."""
    cid, created = completion_id(), int(time.time())

    def frame(
        delta: Mapping[str, Any], finish: str | None = None, *, usage: Any = None, empty: bool = False
    ) -> bytes:
        chunk: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request_model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": []
            if empty
            else [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish}],
        }
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

    yield frame({"role": "assistant", "content": ""})
    if reasoning_field:
        for piece in _pieces(output.reasoning):
            yield frame({"reasoning_content": piece})
    for piece in _pieces(output.content):
        yield frame({"content": piece})
    yield frame({}, output.finish_reason)
    if include_usage:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": output.completion_tokens,
            "total_tokens": prompt_tokens + output.completion_tokens,
        }
        yield frame({}, usage=usage, empty=True)
    yield b"data: [DONE]\n\n"

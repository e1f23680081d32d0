"""LiteLLM's shapes <-> the core's: requests and responses in, conversations out; verdicts back as LiteLLM's.

Pure translation, no decisions: what is judged is the core's conversation model (``Conversation.from_messages``,
``split_content``) and every image a request names goes through the core's rule for image references
(``image_reference``: a ``data:`` or ``http(s)`` URL, never a local file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import HTTPException
from litellm.types.utils import (
    GenericGuardrailAPIInputs,
    GuardrailStatus,
    ModelResponseStream,
    StreamingChoices,
)

from langchain_nemoguard.core.conversation import Conversation, image_reference, split_content
from langchain_nemoguard.core.errors import ContentBlockedError, InvalidInputError, Stage
from langchain_nemoguard.core.verdict import Verdict


def metadata_buckets(request_data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        b
        for b in (request_data.get("metadata"), request_data.get("litellm_metadata"))
        if isinstance(b, Mapping)
    ]


def conversation_from_messages(messages: Sequence[Any]) -> Conversation | None:
    """The last user turn of chat messages as the input to judge (a trailing assistant prefill is not judged).

    None when no user wrote anything this model judges (no user turn, or one with no text and no image).
    Content that cannot be read - an image reference that is not a ``data:`` or ``http(s)`` URL, a malformed
    part - raises :class:`InvalidInputError`: it is refused, never skipped.
    """
    last = next((m for m in reversed(messages) if isinstance(m, Mapping) and m.get("role") == "user"), None)
    if last is None:
        return None
    try:
        return Conversation.from_messages(messages, check_response=False)
    except InvalidInputError:
        text, images = split_content(last.get("content"), where="the last user message")
        if not text.strip() and not images:
            return None  # e.g. audio only: nothing this model judges
        raise


def request_conversation(
    inputs: GenericGuardrailAPIInputs, request_data: Mapping[str, Any]
) -> Conversation | None:
    messages = inputs.get("structured_messages") or request_data.get("messages")
    if isinstance(messages, list) and messages:
        return conversation_from_messages(messages)
    text = "\n".join(t for t in inputs.get("texts") or [] if t)
    images = tuple(
        image_reference(ref, where=f"images[{i}]") for i, ref in enumerate(inputs.get("images") or ())
    )
    if not text.strip() and not images:
        return None
    return Conversation(prompt=text, images=images)


def image_only_turn(messages: Sequence[Any]) -> Conversation | None:
    """The last user turn if it holds images and no text, else None."""
    for msg in reversed(messages):
        if isinstance(msg, Mapping) and msg.get("role") == "user":
            text, images = split_content(msg.get("content"), where="the last user message")
            return Conversation(images=images) if images and not text.strip() else None
    return None


def last_user_prompt(request_data: Mapping[str, Any]) -> str:
    messages = request_data.get("messages")
    if not isinstance(messages, list):
        return ""
    try:
        conversation = conversation_from_messages(messages)
    except InvalidInputError:
        return ""  # context for an output check only; the input check refuses such a request
    return conversation.prompt if conversation is not None else ""


def chunk_text(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None) or []
    parts = []
    for choice in choices:
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None)
        if isinstance(content, str):
            parts.append(content)
    return "".join(parts)


def final_chunk(last: ModelResponseStream | None, content: str | None) -> ModelResponseStream:
    """The chunk that ends a stream the guard stopped: the refusal (rewrite) or nothing (block)."""
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


def blocked_error(verdict: Verdict, stage: Stage, guardrail: str | None) -> HTTPException:
    """400 ``content_blocked`` for a policy block; 503 ``guard_unavailable`` for an outage (fail closed)."""
    error = ContentBlockedError(verdict, stage)
    body = {**error.to_dict(), "guardrail": guardrail, "policy": verdict.policy}
    if error.unavailable:
        body["reason"] = verdict.error_message
        return HTTPException(status_code=503, detail={"error": body})
    return HTTPException(status_code=400, detail={"error": body})


def invalid_input_error(exc: InvalidInputError, guardrail: str | None) -> HTTPException:
    """400 ``invalid_input``: the request holds something the guard cannot read (refused, never skipped)."""
    return HTTPException(
        status_code=400,
        detail={
            "error": {
                "type": "invalid_input",
                "message": f"content-safety check could not read the request: {exc}",
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


__all__ = [
    "blocked_error",
    "chunk_text",
    "conversation_from_messages",
    "final_chunk",
    "image_only_turn",
    "invalid_input_error",
    "last_user_prompt",
    "metadata_buckets",
    "request_conversation",
    "status",
]

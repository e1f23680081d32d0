"""Translate LangChain inputs and outputs into the core's :class:`Conversation` and plain text.

Everything the LangChain adapters judge goes through here, so that a chain and an agent read a message the
same way:

* user text comes from ``content_blocks`` text blocks (list content and plain strings alike);
* images come from ``content_blocks`` image blocks - ``url`` or ``base64`` + ``mime_type`` - which also cover
  the OpenAI ``image_url`` dict form and data URIs, and from the ``image_url`` *string* form that
  ``content_blocks`` leaves as ``non_standard``; every reference goes through the core's rule for image
  references (``core.conversation.image_part``): a ``data:`` or ``http(s)`` URL, never a local file;
* an assistant message is judged by its text plus its tool-call arguments (a tool-calling turn's text is
  often empty; the arguments are where the content is);
* which messages of a conversation are judged is the core's coverage rule (:func:`core_messages` feeds
  ``core.coverage.input_checks``): every unanswered user turn, system messages, tool results, a prefill;
  ``ChatMessage`` roles are matched case-insensitively and an unknown role is user text;
* a content block the reader does not know (audio, a non-text file, an unknown ``non_standard`` value) is
  refused with :class:`InvalidInputError`, never skipped.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue

from ..core.conversation import Conversation, image_part
from ..core.coverage import Channel, CoverageOptions, Message, ToolCall, input_checks, read_parts
from ..core.errors import InvalidInputError

# Keys tried, in order, when a chain's input is a dict without ``messages``.
INPUT_KEYS: tuple[str, ...] = ("input", "question", "query", "prompt", "text", "content")
OUTPUT_KEYS: tuple[str, ...] = ("output", "answer", "text", "content", "result")


# --- messages ------------------------------------------------------------------------------------------------


def message_images(message: BaseMessage) -> tuple[str, ...]:
    """Image references (http(s) or data URLs) in a message, in order; anything else is refused."""
    images: list[str] = []
    for block in _blocks(message):
        part = block.get("value") if block.get("type") == "non_standard" else block
        if isinstance(part, Mapping) and part.get("type") in ("image", "image_url", "input_image"):
            image = image_part(part, where="message content")
            if image is not None:
                images.append(image)
    return tuple(images)


def message_text(message: BaseMessage) -> str:
    """The text a reader sees: ``text`` blocks and plain strings (not reasoning, images or tool calls)."""
    if isinstance(message.content, str):
        return message.content
    parts: list[str] = []
    for block in _blocks(message):
        kind = block.get("type")
        if kind in ("text", "text-plain") and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "\n".join(p for p in parts if p)


def tool_calls_text(message: BaseMessage) -> str:
    """Tool calls as ``name(args-json)`` lines; streamed chunks use their partial argument strings."""
    lines: list[str] = []
    if isinstance(message, AIMessageChunk) and message.tool_call_chunks:
        # partial pieces, concatenated as they come, so a window reads ``name: {"arg": ...}`` whole
        return "".join(
            (f"{c.get('name')}: " if c.get("name") else "") + (c.get("args") or "")
            for c in message.tool_call_chunks
        )
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            args = json.dumps(call.get("args") or {}, ensure_ascii=False, sort_keys=True)
            lines.append(f"{call.get('name', '')}({args})")
        for bad in message.invalid_tool_calls:
            lines.append(f"{bad.get('name') or ''}({bad.get('args') or ''})")
    return "\n".join(lines)


def assistant_text(message: BaseMessage, *, reasoning: bool = False) -> str:
    """What an output check judges for one assistant message: its text, then its tool-call arguments, then (with
    ``reasoning``, the coverage rule's ``check_reasoning``) its reasoning."""
    parts = [message_text(message), tool_calls_text(message)]
    if reasoning:
        parts.append(core_message(message).reasoning)
    return "\n".join(t for t in parts if t)


def chunk_text(chunk: Any, *, reasoning: bool = False) -> str:
    """The judged text of one streamed output chunk (a message chunk, a string, or a dict chunk)."""
    if isinstance(chunk, BaseMessage):
        return assistant_text(chunk, reasoning=reasoning)
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, Mapping):
        return output_text(chunk, reasoning=reasoning)
    return ""


def latest_user_turn(messages: Sequence[BaseMessage]) -> int | None:
    """Index of the last user-authored message that no assistant message has answered yet, or None."""
    for i in range(len(messages) - 1, -1, -1):
        role = message_role(messages[i])
        if role == "assistant":
            return None
        if role == "user":
            return i
    return None


def last_user_text(messages: Sequence[BaseMessage]) -> str:
    """The text of the last user-authored message anywhere in the list (context for output checks)."""
    for msg in reversed(messages):
        if message_role(msg) == "user":
            return message_text(msg)
    return ""


def message_role(message: BaseMessage) -> str:
    """The core's role for a LangChain message: by its class, or a ``ChatMessage``'s own role (any spelling)."""
    from ..core.coverage import canonical_role

    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, (ToolMessage, FunctionMessage)):
        return "tool"
    if isinstance(message, ChatMessage):
        return canonical_role(message.role)
    return canonical_role(getattr(message, "type", None))


def core_message(message: BaseMessage) -> Message:
    """One LangChain message as the core's coverage rule reads it (text, images, tool calls, reasoning)."""
    role = message_role(message)
    texts: list[str] = []
    images: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(_blocks(message)):
        kind = block.get("type")
        where = f"message content[{j}]"
        if kind in ("text", "text-plain"):
            if isinstance(block.get("text"), str):
                texts.append(block["text"])
        elif kind in ("image", "image_url", "input_image"):
            image = image_part(block, where=where)
            if image is not None:
                images.append(image)
        elif kind == "reasoning":
            if isinstance(block.get("reasoning"), str):
                reasoning.append(block["reasoning"])
        elif kind in ("tool_call", "tool_call_chunk", "invalid_tool_call", "server_tool_call"):
            continue  # read from message.tool_calls below (blocks repeat them)
        elif kind in ("server_tool_result",):
            texts.append(json.dumps(block.get("output"), ensure_ascii=False, default=str))
        else:  # non_standard, file, audio, video...: the core's part reader judges or refuses them
            part = block.get("value") if kind == "non_standard" else block
            parts = read_parts([part], where=where)
            texts.extend(parts.texts)
            images.extend(parts.images)
            reasoning.extend(parts.reasoning)
            calls.extend(parts.tool_calls)
            texts.extend(parts.tool_results)
    if isinstance(message, AIMessage):
        calls.extend(ToolCall(str(c.get("name") or ""), c.get("args") or {}) for c in message.tool_calls)
        calls.extend(ToolCall(str(c.get("name") or ""), c.get("args") or "") for c in message.invalid_tool_calls)
    return Message(
        role=role,
        text="\n".join(t for t in texts if t),
        images=tuple(images),
        tool_calls=tuple(calls),
        reasoning="\n".join(r for r in reasoning if r),
    )


def core_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """Every message as the core reads it (see :func:`core_message`)."""
    return [core_message(m) for m in messages]


def input_conversations(
    messages: Sequence[BaseMessage], options: CoverageOptions | None = None
) -> tuple[Conversation, ...]:
    """The conversations the coverage rule judges before the model runs (user turns, system, tool results)."""
    return tuple(c.conversation for c in input_checks(core_messages(messages), options))


def conversation_from_messages(messages: Sequence[BaseMessage]) -> Conversation:
    """The unanswered user turns (text and images, plus a prefill) as the judged prompt; earlier turns become
    history. System messages and tool results are judged on their own (:func:`input_conversations`)."""
    checks = input_checks(
        core_messages(messages), CoverageOptions(check_system=False, check_tool_results=False)
    )
    for check in checks:
        if Channel.USER in check.channels:
            return check.conversation
    raise InvalidInputError("the messages hold no user message to check")


# --- chain inputs and outputs --------------------------------------------------------------------------------


def to_messages(value: Any) -> list[BaseMessage] | None:
    """Messages in a chain input, or None when the input is not message-shaped."""
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and value:
        try:
            return convert_to_messages(value)  # messages, (role, text) tuples, OpenAI dicts, strings
        except (ValueError, TypeError, NotImplementedError) as exc:  # convert_to_messages raises all three
            raise InvalidInputError(f"cannot read the input as messages: {exc}") from None
    return None


def conversation_from_input(value: Any, *, input_key: str | None = None) -> Conversation:
    """Read the judged user turn from whatever a runnable takes.

    A string; a ``PromptValue``; a message or a list of messages / tuples / OpenAI dicts; a dict with
    ``messages``, with ``input_key``, with one of :data:`INPUT_KEYS`, or else with string values (all of them
    are judged, joined, so that nothing a prompt template may render goes unchecked).
    """
    if isinstance(value, str):
        return Conversation(prompt=value)
    if isinstance(value, Mapping):
        if input_key is not None:
            if input_key not in value:
                raise InvalidInputError(f"the input has no key {input_key!r}")
            return conversation_from_input(value[input_key])
        if "messages" in value:
            return conversation_from_input(value["messages"])
        for key in INPUT_KEYS:
            if key in value and value[key] is not None:
                return conversation_from_input(value[key])
        texts = [v for v in value.values() if isinstance(v, str) and v.strip()]
        if not texts:
            raise InvalidInputError(
                f"cannot find the user input in a dict with keys {sorted(map(str, value))}; pass input_key="
            )
        return Conversation(prompt="\n".join(texts))
    messages = to_messages(value)
    if messages is None:
        raise InvalidInputError(f"cannot read a user turn from a {type(value).__name__}")
    return conversation_from_messages(messages)


def input_conversations_from(
    value: Any, *, input_key: str | None = None, options: CoverageOptions | None = None
) -> tuple[Conversation, ...]:
    """Every conversation the coverage rule judges in a runnable's input: for message inputs the user turns,
    system messages and tool results; for other inputs the one conversation :func:`conversation_from_input`
    reads."""
    messages = _input_messages(value, input_key)
    if messages is not None:
        convs = input_conversations(messages, options)
        if convs:
            return convs
    return (conversation_from_input(value, input_key=input_key),)


def _input_messages(value: Any, input_key: str | None) -> list[BaseMessage] | None:
    if isinstance(value, Mapping):
        if input_key is not None:
            return _input_messages(value[input_key], None) if input_key in value else None
        if "messages" in value:
            return _input_messages(value["messages"], None)
        return None
    if isinstance(value, str):
        return None
    return to_messages(value)


def output_text(value: Any, *, reasoning: bool = False) -> str:
    """The judged text of a runnable's output (the last assistant message for message lists); ``reasoning``
    adds the messages' reasoning (the coverage rule's ``check_reasoning``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return assistant_text(value, reasoning=reasoning)
    if isinstance(value, Mapping):
        if "messages" in value:
            return output_text(value["messages"], reasoning=reasoning)
        for key in OUTPUT_KEYS:
            if key in value:
                return output_text(value[key], reasoning=reasoning)
        return "\n".join(t for v in value.values() if (t := output_text(v, reasoning=reasoning)))
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        for item in reversed(value):
            if isinstance(item, AIMessage):
                return assistant_text(item, reasoning=reasoning)
        return ""
    return ""


def plain_value(value: Any) -> Any:
    """A structured output as plain data for serialising: pydantic models dumped, dataclasses as dicts."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def tool_result_text(message: ToolMessage) -> str:
    """A tool result's text (string content or text blocks)."""
    if isinstance(message.content, str):
        return message.content
    return message_text(message)


# --- helpers -------------------------------------------------------------------------------------------------


def _blocks(message: BaseMessage) -> list[Mapping[str, Any]]:
    if isinstance(message.content, str):
        return [{"type": "text", "text": message.content}] if message.content else []
    try:
        blocks = message.content_blocks
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInputError(f"cannot read the message content: {exc}") from None
    return [b for b in blocks if isinstance(b, Mapping)]


__all__ = [
    "INPUT_KEYS",
    "OUTPUT_KEYS",
    "assistant_text",
    "chunk_text",
    "conversation_from_input",
    "conversation_from_messages",
    "core_message",
    "core_messages",
    "input_conversations",
    "input_conversations_from",
    "last_user_text",
    "latest_user_turn",
    "message_images",
    "message_role",
    "message_text",
    "output_text",
    "plain_value",
    "to_messages",
    "tool_calls_text",
    "tool_result_text",
]

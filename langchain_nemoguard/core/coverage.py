"""The coverage rule: what in a request, and in a model's answer, is judged - one rule, fed by every adapter.

Adapters read their framework's objects (LangChain messages, a LiteLLM request on any route) into
:class:`Message` and :class:`Output` values and hand them to :func:`input_checks` / :func:`output_check`; what
comes back is the list of :class:`Check` values to judge. No adapter decides what is judged on its own, so a
chain, an agent and a gateway read the same conversation the same way. The rule, as a table, is in
``docs/coverage.md``.

Inputs (what reaches the model):

* every user-authored message since the last assistant answer - several unanswered user turns are judged
  together, so a phrase split across them is seen whole; a message with an unknown role is user text;
* system and developer messages (``check_system``), on their own, so that a repeated system prompt is a cache
  hit after its first check;
* tool results entering the model (``check_tool_results``);
* an assistant prefill (an assistant message at the end of the request), judged as a response to the user turn.

Outputs (what reaches the caller): assistant text, tool-call names and arguments, reasoning
(``check_reasoning``) and structured output (serialised), as one response judged after the user's turn.

A shape the readers cannot read raises :class:`InvalidInputError` (refused, never skipped): content that is
neither a string nor a list of parts, a part of a kind that cannot be judged (audio, a file that is not text,
an image given by provider file id), an image reference that is not a ``data:`` or ``http(s)`` URL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from .conversation import Conversation, Turn, image_part
from .errors import InvalidInputError, Stage
from .verdict import Outcome, Verdict

if TYPE_CHECKING:
    from .guard import NemoGuard
    from .policy import Policy

CanonicalRole = Literal["user", "system", "assistant", "tool"]

# Roles as frameworks and providers spell them; matched case-insensitively. Any other role is user text.
ROLE_ALIASES: Mapping[str, CanonicalRole] = {
    "user": "user",
    "human": "user",
    "system": "system",
    "developer": "system",
    "assistant": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}


def canonical_role(role: object) -> CanonicalRole:
    """``role`` as one of user / system / assistant / tool: case-insensitive, aliases known, anything else user.

    An unknown role is judged as user text rather than refused or skipped: whatever its name, the model reads it.
    """
    if isinstance(role, str):
        known = ROLE_ALIASES.get(role.strip().lower())
        if known is not None:
            return known
    return "user"


class Channel(StrEnum):
    """Where a judged text came from (the rows of ``docs/coverage.md``)."""

    USER = "user"
    SYSTEM = "system"
    TOOL_RESULT = "tool_result"
    PREFILL = "prefill"
    ASSISTANT = "assistant"
    TOOL_CALL = "tool_call"
    REASONING = "reasoning"
    STRUCTURED = "structured_output"
    EMBEDDING = "embedding_input"


@dataclass(frozen=True, slots=True)
class CoverageOptions:
    """Which optional channels are judged (everything else always is).

    Args:
        check_system: Judge system and developer messages (on by default: in a gateway callers write them, in
            multi-tenant apps users do; an application whose system prompt is its own may turn it off). Each
            distinct system prompt costs one check; repeats are cache hits.
        check_tool_results: Judge tool results before they enter the model.
        check_reasoning: Judge the model's reasoning content as part of its answer.
        check_embeddings: Judge the inputs of embedding requests (off, as LiteLLM's own guardrails behave).
    """

    check_system: bool = True
    check_tool_results: bool = True
    check_reasoning: bool = True
    check_embeddings: bool = False


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call: its name and its arguments as the model wrote them (a JSON string, or any value)."""

    name: str
    arguments: Any = ""

    def text(self) -> str:
        """``name(arguments)``; arguments that are not a string are serialised as sorted JSON."""
        args = self.arguments
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False, sort_keys=True, default=str)
        return f"{self.name}({args})"


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a request, read by an adapter: its role, text, images, and the assistant's extras.

    Args:
        role: Any spelling; normalised with :func:`canonical_role`.
        text: The message's text (text parts joined).
        images: Image references (``data:`` / ``http(s)`` URLs) or sources an application passed itself.
        tool_calls: An assistant message's tool calls.
        reasoning: An assistant message's reasoning content.
        tool_results: Tool results carried inside this message (Anthropic's ``tool_result`` blocks sit in
            user messages); judged as tool results.
    """

    role: str
    text: str = ""
    images: tuple[Any, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""
    tool_results: tuple[str, ...] = ()

    @property
    def kind(self) -> CanonicalRole:
        return canonical_role(self.role)

    def assistant_text(self) -> str:
        """Text, tool calls and reasoning, as an answer is judged."""
        parts = [self.text, *(c.text() for c in self.tool_calls), self.reasoning]
        return "\n".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class Output:
    """A model's answer, read by an adapter: every channel that reaches the caller.

    Args:
        text: The assistant's text (all choices joined).
        tool_calls: Tool calls, names and arguments.
        reasoning: Reasoning content (judged unless ``check_reasoning`` is off).
        structured: A structured output (any JSON-ready value), serialised and judged.
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""
    structured: Any = None

    def judged_text(self, options: CoverageOptions | None = None) -> str:
        opts = options or CoverageOptions()
        parts = [self.text, *(c.text() for c in self.tool_calls)]
        if opts.check_reasoning:
            parts.append(self.reasoning)
        if self.structured is not None:
            parts.append(serialise(self.structured))
        return "\n".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class Check:
    """One conversation to judge, the stage it is judged at, and the channels it covers."""

    conversation: Conversation
    stage: Stage
    channels: tuple[Channel, ...] = field(default=())


def serialise(value: Any) -> str:
    """A structured value as the text judged for it (strings stay as they are)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


# --- the rule ----------------------------------------------------------------------------------------------------


def input_checks(messages: Sequence[Message], options: CoverageOptions | None = None) -> tuple[Check, ...]:
    """What of ``messages`` is judged before the model runs (see the module docstring).

    Returns no check only when nothing in the messages carries text or an image.
    """
    opts = options or CoverageOptions()
    end = len(messages)
    while end > 0 and messages[end - 1].kind == "assistant":
        end -= 1
    prefill = [m for m in messages[end:] if m.assistant_text()]
    answered = max((i for i in range(end) if messages[i].kind == "assistant"), default=-1)
    new = messages[answered + 1 : end]

    user_texts: list[str] = []
    images: list[Any] = []
    tool_texts: list[str] = []
    tool_images: list[Any] = []
    for msg in new:
        if msg.kind == "tool":
            if msg.text:
                tool_texts.append(msg.text)
            tool_images.extend(msg.images)
        elif msg.kind == "user":
            if msg.text:
                user_texts.append(msg.text)
            images.extend(msg.images)
            tool_texts.extend(t for t in msg.tool_results if t)
    history = _history(messages[: answered + 1])
    prompt = "\n".join(user_texts)
    response = "\n".join(m.assistant_text() for m in prefill) or None

    checks: list[Check] = []
    if prompt.strip() or images or (response and response.strip()):
        channels = (Channel.USER,) + ((Channel.PREFILL,) if response else ())
        conv = Conversation(prompt=prompt, images=tuple(images), response=response, history=history)
        checks.append(Check(conv, Stage.INPUT, channels))
    if opts.check_tool_results and ("".join(tool_texts).strip() or tool_images):
        conv = Conversation(prompt="\n".join(tool_texts), images=tuple(tool_images))
        checks.append(Check(conv, Stage.TOOL_RESULT, (Channel.TOOL_RESULT,)))
    if opts.check_system:
        system = "\n".join(m.text for m in messages if m.kind == "system" and m.text)
        system_images = tuple(img for m in messages if m.kind == "system" for img in m.images)
        if system.strip() or system_images:
            checks.append(
                Check(Conversation(prompt=system, images=system_images), Stage.INPUT, (Channel.SYSTEM,))
            )
    return tuple(checks)


def output_check(
    output: Output, *, prompt: str = "", options: CoverageOptions | None = None
) -> Check | None:
    """The check of a model's answer (judged after ``prompt``, the user's turn), or None when it is empty."""
    opts = options or CoverageOptions()
    text = output.judged_text(opts)
    if not text.strip():
        return None
    channels = [Channel.ASSISTANT] if output.text else []
    channels += [Channel.TOOL_CALL] if output.tool_calls else []
    channels += [Channel.REASONING] if output.reasoning and opts.check_reasoning else []
    channels += [Channel.STRUCTURED] if output.structured is not None else []
    stage = Stage.TOOL_CALL if channels == [Channel.TOOL_CALL] else Stage.OUTPUT
    return Check(Conversation(prompt=prompt, response=text), stage, tuple(channels))


def embedding_check(inputs: Any, options: CoverageOptions | None = None) -> Check | None:
    """The check of an embedding request's input, when ``check_embeddings`` asks for one (else None).

    Token arrays cannot be read back into text and are refused.
    """
    opts = options or CoverageOptions()
    if not opts.check_embeddings:
        return None
    texts = prompt_texts(inputs, where="embedding input")
    text = "\n".join(t for t in texts if t)
    if not text.strip():
        return None
    return Check(Conversation(prompt=text), Stage.INPUT, (Channel.EMBEDDING,))


def prompt_texts(value: Any, *, where: str = "prompt") -> list[str]:
    """A legacy ``prompt`` / embeddings ``input``: a string or a list of strings (token arrays are refused)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        out: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                raise InvalidInputError(
                    f"{where}[{i}]: token arrays cannot be checked; send the text instead"
                )
        return out
    raise InvalidInputError(f"{where}: must be a string or a list of strings")


def last_user_text(messages: Sequence[Message]) -> str:
    """The user text an answer is judged after: the unanswered user turns, else the last user message."""
    for check in input_checks(messages, CoverageOptions(check_system=False, check_tool_results=False)):
        if Channel.USER in check.channels:
            return check.conversation.prompt
    for msg in reversed(messages):
        if msg.kind == "user" and msg.text:
            return msg.text
    return ""


def _history(messages: Sequence[Message]) -> tuple[Turn, ...]:
    turns: list[Turn] = []
    for msg in messages:
        if msg.kind == "user" and msg.text:
            turns.append(Turn("user", msg.text))
        elif msg.kind == "assistant" and msg.text:
            turns.append(Turn("assistant", msg.text))
    return tuple(turns)


# --- judging the checks -------------------------------------------------------------------------------------------

_SEVERITY = {Outcome.PASS: 0, Outcome.REFUSE: 1, Outcome.BLOCK: 2}


def judge(guard: NemoGuard, checks: Sequence[Check], policy: Policy | str | None = None) -> list[Verdict]:
    """Judge every check (sync); one verdict per check, in order."""
    return [guard.check(conversation=c.conversation, policy=policy, stage=c.stage) for c in checks]


async def ajudge(
    guard: NemoGuard, checks: Sequence[Check], policy: Policy | str | None = None
) -> list[Verdict]:
    """Judge every check concurrently; one verdict per check, in order."""
    import asyncio

    return list(
        await asyncio.gather(
            *(guard.acheck(conversation=c.conversation, policy=policy, stage=c.stage) for c in checks)
        )
    )


def decisive(checks: Sequence[Check], verdicts: Sequence[Verdict]) -> tuple[Check, Verdict] | None:
    """The check whose verdict decides (block over refuse over pass; the first of equals), or None if none."""
    best: tuple[Check, Verdict] | None = None
    for check, verdict in zip(checks, verdicts, strict=True):
        if best is None or _SEVERITY[verdict.outcome] > _SEVERITY[best[1].outcome]:
            best = (check, verdict)
    return best


# --- reading content parts (OpenAI chat, OpenAI Responses, Anthropic) ------------------------------------------

_TEXT_PARTS = frozenset({"text", "input_text", "output_text", "text-plain", "refusal", "summary_text"})
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_REASONING_PARTS = frozenset({"thinking", "reasoning", "reasoning_text", "redacted_thinking"})
_TOOL_CALL_PARTS = frozenset({"tool_use", "tool_call", "function_call", "server_tool_use", "mcp_tool_use"})
_TOOL_RESULT_PARTS = frozenset(
    {"tool_result", "function_call_output", "web_search_tool_result", "mcp_tool_result", "search_result"}
)
_FILE_PARTS = frozenset({"file", "input_file", "document"})
_UNJUDGEABLE = frozenset({"input_audio", "audio", "video"})


@dataclass(slots=True)
class _Parts:
    texts: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_results: list[str] = field(default_factory=list)


def read_message(
    role: object,
    content: Any,
    *,
    tool_calls: Iterable[ToolCall] = (),
    reasoning: str = "",
    where: str = "message",
) -> Message:
    """One message from its role and content (a string, or a list of OpenAI / Responses / Anthropic parts)."""
    parts = read_parts(content, where=where)
    return Message(
        role=role if isinstance(role, str) else "user",
        text="\n".join(t for t in parts.texts if t),
        images=tuple(parts.images),
        tool_calls=(*tool_calls, *parts.tool_calls),
        reasoning="\n".join(r for r in (reasoning, *parts.reasoning) if r),
        tool_results=tuple(parts.tool_results),
    )


def read_parts(content: Any, *, where: str = "content") -> _Parts:
    """Text, images, tool calls, reasoning and tool results of message content; unreadable parts are refused."""
    out = _Parts()
    if content is None:
        return out
    if isinstance(content, str):
        out.texts.append(content)
        return out
    if isinstance(content, Mapping):
        content = [content]  # one part given without its list
    if not isinstance(content, Sequence) or isinstance(content, (bytes, bytearray)):
        raise InvalidInputError(f"{where}: content must be a string or a list of parts")
    for j, part in enumerate(content):
        _read_part(part, f"{where}[{j}]", out)
    return out


def _read_part(part: Any, where: str, out: _Parts) -> None:
    if isinstance(part, str):
        out.texts.append(part)
        return
    if not isinstance(part, Mapping):
        raise InvalidInputError(f"{where}: a content part must be a string or a mapping")
    kind = part.get("type")
    if kind is None and "text" in part:
        kind = "text"
    if kind in _TEXT_PARTS:
        value = part.get("text", part.get("refusal", ""))
        if not isinstance(value, str):
            raise InvalidInputError(f"{where}: a {kind} part's text must be a string")
        out.texts.append(value)
    elif kind in _IMAGE_PARTS:
        out.images.append(_image(part, where))
    elif kind in _REASONING_PARTS:
        value = part.get("thinking", part.get("reasoning", part.get("text", "")))
        if kind == "reasoning" and isinstance(part.get("summary"), list):
            value = "\n".join(read_parts(part["summary"], where=f"{where}.summary").texts)
        if isinstance(value, str):
            out.reasoning.append(value)
    elif kind in _TOOL_CALL_PARTS:
        name = part.get("name") or ""
        args = part.get("input", part.get("args", part.get("arguments", "")))
        out.tool_calls.append(ToolCall(str(name), args))
    elif kind in _TOOL_RESULT_PARTS:
        inner = part.get("content", part.get("output"))
        sub = read_parts(inner, where=f"{where}.content")
        out.tool_results.extend([*sub.texts, *sub.tool_results])
        out.images.extend(sub.images)
    elif kind in _FILE_PARTS:
        out.texts.append(_file_text(part, where))
    elif kind == "non_standard" and isinstance(part.get("value"), Mapping):
        _read_part(part["value"], where, out)
    elif kind in _UNJUDGEABLE:
        raise InvalidInputError(f"{where}: {kind} content cannot be checked by this model")
    else:
        raise InvalidInputError(f"{where}: content part of unknown type {kind!r} cannot be checked")


def _image(part: Mapping[str, Any], where: str) -> str:
    source = part.get("source")
    if part.get("type") == "image" and isinstance(source, Mapping):  # Anthropic
        if source.get("type") == "base64" and isinstance(source.get("data"), str):
            mime = source.get("media_type") or "image/png"
            return f"data:{mime};base64,{source['data']}"
        if source.get("type") == "url":
            return image_part({"type": "image", "url": source.get("url")}, where=where) or ""
        raise InvalidInputError(f"{where}: an image source of type {source.get('type')!r} cannot be checked")
    image = image_part(part, where=where)
    if image is None:  # pragma: no cover - image_part reads every type in _IMAGE_PARTS
        raise InvalidInputError(f"{where}: unreadable image part")
    return image


def _file_text(part: Mapping[str, Any], where: str) -> str:
    """The text of a file part when it is text (``text/*`` data or an Anthropic text document); else refused."""
    source = part.get("source")
    if isinstance(source, Mapping):  # Anthropic document
        if source.get("type") == "text" and isinstance(source.get("data"), str):
            return str(source["data"])
        if source.get("type") == "content":
            return "\n".join(read_parts(source.get("content"), where=f"{where}.source").texts)
        data, mime = source.get("data"), source.get("media_type")
    else:
        nested = part.get("file")
        inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else part
        data = inner.get("file_data") or inner.get("base64") or inner.get("data")
        mime = inner.get("mime_type")
        if isinstance(data, str) and data.startswith("data:"):
            header, _, data = data.partition(",")
            mime = header[5:].split(";", 1)[0]
    if isinstance(data, str) and isinstance(mime, str) and mime.lower().startswith("text/"):
        try:
            return base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInputError(f"{where}: a text file part must hold base64 UTF-8 text") from None
    raise InvalidInputError(
        f"{where}: a file part cannot be checked unless it is text (send its text as a text part)"
    )


__all__ = [
    "ROLE_ALIASES",
    "CanonicalRole",
    "Channel",
    "Check",
    "CoverageOptions",
    "Message",
    "Output",
    "ToolCall",
    "ajudge",
    "canonical_role",
    "decisive",
    "embedding_check",
    "input_checks",
    "judge",
    "last_user_text",
    "output_check",
    "prompt_texts",
    "read_message",
    "read_parts",
    "serialise",
]

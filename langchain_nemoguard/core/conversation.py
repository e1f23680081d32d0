"""The conversation model: what is judged, independent of any framework, and the rule for image references.

A check judges one user turn (text plus zero or more images) and, optionally, the assistant's response to it.
Adapters translate LangChain messages, LiteLLM requests or OpenAI ``messages`` into this shape.

**Image references from untrusted content.** Message content is written by users (and by tools, models and
gateway clients), so an image it names is read through :func:`image_reference`, the one rule every adapter
applies: a ``data:`` URL or an ``http(s)`` URL, nothing else. A file path, ``file://`` or any other scheme is
refused by its shape, before anything is opened, with the same message whether such a file exists or not (so
the error is no oracle for the server's file system). Remote URLs then still follow the guard's
``ImageOptions`` (off unless passed or fetched, SSRF-checked). Only explicit API arguments -
``guard.check(images=[path])``, ``Conversation(images=...)`` built by the application - may name local files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidInputError

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Turn:
    """An earlier turn, kept for context (``NemoGuard(windows=WindowOptions(context_turns=N))`` sends the last N).

    Args:
        role: ``"user"`` or ``"assistant"``.
        text: The turn's text.
    """

    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """The user's turn, its images, and optionally the assistant's response.

    ``images`` holds unprepared sources (bytes, paths, data/http URLs, Pillow images); the guard prepares them
    (decode, orient, strip, scale, re-encode) right before the call. Code that fills ``images`` from message
    content must read each reference through :func:`image_reference` (the readers in this package do).

    Args:
        prompt: The user's text.
        images: Image sources of the user's turn.
        response: The assistant's response to judge with the prompt (None: a prompt-only check).
        history: Earlier turns, sent as context when the guard's ``windows.context_turns`` asks for them.
    """

    prompt: str = ""
    images: tuple[Any, ...] = ()
    response: str | None = None
    history: tuple[Turn, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise InvalidInputError(f"prompt must be a str, got {type(self.prompt).__name__}")
        if self.response is not None and not isinstance(self.response, str):
            raise InvalidInputError(f"response must be a str or None, got {type(self.response).__name__}")
        if not self.prompt.strip() and not self.images and not (self.response and self.response.strip()):
            raise InvalidInputError(
                "nothing to check: the conversation has no text, no image and no response"
            )

    @property
    def has_response(self) -> bool:
        """True when there is a non-blank response to judge."""
        return self.response is not None and bool(self.response.strip())

    @classmethod
    def of(
        cls,
        prompt: str | None = None,
        response: str | None = None,
        images: Iterable[Any] | Any | None = None,
        history: Iterable[Turn] = (),
    ) -> Conversation:
        """Build from plain values; a single image may be passed without a list."""
        if images is None:
            imgs: tuple[Any, ...] = ()
        elif isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)) or not isinstance(
            images, Iterable
        ):
            imgs = (images,)
        else:
            imgs = tuple(images)
        return cls(prompt=prompt or "", images=imgs, response=response, history=tuple(history))

    @classmethod
    def from_messages(
        cls, messages: Sequence[Mapping[str, Any]], *, check_response: bool | None = None
    ) -> Conversation:
        """Build from OpenAI chat ``messages``.

        The judged turn is the last user message; if an assistant message follows it, that is the response
        (``check_response=False`` ignores it, ``True`` requires it). Roles are read as the coverage rule reads
        them (case-insensitive, with aliases; an unknown role is user text). System and tool messages are not
        part of this one conversation (``core.coverage.input_checks`` judges them on their own); earlier
        user/assistant turns become ``history``. Content the reader cannot judge is refused.
        """
        from .coverage import canonical_role
        if not messages:
            raise InvalidInputError("messages is empty")
        turns: list[tuple[str, str, tuple[Any, ...]]] = []
        for i, msg in enumerate(messages):
            if not isinstance(msg, Mapping):
                raise InvalidInputError(f"messages[{i}] must be a mapping, got {type(msg).__name__}")
            role = canonical_role(msg.get("role"))
            if role in ("system", "tool"):
                continue
            text, imgs = split_content(msg.get("content"), where=f"messages[{i}]")
            turns.append((role, text, imgs))
        last_user = max((i for i, t in enumerate(turns) if t[0] == "user"), default=None)
        if last_user is None:
            raise InvalidInputError("messages hold no user message to check")
        _, prompt, images = turns[last_user]
        tail = [t for t in turns[last_user + 1 :] if t[0] == "assistant"]
        response = "\n".join(t[1] for t in tail) if tail else None
        if check_response is False:
            response = None
        elif check_response is True and response is None:
            raise InvalidInputError(
                "check_response=True but no assistant message follows the last user message"
            )
        history = tuple(Turn(role, text) for role, text, _ in turns[:last_user] if text)  # type: ignore[arg-type]
        return cls(prompt=prompt, images=images, response=response, history=history)


def split_content(content: Any, *, where: str = "content") -> tuple[str, tuple[Any, ...]]:
    """Split message content (a string, one part, or a list of OpenAI / Responses / Anthropic parts) into text and
    image references, as the coverage rule reads it (``core.coverage.read_parts``).

    Image parts go through :func:`image_part`, so a reference is always a ``data:`` or ``http(s)`` URL; a part
    that cannot be judged (audio, a file that is not text, an unknown type) raises :class:`InvalidInputError`.
    """
    from .coverage import read_parts

    parts = read_parts(content, where=where)
    texts = [*parts.texts, *parts.tool_results]
    return "\n".join(t for t in texts if t), tuple(parts.images)


_UNTRUSTED_SCHEMES = ("data:", "http://", "https://")


def image_reference(reference: object, *, where: str = "image") -> str:
    """The one rule for an image named by untrusted content: a ``data:`` or ``http(s)`` URL, returned as is.

    Anything else (a file path, ``file://``, another scheme, a non-string) raises :class:`InvalidInputError`
    before anything is opened; the message does not depend on whether a file of that name exists.
    """
    if not isinstance(reference, str) or not reference:
        raise InvalidInputError(f"{where}: an image reference must be a non-empty data: or http(s) URL")
    if not reference[:8].lower().startswith(_UNTRUSTED_SCHEMES):
        raise InvalidInputError(
            f"{where}: an image URL must be a data: or http(s) URL (message content never names local files)"
        )
    return reference


def image_part(part: Mapping[str, Any], *, where: str = "content") -> str | None:
    """The image reference of one content part, or None when the part is not an image.

    Reads OpenAI ``image_url`` / Responses ``input_image`` parts (``{"url": ...}`` or a bare string) and
    LangChain-style ``image`` blocks (``url``, or ``base64``/``data`` with ``mime_type``); every URL goes
    through :func:`image_reference`.
    """
    kind = part.get("type")
    if kind in ("image_url", "input_image"):
        ref = part.get("image_url")
        url = ref.get("url") if isinstance(ref, Mapping) else ref
        if url is None and kind == "input_image" and part.get("file_id"):
            raise InvalidInputError(_FILE_ID)
        if not isinstance(url, str) or not url:
            raise InvalidInputError(f"{where}: image_url part without a url")
        return image_reference(url, where=where)
    if kind == "image":
        if part.get("url"):
            return image_reference(part["url"], where=where)
        data = part.get("base64") or part.get("data")
        if data:
            mime = part.get("mime_type") or "image/png"
            return f"data:{mime};base64,{data}"
        if part.get("file_id"):
            raise InvalidInputError(_FILE_ID)
        raise InvalidInputError(f"{where}: image block without url or base64 data")
    return None


_FILE_ID = "an image given by provider file_id cannot be checked; send it as a URL or base64 data"


__all__ = ["Conversation", "Role", "Turn", "image_part", "image_reference", "split_content"]

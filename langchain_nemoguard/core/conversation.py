"""The conversation model: what is judged, independent of any framework.

A check judges one user turn (text plus zero or more images) and, optionally, the assistant's response to it.
Adapters translate LangChain messages, LiteLLM requests or OpenAI ``messages`` into this shape.
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
    """An earlier turn, kept for context (``NemoGuard(context_turns=N)`` sends the last N)."""

    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """The user's turn, its images, and optionally the assistant's response.

    ``images`` holds unprepared sources (bytes, paths, data/http URLs, Pillow images); the guard prepares them
    (decode, orient, strip, scale, re-encode) right before the call.
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
        (``check_response=False`` ignores it, ``True`` requires it). System and tool messages are not user
        input and are skipped; earlier user/assistant turns become ``history``.
        """
        if not messages:
            raise InvalidInputError("messages is empty")
        turns: list[tuple[str, str, tuple[Any, ...]]] = []
        for i, msg in enumerate(messages):
            if not isinstance(msg, Mapping):
                raise InvalidInputError(f"messages[{i}] must be a mapping, got {type(msg).__name__}")
            role = msg.get("role")
            if role in ("system", "developer", "tool", "function"):
                continue
            if role not in ("user", "assistant"):
                raise InvalidInputError(f"messages[{i}] has unknown role {role!r}")
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
    """Split OpenAI message content (a string or a list of parts) into text and image sources."""
    if content is None:
        return "", ()
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, Sequence):
        raise InvalidInputError(f"{where}: content must be a string or a list of parts")
    texts: list[str] = []
    images: list[Any] = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, Mapping):
            raise InvalidInputError(f"{where}[{j}]: a content part must be a mapping")
        kind = part.get("type")
        if kind in ("text", "input_text"):
            texts.append(str(part.get("text", "")))
        elif kind in ("image_url", "input_image"):
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, Mapping) else ref
            if not isinstance(url, str) or not url:
                raise InvalidInputError(f"{where}[{j}]: image_url part without a url")
            if not url.startswith(("data:", "http://", "https://")):
                # message content is untrusted: a bare string here must never be read as a local file path
                raise InvalidInputError(f"{where}[{j}]: an image URL must be a data: or http(s) URL")
            images.append(url)
        elif kind == "image":  # LangChain-style block passed through OpenAI shapes
            if part.get("url"):
                if not str(part["url"]).startswith(("data:", "http://", "https://")):
                    raise InvalidInputError(f"{where}[{j}]: an image URL must be a data: or http(s) URL")
                images.append(part["url"])
            elif part.get("base64") or part.get("data"):
                mime = part.get("mime_type", "image/png")
                images.append(f"data:{mime};base64,{part.get('base64') or part.get('data')}")
            else:
                raise InvalidInputError(f"{where}[{j}]: image block without url or base64 data")
        # other part kinds (audio, files, refusal) are not judged by this model
    return "\n".join(t for t in texts if t), tuple(images)

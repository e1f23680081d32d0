"""``POST /v1/moderations``: OpenAI's moderation API in front of Nemotron.

Request ``{"input": ..., "model": optional}``: ``input`` is a string, a list of strings (one result each, judged
concurrently), or a list of multimodal parts ``{"type": "text", "text": ...}`` / ``{"type": "image_url",
"image_url": {"url": ...}}`` (one result for the whole list, as OpenAI does). Every input is judged as a user
turn (the moderation API has no notion of a response). ``model`` is accepted and ignored - the service's model
judges - and the answer names the model that did. One extension: ``"policy": "<name>"``, allowed only when the
caller's key allows that policy.

Each result has OpenAI's ``flagged``, ``categories``, ``category_scores`` and ``category_applied_input_types``
(every one of OpenAI's thirteen categories, mapped from Aegis by :mod:`.categories`), plus ``nemotron``: the
verdict, the model's ratings, the Aegis categories, the policy, its action and outcome, the score and whether
the guard failed open. ``flagged`` is the policy's decision (true when it blocks or refuses; false for a
category whose action is ``log``, which ``categories`` still shows). A flagged category's score is
``Verdict.score`` (1.0 when the endpoint returned no logprobs); the others are 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core.conversation import Conversation, image_part
from ..core.verdict import Outcome, Verdict
from .categories import IMAGE_CATEGORIES, OPENAI_CATEGORIES, openai_categories
from .errors import BadRequest
from .verdicts import nemotron_fields


def conversations(body: Mapping[str, Any]) -> list[Conversation]:
    """The conversations a moderation request asks to judge; :class:`BadRequest` for any other shape."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [_text(raw, "input")]
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'input' must be a string, a list of strings or a list of text/image_url parts", "input")
    if all(isinstance(item, str) for item in raw):
        return [_text(item, f"input[{i}]") for i, item in enumerate(raw)]
    if all(isinstance(item, Mapping) for item in raw):
        return [_multimodal(raw)]
    raise BadRequest("'input' mixes strings and parts; send one kind", "input")


def _text(text: str, where: str) -> Conversation:
    if not text.strip():
        raise BadRequest(f"{where} is empty: there is nothing to judge", "input")
    return Conversation(prompt=text)


def _multimodal(parts: Sequence[Mapping[str, Any]]) -> Conversation:
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(parts):
        where = f"input[{j}]"
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"{where}.text must be a string", "input")
            texts.append(text)
        elif kind == "image_url":
            url = image_part(part, where=where)  # data: or http(s) only; a path is refused by its shape
            if url is not None:
                images.append(url)
        else:
            # a part this model cannot judge is refused, never skipped
            raise BadRequest(f"{where}: unsupported part type {str(kind)[:40]!r} (text and image_url are judged)", "input")
    prompt = "\n".join(t for t in texts if t)
    if not prompt.strip() and not images:
        raise BadRequest("'input' holds no text and no image: there is nothing to judge", "input")
    return Conversation(prompt=prompt, images=tuple(images))


def result(verdict: Verdict, conv: Conversation) -> dict[str, Any]:
    """One OpenAI moderation result for ``verdict``."""
    flagged_categories = openai_categories(verdict.categories) if verdict.error is None and not verdict.safe else set()
    score = verdict.score if verdict.score is not None else 1.0
    kinds = (["text"] if conv.prompt.strip() else []) + (["image"] if conv.images else [])
    return {
        "flagged": verdict.outcome is not Outcome.PASS,
        "categories": {c: c in flagged_categories for c in OPENAI_CATEGORIES},
        "category_scores": {c: (score if c in flagged_categories else 0.0) for c in OPENAI_CATEGORIES},
        "category_applied_input_types": {
            c: [k for k in kinds if k == "text" or c in IMAGE_CATEGORIES] for c in OPENAI_CATEGORIES
        },
        "nemotron": nemotron_fields(verdict),
    }


__all__ = ["conversations", "result"]

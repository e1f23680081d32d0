"""Step 1 of a check, pure: a conversation and a policy become the model calls that judge them.

One :class:`CallSpec` per text window, per image (the model takes one image per call, always with text) and per
policy variant (a custom policy that also applies the built-in taxonomy needs two calls). Every call carries
user text, and every call fits the served context: :func:`.budget.call_frame` counts the template, the policy
text, the earlier turns (trimmed to fit), an image and the answer against ``WindowOptions.max_context_tokens``,
and :func:`.windows.iter_segments` cuts the prompt and the response to what is left (both in one call when they
fit; a long response goes with the prompt, or its tail, as context). No I/O and no clock: the same inputs always
plan the same calls, in time linear in the input; :func:`aplan_calls` hands the event loop back while it splits
long input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .budget import CallFrame, call_frame
from .conversation import Conversation, Turn
from .formats.base import CallSpec, ModelFormat
from .formats.reading import DEFAULT_MAX_COMPLETION_CHARS
from .images import PreparedImage
from .modes import Mode
from .policy import Policy
from .taxonomy import BUILTIN_TAXONOMY
from .windows import Segment, WindowOptions, aplan_segments, plan_segments

# The model needs user text beside an image; an image-only turn is judged with this neutral text.
IMAGE_ONLY_PROMPT = "(The user sent this image without any text.)"
# A response judged without a prompt still needs a user turn before it.
NO_USER_MESSAGE = "(no user message)"
# Input this short is planned in well under a millisecond: aplan_calls does not yield for it.
_PLAN_INLINE_CHARS: Final = 16_384


@dataclass(frozen=True, slots=True)
class Plan:
    """The calls one check makes, and what their answers are combined under."""

    specs: tuple[CallSpec, ...]
    policy: Policy
    mode: Mode


@dataclass(frozen=True, slots=True)
class _Check:
    """One check's texts and call frame, before they are cut into segments."""

    prompt: str
    response: str | None
    frame: CallFrame


def _prepare(
    conv: Conversation,
    images: Sequence[PreparedImage],
    policy: Policy,
    mode: Mode,
    model_format: ModelFormat,
    windows: WindowOptions,
    max_tokens: int | None,
    constrain_output: bool,
) -> _Check:
    prompt = conv.prompt if conv.prompt.strip() else (IMAGE_ONLY_PROMPT if images else "")
    response = conv.response if conv.has_response else None
    frame = call_frame(
        model_format,
        policy,
        mode,
        history_turns(conv.history, windows.context_turns),
        image=bool(images),
        windows=windows,
        max_tokens=max_tokens,
        constrained=constrain_output,
    )
    return _Check(prompt, response, frame)


def plan_calls(
    conv: Conversation,
    images: Sequence[PreparedImage],
    policy: Policy,
    mode: Mode,
    *,
    model_format: ModelFormat,
    windows: WindowOptions,
    max_tokens: int | None = None,
    constrain_output: bool = False,
    max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
) -> Plan:
    """The calls that judge ``conv`` (with its ``images`` already prepared) under ``policy`` in ``mode``.

    Raises:
        ConfigurationError: The served context leaves too little room for any judged text (a long policy).
    """
    check = _prepare(conv, images, policy, mode, model_format, windows, max_tokens, constrain_output)
    segments = plan_segments(check.prompt, check.response, budget=check.frame.budget, options=windows)
    specs = _specs(check.frame, segments, images, policy, mode, constrain_output, max_completion_chars)
    return Plan(specs, policy, mode)


async def aplan_calls(
    conv: Conversation,
    images: Sequence[PreparedImage],
    policy: Policy,
    mode: Mode,
    *,
    model_format: ModelFormat,
    windows: WindowOptions,
    max_tokens: int | None = None,
    constrain_output: bool = False,
    max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
) -> Plan:
    """:func:`plan_calls` that never holds the event loop for more than about a millisecond."""
    check = _prepare(conv, images, policy, mode, model_format, windows, max_tokens, constrain_output)
    if len(check.prompt) + len(check.response or "") <= _PLAN_INLINE_CHARS:
        segments = plan_segments(check.prompt, check.response, budget=check.frame.budget, options=windows)
    else:
        segments = await aplan_segments(
            check.prompt, check.response, budget=check.frame.budget, options=windows
        )
        if len(segments) > 64:
            await asyncio.sleep(0)  # building hundreds of specs takes a millisecond of its own
    specs = _specs(check.frame, segments, images, policy, mode, constrain_output, max_completion_chars)
    return Plan(specs, policy, mode)


def _specs(
    frame: CallFrame,
    segments: Sequence[Segment],
    images: Sequence[PreparedImage],
    policy: Policy,
    mode: Mode,
    constrain_output: bool,
    max_completion_chars: int,
) -> tuple[CallSpec, ...]:
    """One spec per (policy variant, call): images ride on the first segment, one call each, and only the
    first of them also carries that segment's response (the response is judged once)."""
    categories = mode != "fast" or policy.needs_categories
    calls: list[tuple[Segment, PreparedImage | None]] = []
    first, rest = segments[0], segments[1:]
    if images:
        calls += [(first if i == 0 else Segment(first.prompt), img) for i, img in enumerate(images)]
    else:
        calls.append((first, None))
    calls += [(seg, None) for seg in rest]
    specs: list[CallSpec] = []
    for kwargs in frame.variants:
        taxonomy = policy.taxonomy_view() if kwargs else BUILTIN_TAXONOMY
        for seg, image in calls:
            specs.append(
                CallSpec(
                    prompt=seg.prompt if seg.prompt.strip() else NO_USER_MESSAGE,
                    image=image,
                    response=seg.response,
                    history=frame.history,
                    mode=mode,
                    categories=categories,
                    policy_kwargs=kwargs,
                    taxonomy=taxonomy,
                    max_tokens=frame.answer,
                    constrain_output=constrain_output,
                    judge_prompt=seg.judge_prompt,
                    max_completion_chars=max_completion_chars,
                )
            )
    return tuple(specs)


def history_turns(history: Sequence[Turn], context_turns: int) -> tuple[tuple[str, str], ...]:
    """The last ``context_turns`` earlier turns, reshaped to alternate from ``user`` and end on ``assistant``."""
    if not context_turns or not history:
        return ()
    merged: list[list[str]] = []
    for turn in history[-context_turns:]:
        if merged and merged[-1][0] == turn.role:
            merged[-1][1] += "\n" + turn.text
        else:
            merged.append([turn.role, turn.text])
    while merged and merged[0][0] != "user":
        merged.pop(0)
    while merged and merged[-1][0] != "assistant":
        merged.pop()
    return tuple((r, t) for r, t in merged)


__all__ = ["IMAGE_ONLY_PROMPT", "NO_USER_MESSAGE", "Plan", "aplan_calls", "history_turns", "plan_calls"]

"""Step 1 of a check, pure: a conversation and a policy become the model calls that judge them.

One :class:`CallSpec` per text window, per image (the model takes one image per call, always with text) and per
policy variant (a custom policy that also applies the built-in taxonomy needs two calls). Every call carries
user text; the first call judges the prompt and the first response window together when the prompt fits one
window. No I/O and no clock: the same inputs always plan the same calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .conversation import Conversation, Turn
from .formats.base import CallSpec, ModelFormat
from .images import PreparedImage
from .modes import Mode
from .policy import Policy
from .taxonomy import BUILTIN_TAXONOMY
from .windows import WindowOptions, split_windows

# The model needs user text beside an image; an image-only turn is judged with this neutral text.
IMAGE_ONLY_PROMPT = "(The user sent this image without any text.)"
# A response judged without a prompt still needs a user turn before it.
NO_USER_MESSAGE = "(no user message)"


@dataclass(frozen=True, slots=True)
class Plan:
    """The calls one check makes, and what their answers are combined under."""

    specs: tuple[CallSpec, ...]
    policy: Policy
    mode: Mode


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
) -> Plan:
    """The calls that judge ``conv`` (with its ``images`` already prepared) under ``policy`` in ``mode``."""
    prompt = conv.prompt if conv.prompt.strip() else (IMAGE_ONLY_PROMPT if images else "")
    prompt_windows = split_windows(prompt, windows) if prompt else [""]
    response_windows = split_windows(conv.response or "", windows) if conv.has_response else []
    history = history_turns(conv.history, windows.context_turns)
    categories = mode != "fast" or policy.needs_categories
    budget = max_tokens or model_format.max_tokens(mode, constrained=constrain_output)

    # (prompt text, image, response) triples; every call carries user text.
    triples: list[tuple[str, PreparedImage | None, str | None]] = []
    first = prompt_windows[0]
    if images:
        triples += [(first, img, None) for img in images]
    else:
        triples.append((first, None, None))
    triples += [(w, None, None) for w in prompt_windows[1:]]
    if response_windows:
        context = prompt_windows[-1] if prompt.strip() else NO_USER_MESSAGE
        if len(prompt_windows) == 1:
            # the first call judges the prompt and the first response window together
            t0 = triples[0]
            triples[0] = (t0[0] if prompt.strip() else context, t0[1], response_windows[0])
            rest = response_windows[1:]
        else:
            rest = response_windows
        triples += [(context, None, r) for r in rest]
    specs = []
    for kwargs in model_format.policy_variants(policy, think=mode == "think"):
        taxonomy = policy.taxonomy_view() if kwargs else BUILTIN_TAXONOMY
        for text, image, resp in triples:
            specs.append(
                CallSpec(
                    prompt=text if text.strip() else NO_USER_MESSAGE,
                    image=image,
                    response=resp,
                    history=history,
                    mode=mode,
                    categories=categories,
                    policy_kwargs=kwargs,
                    taxonomy=taxonomy,
                    max_tokens=budget,
                    constrain_output=constrain_output,
                )
            )
    return Plan(tuple(specs), policy, mode)


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


__all__ = ["IMAGE_ONLY_PROMPT", "Plan", "history_turns", "plan_calls"]

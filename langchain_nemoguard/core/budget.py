"""What one call may hold: everything in it counted against the served context.

A call carries more than the judged text: the model's template (instructions, taxonomy, format block), a
custom policy or taxonomy, earlier turns shown as context, an image, and room for the answer. The server
refuses a request whose prompt plus ``max_tokens`` exceeds its context, and a refused call is an error, which
``on_error="allow"`` would pass. So the budget for the judged text of one call is what the served context
(``WindowOptions.max_context_tokens``, by default what ``nemoguard serve`` serves) leaves after all of that and a
margin for the estimate's error; earlier turns get at most a quarter of it and are trimmed, oldest first, to fit.
:func:`call_frame` computes that budget once per check; :mod:`.plan` cuts the texts to it.

Limits on the input itself live here too: ``WindowOptions.max_input_chars`` refuses an input that would take
hundreds of calls, and text the encoder cannot send (a lone surrogate) is refused before anything goes out.
The backstop for an estimate that still errs low (a call the server refuses for length is judged in halves)
is here as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from .conversation import Conversation
from .errors import (
    ConfigurationError,
    GuardHTTPError,
    GuardUnavailableError,
    InputTooLargeError,
    InvalidInputError,
)
from .formats.base import CallSpec, ModelFormat, ParsedCall
from .modes import Mode
from .windows import (
    DEFAULT_MAX_CONTEXT_TOKENS,
    DEFAULT_MAX_INPUT_CHARS,
    WindowOptions,
    estimate_tokens,
    tail,
)

if TYPE_CHECKING:
    from .policy import Policy

IMAGE_TOKENS: Final = 264  # Gemma 3 turns one image into 256 soft tokens, plus its begin/end markers
TURN_TOKENS: Final = 12  # role markup and the "response: agent:" prefix around each earlier turn
UNKNOWN_FORMAT_OVERHEAD: Final = 1024  # a format that does not say what its template costs
MIN_TEXT_TOKENS: Final = 64  # below this a call could judge almost nothing: a configuration error


def answer_tokens(fmt: ModelFormat, mode: Mode, *, override: int | None, constrained: bool) -> int:
    """``max_tokens`` for one call: the caller's setting, else the format's budget for the mode."""
    if override:
        return override
    return fmt.max_tokens(mode, constrained=constrained)


def overhead_tokens(fmt: ModelFormat, policy_kwargs: Mapping[str, str]) -> int:
    """What the format's template and the policy text cost in one call, beyond the judged texts (the format's
    optional ``prompt_overhead_tokens`` hook, else a generous guess)."""
    hook = getattr(fmt, "prompt_overhead_tokens", None)
    if callable(hook):
        return int(hook(policy_kwargs))
    return UNKNOWN_FORMAT_OVERHEAD + sum(estimate_tokens(v) for v in policy_kwargs.values())


def margin_tokens(max_context_tokens: int) -> int:
    """Slack for the estimate's error: 3%, at least 32 tokens."""
    return max(32, max_context_tokens * 3 // 100)


def fixed_tokens(
    fmt: ModelFormat, variants: Iterable[Mapping[str, str]], *, max_context_tokens: int, answer: int, image: bool
) -> int:
    """Everything a call costs but the judged texts and the history, for the costliest policy variant."""
    overhead = max(overhead_tokens(fmt, kwargs) for kwargs in variants)
    return overhead + answer + (IMAGE_TOKENS if image else 0) + margin_tokens(max_context_tokens)


def trim_history(history: Sequence[tuple[str, str]], max_tokens: int) -> tuple[tuple[str, str], ...]:
    """Keep the newest (user, assistant) pairs that fit ``max_tokens``; shorten the newest pair if even it does
    not fit (keeping the ends of its texts, nearest the judged turn). Roles keep alternating from ``user``."""
    pairs = [(history[i], history[i + 1]) for i in range(0, len(history) - 1, 2)]
    kept: list[tuple[tuple[str, str], tuple[str, str]]] = []
    spent = 0
    for user, assistant in reversed(pairs):
        cost = estimate_tokens(user[1]) + estimate_tokens(assistant[1]) + 2 * TURN_TOKENS
        if spent + cost > max_tokens:
            if not kept:
                share = max(1, (max_tokens - 2 * TURN_TOKENS) // 2)
                if share > 1:
                    kept.append(((user[0], tail(user[1], share)), (assistant[0], tail(assistant[1], share))))
            break
        kept.append((user, assistant))
        spent += cost
    return tuple(turn for pair in reversed(kept) for turn in pair)


def history_tokens(history: Sequence[tuple[str, str]]) -> int:
    return sum(estimate_tokens(text) + TURN_TOKENS for _, text in history)


def text_budget(*, max_context_tokens: int, fixed: int, history: int) -> int:
    """The estimated tokens of judged text one call may hold; a configuration error if that is too little."""
    budget = max_context_tokens - fixed - history
    if budget < MIN_TEXT_TOKENS:
        raise ConfigurationError(
            f"max_context_tokens={max_context_tokens} leaves {max(budget, 0)} tokens for the judged text after "
            f"the template, policy text, answer and image ({fixed} tokens) and earlier turns ({history}); "
            "serve a longer context (nemoguard serve --max-model-len) and raise max_context_tokens, or shorten "
            "the policy"
        )
    return budget


@dataclass(frozen=True, slots=True)
class CallFrame:
    """What every call of one check shares: the policy variants, the answer budget, the earlier turns (trimmed
    to fit), and the estimated tokens of judged text one call may hold."""

    variants: tuple[Mapping[str, str], ...]
    answer: int
    history: tuple[tuple[str, str], ...]
    budget: int


def call_frame(
    fmt: ModelFormat,
    policy: Policy,
    mode: Mode,
    history: Sequence[tuple[str, str]],
    *,
    image: bool,
    windows: WindowOptions,
    max_tokens: int | None = None,
    constrained: bool = False,
) -> CallFrame:
    """The budget of one check's calls against ``windows.max_context_tokens`` (the costliest policy variant
    decides). Earlier turns get at most a quarter of what the fixed costs leave, trimmed oldest first."""
    variants = tuple(fmt.policy_variants(policy, think=mode == "think"))
    answer = answer_tokens(fmt, mode, override=max_tokens, constrained=constrained)
    context = windows.max_context_tokens
    fixed = fixed_tokens(fmt, variants, max_context_tokens=context, answer=answer, image=image)
    room = context - fixed
    kept = trim_history(history, max(0, room // 4)) if history else ()
    budget = text_budget(max_context_tokens=context, fixed=fixed, history=history_tokens(kept))
    return CallFrame(variants, answer, kept, budget)


# --- the backstop: a call the server refuses for length is split, never lost --------------------------------

MAX_SPLITS: Final = 3  # a refused call becomes at most 2**3 = 8 calls
_MIN_SPLIT_CHARS: Final = 64
_LENGTH_REFUSALS: Final = (
    "context length",
    "maximum context",
    "max_model_len",
    "too many tokens",
    "too long",
)


def is_length_refusal(exc: GuardUnavailableError) -> bool:
    """The server refused the call because prompt plus answer exceed its context (HTTP 400/413/422 saying so).

    The estimate errs high, but no estimate bounds every tokenizer on every text (random letters tokenize far
    denser than prose); a refused call would be an error, which ``on_error="allow"`` passes."""
    if not isinstance(exc, GuardHTTPError) or exc.status not in (400, 413, 422):
        return False
    message = str(exc).lower()
    return any(phrase in message for phrase in _LENGTH_REFUSALS)


def split_call(spec: CallSpec) -> tuple[CallSpec, CallSpec] | None:
    """The call's longest judged text cut in two overlapping halves (an eighth of it shared, cut at a space
    when one is near), or None when there is too little left to cut."""
    judged = "response" if spec.response is not None and len(spec.response) >= len(spec.prompt) else "prompt"
    text = spec.response if judged == "response" else spec.prompt
    assert text is not None
    if len(text) < _MIN_SPLIT_CHARS:
        return None
    half, overlap = len(text) // 2, len(text) // 16
    left_end = text.find(" ", half + overlap, half + 2 * overlap)
    left_end = left_end if left_end > 0 else half + overlap
    right_start = text.rfind(" ", half - 2 * overlap, half - overlap)
    right_start = right_start + 1 if right_start > 0 else half - overlap
    first, second = text[:left_end], text[right_start:]
    if judged == "response":
        return replace(spec, response=first), replace(spec, response=second)
    return replace(spec, prompt=first), replace(spec, prompt=second)


def merge_calls(results: Sequence[ParsedCall | GuardUnavailableError]) -> ParsedCall | GuardUnavailableError:
    """One result for the halves of a split call: any unsafe half makes it unsafe (an error beside it does not
    matter); otherwise any error is the error; otherwise safe only where every half read safe."""
    parsed = [r for r in results if isinstance(r, ParsedCall)]
    errors = [r for r in results if isinstance(r, GuardUnavailableError)]

    def field(values: list[bool | None]) -> bool | None:
        if any(v is False for v in values):
            return False
        return True if values and all(v is True for v in values) else None

    user = field([p.user_safe for p in parsed])
    response = field([p.response_safe for p in parsed])
    if errors and user is not False and response is not False:
        return errors[0]
    categories = tuple(dict.fromkeys(c for p in parsed for c in p.categories))
    return ParsedCall(
        user_safe=user,
        response_safe=response,
        categories=categories,
        reasoning="\n\n".join(p.reasoning for p in parsed if p.reasoning) or None,
        raw="\n---\n".join(p.raw for p in parsed),
        truncated=any(p.truncated for p in parsed),
        clean=all(p.clean for p in parsed) and not errors,
        trace_missing=any(p.trace_missing for p in parsed),
        simulator=any(p.simulator for p in parsed),
    )


def check_input(conv: Conversation, *, max_input_chars: int, context_turns: int) -> None:
    """Refuse an input over ``max_input_chars`` (typed, before any call) and text UTF-8 cannot carry."""
    history = conv.history[-context_turns:] if context_turns else ()
    texts = [conv.prompt, conv.response or "", *(t.text for t in history)]
    total = sum(len(t) for t in texts)
    if total > max_input_chars:
        raise InputTooLargeError(
            f"the input is {total:,} characters, over the max_input_chars limit of {max_input_chars:,}; "
            "split it, or raise max_input_chars (each ~8,000 characters is one more call)"
        )
    for text in texts:
        ensure_encodable(text)


def ensure_encodable(text: str) -> None:
    """A lone surrogate (half of a UTF-16 pair, e.g. from a bad decode) cannot travel as UTF-8 JSON."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"the text holds a lone surrogate at position {exc.start} (an unpaired UTF-16 half), which cannot "
            "be sent as UTF-8; decode the input with errors='replace'"
        ) from None


__all__ = [
    "DEFAULT_MAX_CONTEXT_TOKENS",
    "DEFAULT_MAX_INPUT_CHARS",
    "IMAGE_TOKENS",
    "MAX_SPLITS",
    "CallFrame",
    "answer_tokens",
    "call_frame",
    "check_input",
    "ensure_encodable",
    "fixed_tokens",
    "history_tokens",
    "is_length_refusal",
    "merge_calls",
    "overhead_tokens",
    "split_call",
    "text_budget",
    "trim_history",
]

"""``POST /beta/litellm_basic_guardrail_api``: LiteLLM's Generic Guardrail API, so a LiteLLM proxy calls the
service with ``guardrail: generic_guardrail_api`` and ``api_base`` - no Python plug-in in the proxy.

Request (as LiteLLM 1.110 sends it): ``input_type`` (``request`` | ``response``), ``texts``, ``images``,
``tool_calls``, ``structured_messages``, ``litellm_call_id``, ``additional_provider_specific_params``,
``request_data``, ``request_headers``. Nothing in it is trusted: ``additional_provider_specific_params.policy``
may name a policy only when the caller's key allows it, images are ``data:`` (or, when the operator enabled
fetching, ``http(s)``) URLs only, header values are ignored.

What is judged - every text and every image LiteLLM extracted, nothing skipped:

* ``request``: each text as a user turn; the images together with the last text; each tool call's name and
  arguments as a user turn (they are history the caller sends again);
* ``response``: each text as a response to the last user message of ``structured_messages`` (judged at the
  ``output`` stage, where only the response rating decides); each tool call the model makes at the
  ``tool_call`` stage; images with that user message.

Answer: ``{"action": "NONE"}`` when everything passes; ``{"action": "BLOCKED", "blocked_reason": ...}`` when the
policy blocks (LiteLLM answers the client 400), or refuses an input; for a response the policy refuses
(``rewrite``), ``{"action": "GUARDRAIL_INTERVENED", "texts": [...]}`` with each refused text replaced by the
policy's refusal (one text per text given, as LiteLLM requires). An outage that fails closed is a 503, which
LiteLLM treats by its own ``unreachable_fallback`` (``fail_closed`` by default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..core.conversation import Conversation, image_reference, split_content
from ..core.errors import Stage
from ..core.verdict import Outcome, Verdict
from .errors import BadRequest

InputType = Literal["request", "response"]
MAX_TOOL_CALL_CHARS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to judge: the conversation, the stage, and which text of ``texts`` it is (None: not a text)."""

    conversation: Conversation
    stage: Stage
    text_index: int | None = None


@dataclass(frozen=True, slots=True)
class GuardrailRequest:
    input_type: InputType
    texts: tuple[str, ...]
    items: tuple[Item, ...]
    policy: str | None
    call_id: str | None
    images: int


def parse(body: Mapping[str, Any]) -> GuardrailRequest:
    """Read a generic guardrail request into what to judge; :class:`BadRequest` for any other shape."""
    input_type = body.get("input_type")
    if input_type not in ("request", "response"):
        raise BadRequest("'input_type' must be 'request' or 'response'", "input_type")
    texts = _strings(body.get("texts"), "texts")
    images = [image_reference(u, where=f"images[{i}]") for i, u in enumerate(_strings(body.get("images"), "images"))]
    calls = [_tool_call(c, i) for i, c in enumerate(_list(body.get("tool_calls"), "tool_calls"))]
    context = _last_user_text(_list(body.get("structured_messages"), "structured_messages"))
    params = body.get("additional_provider_specific_params") or {}
    if not isinstance(params, Mapping):
        raise BadRequest("'additional_provider_specific_params' must be an object", "additional_provider_specific_params")
    policy = params.get("policy")
    if policy is not None and (not isinstance(policy, str) or not policy):
        raise BadRequest("additional_provider_specific_params.policy must be a policy name", "policy")
    call_id = body.get("litellm_call_id")
    items: list[Item] = []
    if input_type == "request":
        items += [Item(Conversation(prompt=t), Stage.INPUT, i) for i, t in enumerate(texts) if t.strip()]
        if images:
            last = next((t for t in reversed(texts) if t.strip()), "")
            items.append(Item(Conversation(prompt=last, images=tuple(images)), Stage.INPUT))
        items += [Item(Conversation(prompt=c), Stage.INPUT) for c in calls]
    else:
        items += [
            Item(Conversation(prompt=context, response=t), Stage.OUTPUT, i) for i, t in enumerate(texts) if t.strip()
        ]
        if images:
            items.append(Item(Conversation(prompt=context, images=tuple(images)), Stage.INPUT))
        items += [Item(Conversation(prompt=context, response=c), Stage.TOOL_CALL) for c in calls]
    return GuardrailRequest(
        input_type,
        tuple(texts),
        tuple(items),
        policy,
        call_id if isinstance(call_id, str) and call_id else None,
        len(images),
    )


def answer(req: GuardrailRequest, verdicts: Sequence[Verdict], refusal: str) -> dict[str, Any]:
    """The generic guardrail answer for the verdicts of ``req.items`` (same order)."""
    outcomes = [v.outcome for v in verdicts]
    details = [_detail(item, v) for item, v in zip(req.items, verdicts, strict=True)]
    if Outcome.BLOCK in outcomes or (Outcome.REFUSE in outcomes and req.input_type == "request"):
        stopping = [v for v in verdicts if v.outcome is not Outcome.PASS]
        categories = list(dict.fromkeys(c for v in stopping for c in v.categories))
        if all(v.outcome is Outcome.REFUSE for v in stopping):
            reason = refusal
        else:
            reason = "blocked by content-safety policy" + (f" ({', '.join(categories)})" if categories else "")
        return {"action": "BLOCKED", "blocked_reason": reason, "nemotron": details}
    if Outcome.REFUSE in outcomes:
        refused = {item.text_index for item, v in zip(req.items, verdicts, strict=True) if v.outcome is Outcome.REFUSE}
        if None in refused:  # a refused image or tool call has no text to replace: the response stops
            return {"action": "BLOCKED", "blocked_reason": refusal, "nemotron": details}
        texts = [refusal if i in refused else t for i, t in enumerate(req.texts)]
        return {"action": "GUARDRAIL_INTERVENED", "texts": texts, "nemotron": details}
    return {"action": "NONE", "nemotron": details}


def _detail(item: Item, v: Verdict) -> dict[str, Any]:
    return {
        "stage": item.stage.value,
        "text_index": item.text_index,
        "verdict": "error" if v.error is not None else ("safe" if v.safe else "unsafe"),
        "categories": list(v.categories),
        "outcome": v.outcome.value,
        "score": v.score,
        "fail_open": v.error is not None and v.safe,
    }


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"'{name}' must be a list", name)
    return value


def _strings(value: Any, name: str) -> list[str]:
    items = _list(value, name)
    if not all(isinstance(s, str) for s in items):
        raise BadRequest(f"'{name}' must be a list of strings", name)
    return items


def _tool_call(call: Any, i: int) -> str:
    """A tool call as the text judged: ``name(arguments)``."""
    if not isinstance(call, Mapping):
        raise BadRequest(f"tool_calls[{i}] must be an object", "tool_calls")
    fn = call.get("function")
    fn = fn if isinstance(fn, Mapping) else {}
    name, args = fn.get("name") or "", fn.get("arguments")
    if not isinstance(args, str):
        args = json.dumps(args, ensure_ascii=False) if args is not None else ""
    text = f"{name}({args})"
    if len(text) > MAX_TOOL_CALL_CHARS:
        raise BadRequest(f"tool_calls[{i}] is longer than {MAX_TOOL_CALL_CHARS} characters", "tool_calls")
    if not text.strip("()"):
        raise BadRequest(f"tool_calls[{i}] has neither a name nor arguments", "tool_calls")
    return text


def _last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, Mapping) and m.get("role") == "user":
            return split_content(m.get("content"), where="structured_messages")[0]
    return ""


__all__ = ["GuardrailRequest", "Item", "answer", "parse"]

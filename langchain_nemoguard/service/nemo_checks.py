"""``POST /v1/guardrail/checks``: the request and response shape of NeMo Guardrails' checks endpoint.

Request: ``{"model": ..., "messages": [...], "guardrails": {"config_id": "<policy>"}}`` (OpenAI chat messages;
other chat-completion fields are accepted and ignored, as the checks endpoint runs no generation).
``guardrails.config_id`` (or a one-element ``config_ids``) names the policy, which the caller's key must allow;
an inline ``guardrails.config`` is refused - a request cannot bring its own rules.

The judged turn is the last user message (text and images); when an assistant message follows it, that is
the response, judged in the same call. Earlier turns are context. Two rails report:

* ``content safety check input`` - the user turn: ``blocked`` when the model rated it unsafe and the policy
  does not let it pass;
* ``content safety check output`` - the response, when there is one: ``blocked`` on the same rule for the
  response rating.

Response: ``{"status": "success" | "blocked", "rails_status": {"<rail>": {"status": ...}}, "guardrails_data":
{"config_ids": [<policy>]}, "nemotron": {...}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..core.conversation import Conversation
from ..core.errors import Stage
from ..core.verdict import Outcome, Verdict
from .errors import BadRequest
from .verdicts import nemotron_fields

INPUT_RAIL: Final = "content safety check input"
OUTPUT_RAIL: Final = "content safety check output"


def requested_policy(body: Mapping[str, Any]) -> str | None:
    """The policy a checks request names (``guardrails.config_id``), or None."""
    guardrails = body.get("guardrails")
    if guardrails is None:
        return None
    if not isinstance(guardrails, Mapping):
        raise BadRequest("'guardrails' must be an object", "guardrails")
    if guardrails.get("config") is not None:
        raise BadRequest(
            "inline guardrail configurations are not accepted: name a policy with guardrails.config_id",
            "guardrails.config",
        )
    ids = guardrails.get("config_ids")
    one = guardrails.get("config_id")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 1:
            raise BadRequest("guardrails.config_ids takes one policy name", "guardrails.config_ids")
        one = ids[0] if ids else one
    if one is not None and (not isinstance(one, str) or not one):
        raise BadRequest("guardrails.config_id must be a policy name", "guardrails.config_id")
    return one


def conversation(body: Mapping[str, Any]) -> tuple[Conversation, int]:
    """The judged conversation of a checks request, and how many messages it had."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list of chat messages", "messages")
    return Conversation.from_messages(messages), len(messages)


def response(verdict: Verdict, conv: Conversation, policy: str) -> dict[str, Any]:
    """The checks answer for ``verdict``."""
    rails = {INPUT_RAIL: _status(verdict.user_safe is False and verdict.outcome is not Outcome.PASS)}
    if conv.has_response:
        rails[OUTPUT_RAIL] = _status(verdict.at_stage(Stage.OUTPUT).outcome is not Outcome.PASS)
    blocked = any(r["status"] == "blocked" for r in rails.values())
    return {
        "status": "blocked" if blocked else "success",
        "rails_status": rails,
        "guardrails_data": {"config_ids": [policy]},
        "nemotron": nemotron_fields(verdict),
    }


def _status(blocked: bool) -> dict[str, str]:
    return {"status": "blocked" if blocked else "success"}


__all__ = ["INPUT_RAIL", "OUTPUT_RAIL", "conversation", "requested_policy", "response"]

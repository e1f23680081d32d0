"""``NemoGuardMiddleware``: content-safety checks for agents built with ``langchain.agents.create_agent``.

Where each check runs, and why there:

* ``before_model`` - the latest user turn (text and images) that no assistant message has answered yet. An
  unsafe turn is replaced by id with a placeholder (the unsafe text does not stay in the state) and the run
  jumps to the end with a refusal.
* ``wrap_model_call`` - the model's message: its text and its tool-call arguments. The check runs *inside* the
  model node, before the node returns, because LangGraph's ``stream_mode="messages"`` emits a node's output
  messages when the node ends and de-duplicates by id: a later ``after_model`` replacement with the same id
  would never reach a messages-mode consumer, while the unsafe original already had. An unsafe message is
  replaced (same id, no tool calls) by the refusal, so the loop ends and nothing unsafe enters the state. With
  ``hold_back_tokens=True`` (default) the model call is tagged ``nostream``, so messages-mode consumers get the
  checked message whole at the end of the node instead of raw, unchecked tokens.
* ``after_model`` - a safety net: it re-checks the last assistant message only when its text is not the one
  the model-call check judged (another middleware's ``after_model`` changed it, or a model call bypassed the
  wrapper) and replaces it by id.
* ``wrap_tool_call`` - tool results. ``block`` withholds the result (the model never sees it) and the next
  ``before_model`` ends the run with the refusal; ``rewrite`` hands the model the refusal text as the result
  and lets it go on; ``log`` passes the result.

Place it first in ``middleware=[...]`` (outermost): ``wrap_*`` hooks nest in list order, so retry and fallback
middleware listed after it run inside it and the guard judges whatever they finally produce.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    hook_config,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.runtime import Runtime

from ..core.conversation import Conversation
from ..core.errors import Stage
from ..core.guard import NemoGuard
from ..core.policy import Policy
from ..core.verdict import Action, Outcome, Verdict
from .events import (
    NOSTREAM_TAG,
    VERDICT_EVENT,
    ModelContentBlockedError,
    adispatch_verdict,
    dispatch_verdict,
    policy_for_run,
)
from .messages import (
    assistant_text,
    conversation_from_messages,
    last_user_text,
    latest_user_turn,
    tool_result_text,
)

MARKER = "nemoguard"
"""``response_metadata`` key on messages the guard judged or wrote."""

WITHHELD_INPUT = "[message withheld by the content-safety guard]"
WITHHELD_TOOL_RESULT = "[tool result withheld by the content-safety guard]"


class NemoGuardMiddleware(AgentMiddleware):
    """Checks user input, model output (text and tool-call arguments) and tool results of an agent.

    Args:
        guard: The guard that judges.
        policy: A ``Policy`` or a name from the guard's policy set; a run may pick one with
            ``config={"configurable": {"nemoguard_policy": name}}``.
        action: One action for every unsafe verdict, instead of the policy's per-category map.
        refusal: The text a refusal says (default: the policy's).
        check_input: Check the latest user turn before the model runs.
        check_output: Check the model's message (text and tool-call arguments) inside the model call.
        check_tool_results: Check tool results before the model sees them.
        hold_back_tokens: Tag the model call ``nostream``, so messages-mode streams get the checked message
            whole instead of raw, unchecked tokens.
        raise_on_block: Raise :class:`langchain_nemoguard.ContentBlockedError` on ``block`` instead of ending
            the run with the refusal.
        name: Tells two instances apart (agent middleware names must be unique).
    """

    def __init__(
        self,
        guard: NemoGuard,
        *,
        policy: Policy | str | None = None,
        action: Action | str | None = None,
        refusal: str | None = None,
        check_input: bool = True,
        check_output: bool = True,
        check_tool_results: bool = True,
        hold_back_tokens: bool = True,
        raise_on_block: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.guard = guard
        self.policy = policy
        self.action = Action(action) if action is not None else None
        self.refusal = refusal
        self.check_input = check_input
        self.check_output = check_output
        self.check_tool_results = check_tool_results
        self.hold_back_tokens = hold_back_tokens
        self.raise_on_block = raise_on_block
        self._name = name

    @property
    def name(self) -> str:
        """The middleware's name in the agent (``NemoGuardMiddleware`` unless given)."""
        return self._name or type(self).__name__

    # --- shared, I/O-free -------------------------------------------------------------------------------------

    def _policy(self) -> Policy:
        return policy_for_run(self.guard, self.policy, self.action, self.refusal, _current_config())

    def _refuses(self, verdict: Verdict, stage: Stage) -> bool:
        """False: let it pass. True: replace it with the refusal. Raises when told to for ``block``."""
        outcome = verdict.outcome
        if outcome is Outcome.PASS:
            return False
        if outcome is Outcome.BLOCK and self.raise_on_block:
            raise ModelContentBlockedError(verdict, stage)
        return True

    def _input_plan(self, state: AgentState) -> tuple[Any, ...] | None:
        """What before_model must do: ('end', update) at once, ('check', conv, index), or None."""
        messages: list[BaseMessage] = list(state["messages"])
        withheld = _withheld_tool_results(messages)
        if withheld is not None:
            return ("end", withheld)
        if not self.check_input:
            return None
        idx = latest_user_turn(messages)
        if idx is None or _judged(messages[idx]):
            return None
        return ("check", conversation_from_messages(messages[: idx + 1]), idx)

    def _input_update(
        self, state: AgentState, idx: int, verdict: Verdict, policy: Policy
    ) -> dict[str, Any] | None:
        if not self._refuses(verdict, Stage.INPUT):
            return None
        unsafe = state["messages"][idx]
        placeholder = HumanMessage(
            content=WITHHELD_INPUT, id=unsafe.id, response_metadata={MARKER: _meta(verdict, "")}
        )
        return {"messages": [placeholder, _refusal(policy, verdict)], "jump_to": "end"}

    def _withheld_update(self, verdict: Verdict, policy: Policy) -> dict[str, Any]:
        return {"messages": [_refusal(policy, verdict)], "jump_to": "end"}

    def _output_conv(
        self, message: AIMessage, messages: Sequence[BaseMessage]
    ) -> tuple[Conversation, Stage] | None:
        text = assistant_text(message)
        if not text.strip():
            return None
        stage = Stage.TOOL_CALL if message.tool_calls and not message.text.strip() else Stage.OUTPUT
        return Conversation(prompt=last_user_text(messages), response=text), stage

    def _judged_output(self, message: AIMessage, verdict: Verdict, policy: Policy, stage: Stage) -> AIMessage:
        """The message to keep: the original (marked as judged) or the refusal under its id."""
        if self._refuses(verdict, stage):
            return _refusal(policy, verdict, msg_id=message.id)
        marked = message.model_copy(deep=False)
        marked.response_metadata = {
            **message.response_metadata,
            MARKER: _meta(verdict, assistant_text(message)),
        }
        return marked

    def _tool_message(self, result: ToolMessage, verdict: Verdict, policy: Policy) -> ToolMessage:
        if not self._refuses(verdict, Stage.TOOL_RESULT):
            return result
        rewrite = verdict.outcome is Outcome.REFUSE
        meta = {**_meta(verdict, ""), "withheld": not rewrite}
        return ToolMessage(
            content=policy.refusal if rewrite else WITHHELD_TOOL_RESULT,
            tool_call_id=result.tool_call_id,
            name=result.name,
            id=result.id,
            status="error",
            response_metadata={MARKER: meta},
        )

    # --- before_model -------------------------------------------------------------------------------------------

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Judge the latest unanswered user turn; an unsafe one is replaced and the run ends with the refusal.

        Args:
            state: The agent state (its ``messages``).
            runtime: The graph runtime (unused).

        Returns:
            None to go on, or a state update that withholds the turn and jumps to the end.
        """
        plan = self._input_plan(state)
        if plan is None:
            return None
        policy = self._policy()
        if plan[0] == "end":
            return self._withheld_update(plan[1], policy)
        _, conv, idx = plan
        verdict = self._check(conv, policy, Stage.INPUT)
        return self._input_update(state, idx, verdict, policy)

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """The async twin of :meth:`before_model`.

        Args:
            state: The agent state (its ``messages``).
            runtime: The graph runtime (unused).
        """
        plan = self._input_plan(state)
        if plan is None:
            return None
        policy = self._policy()
        if plan[0] == "end":
            return self._withheld_update(plan[1], policy)
        _, conv, idx = plan
        verdict = await self._acheck(conv, policy, Stage.INPUT)
        return self._input_update(state, idx, verdict, policy)

    # --- wrap_model_call ----------------------------------------------------------------------------------------

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        """Judge the model's message (text and tool-call arguments) inside the model node, before it returns.

        Args:
            request: The model request (its messages give the prompt context).
            handler: Calls the model (and any middleware inside this one).

        Returns:
            The response, or the same response with the message replaced by the refusal under its id.
        """
        if not self.check_output:
            return handler(request)
        with _nostream(self.hold_back_tokens):
            response = handler(request)
        message = _response_message(response)
        if message is None:
            return response
        planned = self._output_conv(message, list(request.messages))
        if planned is None:
            return response
        policy = self._policy()
        verdict = self._check(planned[0], policy, planned[1])
        return _replace_message(response, message, self._judged_output(message, verdict, policy, planned[1]))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        """The async twin of :meth:`wrap_model_call`.

        Args:
            request: The model request (its messages give the prompt context).
            handler: Calls the model (and any middleware inside this one).
        """
        if not self.check_output:
            return await handler(request)
        with _nostream(self.hold_back_tokens):
            response = await handler(request)
        message = _response_message(response)
        if message is None:
            return response
        planned = self._output_conv(message, list(request.messages))
        if planned is None:
            return response
        policy = self._policy()
        verdict = await self._acheck(planned[0], policy, planned[1])
        return _replace_message(response, message, self._judged_output(message, verdict, policy, planned[1]))

    # --- after_model (safety net) -------------------------------------------------------------------------------

    def _unjudged_output(self, state: AgentState) -> tuple[AIMessage, Conversation, Stage] | None:
        if not self.check_output:
            return None
        messages = list(state["messages"])
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage) or _judged(last):
            return None
        planned = self._output_conv(last, messages)
        return None if planned is None else (last, *planned)

    def _output_update(
        self, message: AIMessage, verdict: Verdict, policy: Policy, stage: Stage
    ) -> dict[str, Any]:
        kept = self._judged_output(message, verdict, policy, stage)
        update: dict[str, Any] = {"messages": [kept]}
        if kept.response_metadata.get(MARKER, {}).get("refused"):
            update["jump_to"] = "end"
        return update

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """The safety net: re-judge the last assistant message if its text is not what was judged.

        Args:
            state: The agent state (its ``messages``).
            runtime: The graph runtime (unused).
        """
        found = self._unjudged_output(state)
        if found is None:
            return None
        message, conv, stage = found
        policy = self._policy()
        return self._output_update(message, self._check(conv, policy, stage), policy, stage)

    @hook_config(can_jump_to=["end"])
    async def aafter_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """The async twin of :meth:`after_model`.

        Args:
            state: The agent state (its ``messages``).
            runtime: The graph runtime (unused).
        """
        found = self._unjudged_output(state)
        if found is None:
            return None
        message, conv, stage = found
        policy = self._policy()
        return self._output_update(message, await self._acheck(conv, policy, stage), policy, stage)

    # --- wrap_tool_call -----------------------------------------------------------------------------------------

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """Judge a tool's result before the model sees it (block withholds it, rewrite replaces it).

        Args:
            request: The tool call request.
            handler: Runs the tool.
        """
        result = handler(request)
        if not self.check_tool_results or not isinstance(result, ToolMessage):
            return result
        text = tool_result_text(result)
        if not text.strip():
            return result
        policy = self._policy()
        verdict = self._check(Conversation(prompt=text), policy, Stage.TOOL_RESULT)
        return self._tool_message(result, verdict, policy)

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """The async twin of :meth:`wrap_tool_call`.

        Args:
            request: The tool call request.
            handler: Runs the tool.
        """
        result = await handler(request)
        if not self.check_tool_results or not isinstance(result, ToolMessage):
            return result
        text = tool_result_text(result)
        if not text.strip():
            return result
        policy = self._policy()
        verdict = await self._acheck(Conversation(prompt=text), policy, Stage.TOOL_RESULT)
        return self._tool_message(result, verdict, policy)

    # --- I/O ----------------------------------------------------------------------------------------------------

    def _check(self, conv: Conversation, policy: Policy, stage: Stage) -> Verdict:
        verdict = self.guard.check(conversation=conv, policy=policy, stage=stage)
        _write_stream(dispatch_verdict(stage, verdict))
        return verdict

    async def _acheck(self, conv: Conversation, policy: Policy, stage: Stage) -> Verdict:
        verdict = await self.guard.acheck(conversation=conv, policy=policy, stage=stage)
        _write_stream(await adispatch_verdict(stage, verdict))
        return verdict


# --- helpers -------------------------------------------------------------------------------------------------------


def _current_config() -> RunnableConfig | None:
    return var_child_runnable_config.get()


@contextlib.contextmanager
def _nostream(enabled: bool) -> Iterator[None]:
    """Tag model calls made in this block ``nostream``: messages-mode streams skip their raw tokens."""
    config = var_child_runnable_config.get()
    if not enabled or config is None:
        yield
        return
    tags = list(config.get("tags") or [])
    token = var_child_runnable_config.set(
        RunnableConfig(**{**config, "tags": tags if NOSTREAM_TAG in tags else [*tags, NOSTREAM_TAG]})
    )
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


def _write_stream(payload: dict[str, Any]) -> None:
    """Verdicts also reach ``stream_mode="custom"`` consumers of an agent."""
    try:
        from langgraph.config import get_stream_writer

        get_stream_writer()({VERDICT_EVENT: payload})
    except (RuntimeError, KeyError):  # outside a graph run
        return


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _meta(verdict: Verdict, judged_text: str) -> dict[str, Any]:
    return {
        "judged": _digest(judged_text),
        "refused": False,
        "safe": verdict.safe,
        "action": verdict.action.value,
        "categories": list(verdict.categories),
        "error": verdict.error.value if verdict.error else None,
    }


def _judged(message: BaseMessage) -> bool:
    meta = message.response_metadata.get(MARKER)
    if not isinstance(meta, dict):
        return False
    if meta.get("refused") or isinstance(message, HumanMessage):
        return True
    return meta.get("judged") == _digest(assistant_text(message))


def _refusal(policy: Policy, verdict: Verdict, *, msg_id: str | None = None) -> AIMessage:
    text = policy.refusal
    meta = {**_meta(verdict, text), "refused": True}
    return AIMessage(content=text, id=msg_id, response_metadata={MARKER: meta})


def _withheld_tool_results(messages: list[BaseMessage]) -> Verdict | None:
    """The verdict behind a withheld tool result among the trailing tool messages, if any."""
    for msg in reversed(messages):
        if not isinstance(msg, ToolMessage):
            return None
        meta = msg.response_metadata.get(MARKER)
        if isinstance(meta, dict) and meta.get("withheld"):
            return Verdict(
                user_safe=False,
                safe=False,
                categories=tuple(meta.get("categories") or ()),
                action=Action(meta.get("action", "block")),
            )
    return None


def _response_message(response: Any) -> AIMessage | None:
    if isinstance(response, AIMessage):
        return response
    if isinstance(response, ExtendedModelResponse):
        response = response.model_response
    if isinstance(response, ModelResponse):
        return next((m for m in reversed(response.result) if isinstance(m, AIMessage)), None)
    return None


def _replace_message(
    response: ModelResponse | AIMessage | ExtendedModelResponse, old: AIMessage, new: AIMessage
) -> ModelResponse | AIMessage | ExtendedModelResponse:
    if new is old:
        return response
    if isinstance(response, AIMessage):
        return new
    if isinstance(response, ExtendedModelResponse):
        return ExtendedModelResponse(
            model_response=_replace_in(response.model_response, old, new), command=response.command
        )
    return _replace_in(response, old, new)


def _replace_in(response: ModelResponse, old: AIMessage, new: AIMessage) -> ModelResponse:
    result = [new if m is old else m for m in response.result]
    refused = new.response_metadata.get(MARKER, {}).get("refused")
    return ModelResponse(result=result, structured_response=None if refused else response.structured_response)


__all__ = ["MARKER", "WITHHELD_INPUT", "WITHHELD_TOOL_RESULT", "NemoGuardMiddleware"]

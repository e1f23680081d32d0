"""``NemoGuardMiddleware``: content-safety checks for agents built with ``langchain.agents.create_agent``.

What is judged is the core's coverage rule (``core.coverage``; the table in ``docs/coverage.md``). Where each
check runs, and why there:

* ``before_model`` - every message that reaches the model and was not judged yet: the unanswered user turns
  (several are judged together), system messages in the state, tool results that did not come through this
  middleware (a caller's own ``ToolMessage``). An unsafe turn is replaced by id with a placeholder (the unsafe
  text does not stay in the state) and the run jumps to the end with a refusal.
* ``wrap_model_call`` - first the agent's own system prompt (``check_system``; a repeat is a cache hit), then
  the model's message: text, tool-call arguments, reasoning and the structured response. The check runs
  *inside* the model node, before the node returns, because LangGraph's ``stream_mode="messages"`` emits a
  node's output messages when the node ends and de-duplicates by id. With ``hold_back_tokens=True`` (default)
  the model call is tagged ``nostream`` and its streaming is turned off, so neither a messages-mode consumer nor
  an ``astream_events`` consumer of ``on_chat_model_stream`` ever sees an unjudged token.
* ``after_model`` - a safety net: it re-checks the last assistant message when it is not the one the model-call
  check judged (another middleware's ``after_model`` changed it, or a model call bypassed the wrapper).
* ``wrap_tool_call`` - before the tool runs, the call's arguments when they are not the ones the model-call
  check judged (a human-in-the-loop edit); after it, the result, whether a ``ToolMessage`` or a
  ``Command(update={"messages": [...]})``. ``block`` withholds the result (the model never sees it) and the
  next ``before_model`` ends the run with the refusal; ``rewrite`` hands the model the refusal text as the
  result; ``log`` passes it.

The memory of what was judged is private agent state (``nemoguard_judged``, a list of digests of role, id and
content) that a caller cannot write: an input key of that name is dropped by the agent's input schema, and
message content or metadata a caller supplies never counts as "already judged".

With ``raise_on_block=True`` an input block first replaces the unsafe turn (so a checkpointer keeps the
placeholder, not the unsafe text, and the turn never reaches the model on a later turn) and then raises
:class:`ContentBlockedError` from ``after_agent``.

Each check is its own traced run (``NemoGuard:<stage>``, tagged ``nemoguard``; :mod:`.tracing`, shared with the
wrapper), a child of the agent node whose hook ran it; its inputs are sizes, not text.

``exit_behavior`` (``"end" | "error" | "replace"``, LangChain's moderation convention) overrides what every
enforced verdict does; see :class:`NemoGuardMiddleware` and docs/langchain.md.

Place it before retry and fallback middleware in ``middleware=[...]`` (outside them): ``wrap_*`` hooks nest in
list order, so retry and fallback listed after it run inside it and the guard judges whatever they finally
produce. Place it *after* ``HumanInTheLoopMiddleware``: a reviewer's edit replaces the tool call inside the
reviewer's own ``wrap_tool_call``, so the guard sees the edited arguments only when it runs inside that hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    ExtendedModelResponse,
    ModelRequest,
    ModelResponse,
    hook_config,
)
from langchain.agents.middleware.types import PrivateStateAttr
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.runtime import Runtime
from langgraph.types import Command

from ..core.conversation import Conversation
from ..core.coverage import Check, CoverageOptions, Message, ToolCall, input_checks, serialise
from ..core.errors import ContentBlockedError, ErrorCode, GuardUnavailableError, Stage
from ..core.guard import NemoGuard
from ..core.policy import Policy
from ..core.verdict import (
    Action,
    Exit,
    ExitBehavior,
    Outcome,
    Settlement,
    Verdict,
    answer_for,
    exit_behavior_of,
    settle,
)
from .events import (
    NOSTREAM_TAG,
    VERDICT_EVENT,
    answer_text,
    callback_handlers,
    exit_error,
    exits_conflict,
    is_stream_consumer,
    policy_for_run,
    verdict_event,
)
from .messages import (
    assistant_text,
    core_message,
    last_user_text,
    message_role,
    plain_value,
    tool_result_text,
)
from .tracing import CheckRun, atraced_check, traced_check

MARKER = "nemoguard"
"""``response_metadata`` key on messages the guard judged or wrote (informational: never trusted as memory)."""

JUDGED_KEY = "nemoguard_judged"
"""The private state key that remembers what was judged."""

PENDING_KEY = "nemoguard_blocked"
"""The private state key that carries an input block to ``after_agent`` under ``raise_on_block``."""

WITHHELD_INPUT = "[message withheld by the content-safety guard]"
WITHHELD_TOOL_RESULT = "[tool result withheld by the content-safety guard]"

_MEMORY_LIMIT = 4096  # digests kept per thread (the oldest go first)


def _remember(old: list[str] | None, new: list[str] | None) -> list[str]:
    """The reducer of the judged memory: append unseen digests, keep the newest ``_MEMORY_LIMIT``."""
    merged = list(old or [])
    seen = set(merged)
    merged.extend(k for k in new or [] if k not in seen and not seen.add(k))  # type: ignore[func-returns-value]
    return merged[-_MEMORY_LIMIT:]


class NemoGuardState(AgentState):
    """The agent state plus the middleware's private memory (not part of the agent's input or output)."""

    nemoguard_judged: NotRequired[Annotated[list[str], PrivateStateAttr, _remember]]
    nemoguard_blocked: NotRequired[Annotated[dict[str, Any] | None, PrivateStateAttr]]


class NemoGuardMiddleware(AgentMiddleware):
    """Checks everything an agent sends to its model and to its caller (see the module docstring).

    Args:
        guard: The guard that judges.
        policy: A ``Policy`` or a name from the guard's policy set; a run may pick one with
            ``config={"configurable": {"nemoguard_policy": name}}``.
        action: One action for every unsafe verdict, instead of the policy's per-category map.
        exit_behavior: LangChain's moderation convention, meaning what it means in ``OpenAIModerationMiddleware``
            and in ``guard.wrap``, for every enforced verdict (``block``, ``rewrite``, and an outage under
            ``on_error="block"``): ``"error"`` raises (:class:`ContentBlockedError` for a block,
            :class:`GuardUnavailableError` for an outage); ``"end"`` answers with the refusal and jumps to the
            end; ``"replace"`` puts the refusal in place of the offending content (same id) and the run goes on.
            None (default) keeps the policy's map: ``block`` ends the run (raises under ``raise_on_block``),
            ``rewrite`` replaces. ``log`` categories pass either way. Not with ``action`` or ``raise_on_block``
            (a ``TypeError``; ``raise_on_block=True`` is ``exit_behavior="error"`` for blocks).
        refusal: The text a refusal says (default: the policy's).
        outage_message: What the run answers with when the guard gave no verdict and the exit is not ``error``
            (default ``DEFAULT_OUTAGE_MESSAGE``): never the policy's refusal, never an endpoint.
        check_input: Check what reaches the model (user turns, system messages, tool results in the state).
        check_output: Check the model's message (text, tool-call arguments, reasoning, structured response).
        check_tool_results: Check tool results before the model sees them.
        check_system: Check system messages and the agent's system prompt (None: the guard's
            ``coverage.check_system``). Turn it off when the system prompt is the application's own.
        hold_back_tokens: Tag the model call ``nostream`` and turn its streaming off, so streams get the
            checked message whole instead of raw, unchecked tokens.
        raise_on_block: Raise :class:`langchain_nemoguard.ContentBlockedError` on ``block`` instead of ending
            the run with the refusal (and :class:`langchain_nemoguard.GuardUnavailableError` on an outage,
            instead of ending it with the outage message).
        name: Tells two instances apart (agent middleware names must be unique).
    """

    state_schema = NemoGuardState

    def __init__(
        self,
        guard: NemoGuard,
        *,
        policy: Policy | str | None = None,
        action: Action | str | None = None,
        exit_behavior: ExitBehavior | None = None,
        refusal: str | None = None,
        outage_message: str | None = None,
        check_input: bool = True,
        check_output: bool = True,
        check_tool_results: bool = True,
        check_system: bool | None = None,
        hold_back_tokens: bool = True,
        raise_on_block: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.exit_behavior = exit_behavior_of(exit_behavior)
        if self.exit_behavior is not None and action is not None:
            raise TypeError(exits_conflict("action"))
        if self.exit_behavior not in (None, "error") and raise_on_block:
            raise TypeError(exits_conflict("raise_on_block"))
        self.guard = guard
        self.policy = policy
        self.action = Action(action) if action is not None else None
        self.refusal = refusal
        self.outage_message = outage_message
        self.check_input = check_input
        self.check_output = check_output
        self.check_tool_results = check_tool_results
        self.check_system = guard.coverage.check_system if check_system is None else check_system
        self.hold_back_tokens = hold_back_tokens
        self.raise_on_block = raise_on_block
        self._name = name

    @property
    def name(self) -> str:
        """The middleware's name in the agent (``NemoGuardMiddleware`` unless given)."""
        return self._name or type(self).__name__

    @property
    def coverage(self) -> CoverageOptions:
        c = self.guard.coverage
        return CoverageOptions(
            check_system=self.check_system,
            check_tool_results=self.check_tool_results,
            check_reasoning=c.check_reasoning,
            check_embeddings=c.check_embeddings,
        )

    # --- shared, I/O-free -------------------------------------------------------------------------------------

    def _policy(self) -> Policy:
        return policy_for_run(self.guard, self.policy, self.action, self.refusal, _current_config())

    def _settle(self, verdict: Verdict, policy: Policy) -> Settlement:
        """The exit for a verdict (core ``settle``): a block ends the run unless ``raise_on_block``."""
        block: ExitBehavior = "error" if self.raise_on_block else "end"
        return settle(
            verdict, policy, exit_behavior=self.exit_behavior, block=block, outage_message=self.outage_message
        )

    def _refuses(self, verdict: Verdict, stage: Stage, policy: Policy) -> Settlement | None:
        """None: let it pass. A settlement (``end`` or ``replace``): put its text in place. Raises for ``error``:
        :class:`ContentBlockedError` for a block, :class:`GuardUnavailableError` for an outage."""
        settlement = self._settle(verdict, policy)
        return None if answer_text(settlement, stage) is None else settlement

    def _input_plan(self, state: dict[str, Any]) -> tuple[Any, ...] | None:
        """What before_model must do: ('end', verdict, update) at once, ('check', checks, messages), or None.

        The agent's memory says what was judged, so the rule is: every message that reaches the model and is
        not in the memory is judged once - the unanswered user turns, system messages, tool results, and any
        history a caller wrote (an assistant message it supplied is judged as its text). The model's own
        answers are in the memory from the output check.
        """
        messages: list[BaseMessage] = list(state["messages"])
        judged = set(state.get(JUDGED_KEY) or ())
        withheld = _withheld_tool_results(messages)
        if withheld is not None:
            # withhold whatever else the tool turn brought that was not judged (e.g. text another middleware
            # wrapped around the withheld result)
            tail = []
            for msg in reversed(messages):
                if not isinstance(msg, ToolMessage):
                    break
                if _key(msg) not in judged and msg.content != WITHHELD_TOOL_RESULT:
                    tail.append(_placeholder(msg))
            return ("end", withheld, tail)
        if not self.check_input:
            return None
        end = len(messages)
        while end > 0 and message_role(messages[end - 1]) == "assistant":
            end -= 1
        covered: list[BaseMessage] = []
        core: list[Message] = []
        for i, msg in enumerate(messages):
            if _key(msg) in judged:
                continue
            read = core_message(msg)
            if read.kind == "assistant" and i < end:
                # an assistant message in the history that no output check judged: a caller wrote it
                read = Message("user", read.assistant_text())
            covered.append(msg)
            core.append(read)
        if not covered:
            return None
        return ("check", input_checks(core, self.coverage), covered)

    def _input_update(
        self, checks: Sequence[Check], verdicts: Sequence[Verdict], covered: Sequence[BaseMessage], policy: Policy
    ) -> dict[str, Any] | None:
        found = _decisive(checks, verdicts)
        keys = [_key(m) for m in covered]
        if found is None or found[1].outcome is Outcome.PASS:
            return {JUDGED_KEY: keys} if keys else None
        check, verdict = found
        stage = check.stage
        settlement = self._settle(verdict, policy)
        if settlement.exit is Exit.ERROR:
            # replace first (a checkpointer keeps the placeholder), raise in after_agent
            update = self._withhold(covered, verdict)
            update[PENDING_KEY] = {"verdict": verdict.to_dict(), "stage": stage.value}
            update["jump_to"] = "end"
            return update
        if settlement.exit is Exit.REPLACE and self.exit_behavior == "replace":
            # LangChain's "replace": the offending turns carry the refusal (same ids) and the model runs on them
            # (under the policy's own ``rewrite`` a user turn is answered with the refusal instead, as the wrapper
            # does: there is nothing of it left to answer)
            return self._withhold(covered, verdict, text=settlement.text)
        update = self._withhold(covered, verdict)
        refusal = _refusal(settlement.text, verdict)
        update["messages"].append(refusal)
        update[JUDGED_KEY].append(_key(refusal))
        update["jump_to"] = "end"
        return update

    def _withhold(self, covered: Sequence[BaseMessage], verdict: Verdict, text: str | None = None) -> dict[str, Any]:
        placeholders = [_placeholder(m, verdict, text=text) for m in covered]
        return {"messages": placeholders, JUDGED_KEY: [_key(m) for m in placeholders]}

    def _output_conv(
        self, message: AIMessage, messages: Sequence[BaseMessage], structured: Any = None
    ) -> tuple[Conversation, Stage] | None:
        text = _output_text(message, structured, self.coverage)
        if not text.strip():
            return None
        stage = Stage.TOOL_CALL if message.tool_calls and not message.text.strip() else Stage.OUTPUT
        return Conversation(prompt=last_user_text(messages), response=text), stage

    def _judged_output(self, message: AIMessage, verdict: Verdict, policy: Policy, stage: Stage) -> AIMessage:
        """The message to keep: the original (marked as judged) or the refusal under its id."""
        msg_id = message.id or _new_id()  # the state keeps this id, so the memory's digest matches it
        if (settlement := self._refuses(verdict, stage, policy)) is not None:
            return _refusal(settlement.text, verdict, msg_id=msg_id)
        marked = message.model_copy(deep=False)
        marked.id = msg_id
        marked.response_metadata = {**message.response_metadata, MARKER: _meta(verdict)}
        return marked

    def _tool_message(self, result: ToolMessage, verdict: Verdict, policy: Policy) -> ToolMessage:
        if result.id is None:
            result = result.model_copy(update={"id": _new_id()})
        settlement = self._refuses(verdict, Stage.TOOL_RESULT, policy)
        if settlement is None:
            return result
        # "replace" hands the model the refusal as the result; "end" withholds it and the next before_model ends
        rewrite = settlement.exit is Exit.REPLACE
        meta = {**_meta(verdict), "withheld": not rewrite}
        return ToolMessage(
            content=settlement.text if rewrite else WITHHELD_TOOL_RESULT,
            tool_call_id=result.tool_call_id,
            name=result.name,
            id=result.id,
            status="error",
            response_metadata={MARKER: meta},
        )

    def _system_conv(self, request: ModelRequest) -> Conversation | None:
        """The agent's system prompt to judge, unless this thread judged it already (a repeat is a cache hit)."""
        if not self.check_input or not self.check_system or request.system_message is None:
            return None
        text = core_message(request.system_message).text
        state: dict[str, Any] = dict(request.state) if isinstance(request.state, dict) else {}
        if not text.strip() or _system_key(text) in set(state.get(JUDGED_KEY) or ()):
            return None
        return Conversation(prompt=text)

    # --- before_agent / after_agent --------------------------------------------------------------------------

    def before_agent(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Forget a block an earlier run raised (its turn is already withheld in the state).

        Args:
            state: The agent state.
            runtime: The graph runtime (unused).
        """
        return {PENDING_KEY: None} if dict(state).get(PENDING_KEY) else None

    async def abefore_agent(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """The async twin of :meth:`before_agent`.

        Args:
            state: The agent state.
            runtime: The graph runtime (unused).
        """
        return self.before_agent(state, runtime)

    def after_agent(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Raise the input block ``before_model`` withheld under ``raise_on_block``.

        Args:
            state: The agent state.
            runtime: The graph runtime (unused).
        """
        found = dict(state).get(PENDING_KEY)
        pending: dict[str, Any] | None = found if isinstance(found, dict) else None
        if pending:
            verdict = _stored_verdict(pending["verdict"])
            raise exit_error(verdict, Stage(pending.get("stage", "input")))
        return None

    async def aafter_agent(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """The async twin of :meth:`after_agent`.

        Args:
            state: The agent state.
            runtime: The graph runtime (unused).
        """
        return self.after_agent(state, runtime)

    # --- before_model -------------------------------------------------------------------------------------------

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Judge what reaches the model and was not judged yet; an unsafe turn is withheld and the run ends.

        Args:
            state: The agent state (its ``messages`` and the private memory).
            runtime: The graph runtime (unused).

        Returns:
            None to go on, or a state update (memory, or the withheld turn and a jump to the end).
        """
        plan = self._input_plan(dict(state))
        if plan is None:
            return None
        policy = self._policy()
        if plan[0] == "end":
            return _end_update(answer_for(plan[1], policy, self.outage_message), plan[1], plan[2])
        _, checks, covered = plan
        verdicts = [self._check(c.conversation, policy, c.stage) for c in checks]
        return self._input_update(checks, verdicts, covered, policy)

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """The async twin of :meth:`before_model`.

        Args:
            state: The agent state (its ``messages`` and the private memory).
            runtime: The graph runtime (unused).
        """
        plan = self._input_plan(dict(state))
        if plan is None:
            return None
        policy = self._policy()
        if plan[0] == "end":
            return _end_update(answer_for(plan[1], policy, self.outage_message), plan[1], plan[2])
        _, checks, covered = plan
        verdicts = await asyncio.gather(*(self._acheck(c.conversation, policy, c.stage) for c in checks))
        return self._input_update(checks, verdicts, covered, policy)

    # --- wrap_model_call ----------------------------------------------------------------------------------------

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        """Judge the system prompt, call the model, and judge its message before the model node returns.

        Args:
            request: The model request (its messages give the prompt context).
            handler: Calls the model (and any middleware inside this one).

        Returns:
            The response (with the judged memory), or the same response with the message replaced by the
            refusal under its id.
        """
        policy = self._policy()
        system = self._system_conv(request)
        if system is not None:
            verdict = self._check(system, policy, Stage.INPUT)
            if (settlement := self._refuses(verdict, Stage.INPUT, policy)) is not None:
                return ModelResponse(result=[_refusal(settlement.text, verdict)])
        if not self.check_output:
            return handler(request)
        streamed = self._streams_judged(request)
        with _nostream(self.hold_back_tokens):
            try:
                response = handler(self._held_back(request, streamed))
            except (ContentBlockedError, GuardUnavailableError) as exc:
                return self._streamed_block(exc, streamed, policy, system)
        planned = self._planned_output(response, request)
        if planned is None:
            return response
        message, conv, stage = planned
        refused = _refused_in_stream(message) if streamed else None
        verdict = refused if refused is not None else self._check(conv, policy, stage)
        return self._output_response(response, message, verdict, policy, stage, system)

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        """The async twin of :meth:`wrap_model_call`.

        Args:
            request: The model request (its messages give the prompt context).
            handler: Calls the model (and any middleware inside this one).
        """
        policy = self._policy()
        system = self._system_conv(request)
        if system is not None:
            verdict = await self._acheck(system, policy, Stage.INPUT)
            if (settlement := self._refuses(verdict, Stage.INPUT, policy)) is not None:
                return ModelResponse(result=[_refusal(settlement.text, verdict)])
        if not self.check_output:
            return await handler(request)
        streamed = self._streams_judged(request)
        with _nostream(self.hold_back_tokens):
            try:
                response = await handler(self._held_back(request, streamed))
            except (ContentBlockedError, GuardUnavailableError) as exc:
                return self._streamed_block(exc, streamed, policy, system)
        planned = self._planned_output(response, request)
        if planned is None:
            return response
        message, conv, stage = planned
        refused = _refused_in_stream(message) if streamed else None
        verdict = refused if refused is not None else await self._acheck(conv, policy, stage)
        return self._output_response(response, message, verdict, policy, stage, system)

    def _held_back(self, request: ModelRequest, streamed: bool) -> ModelRequest:
        """The request with the model call's streaming turned off (``stream=False``, the opt-out every chat
        model honours), so no unjudged token reaches a streaming callback such as ``astream_events``.

        When a reader streams the run (``streamed``), the model is also replaced by a guarded chat model that
        judges its output window by window and streams only judged chunks: its own run ignores the
        ``nostream`` tag and ``stream=False`` (they still silence any other model a nested middleware swaps
        in), and the inner model's run stays hidden from stream consumers."""
        if not self.hold_back_tokens:
            return request
        changes: dict[str, Any] = {}
        if "stream" not in request.model_settings:
            changes["model_settings"] = {**request.model_settings, "stream": False}
        if streamed:
            changes["model"] = self._judging_model(request.model)
        return request.override(**changes) if changes else request

    def _streams_judged(self, request: ModelRequest) -> bool:
        """Stream this model call window by window: tokens are held back, the model is a chat model, the call
        does not opt out of streaming, and a stream consumer (messages mode, ``astream_events``) listens."""
        return (
            self.hold_back_tokens
            and isinstance(request.model, BaseChatModel)
            and request.model_settings.get("stream", True) is not False
            and _stream_consumer_attached()
        )

    def _judging_model(self, model: BaseChatModel) -> BaseChatModel:
        from .chat_model import GuardedChatModel

        guarded = GuardedChatModel(
            guard=self.guard,
            inner=model,
            check_input=False,  # the input is this middleware's (before_model)
            policy=self.policy,
            action=self.action,
            refusal=self.refusal,
            outage_message=self.outage_message,
        )
        guarded._for_agent = True
        return guarded

    def _streamed_block(
        self, exc: Exception, streamed: bool, policy: Policy, system: Conversation | None
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        """A block the guarded model raised mid-stream (a policy block, or an outage that carries its verdict):
        raised on under ``raise_on_block``, else the refusal - what the same verdict does without streaming."""
        verdict = getattr(exc, "verdict", None)
        stage = getattr(exc, "stage", Stage.OUTPUT)
        if not streamed or not isinstance(verdict, Verdict) or stage not in (Stage.OUTPUT, Stage.TOOL_CALL):
            raise exc
        settlement = self._refuses(verdict, stage, policy)  # raises for an ``error`` exit (raise_on_block)
        if settlement is None:
            raise exc
        refusal = _refusal(settlement.text, verdict)
        keys = [_key(refusal)]
        if system is not None:
            keys.append(_system_key(system.prompt))
        return _with_memory(ModelResponse(result=[refusal]), keys)

    def _planned_output(
        self, response: Any, request: ModelRequest
    ) -> tuple[AIMessage, Conversation, Stage] | None:
        message = _response_message(response)
        if message is None:
            return None
        planned = self._output_conv(message, list(request.messages), _structured(response))
        return None if planned is None else (message, *planned)

    def _output_response(
        self,
        response: Any,
        message: AIMessage,
        verdict: Verdict,
        policy: Policy,
        stage: Stage,
        system: Conversation | None,
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        kept = self._judged_output(message, verdict, policy, stage)
        replaced = _replace_message(response, message, kept)
        keys = [_key(kept), *(_call_key(c) for c in kept.tool_calls)]
        if system is not None:
            keys.append(_system_key(system.prompt))
        return _with_memory(replaced, keys)

    # --- after_model (safety net) -------------------------------------------------------------------------------

    def _unjudged_output(self, state: dict[str, Any]) -> tuple[AIMessage, Conversation, Stage] | None:
        if not self.check_output:
            return None
        messages = list(state["messages"])
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage) or _key(last) in set(state.get(JUDGED_KEY) or ()):
            return None
        planned = self._output_conv(last, messages)
        return None if planned is None else (last, *planned)

    def _output_update(self, message: AIMessage, verdict: Verdict, policy: Policy, stage: Stage) -> dict[str, Any]:
        kept = self._judged_output(message, verdict, policy, stage)
        update: dict[str, Any] = {
            "messages": [kept],
            JUDGED_KEY: [_key(kept), *(_call_key(c) for c in kept.tool_calls)],
        }
        if kept.response_metadata.get(MARKER, {}).get("refused") and self.exit_behavior != "replace":
            update["jump_to"] = "end"
        return update

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """The safety net: re-judge the last assistant message if it is not the one that was judged.

        Args:
            state: The agent state (its ``messages`` and the private memory).
            runtime: The graph runtime (unused).
        """
        found = self._unjudged_output(dict(state))
        if found is None:
            return None
        message, conv, stage = found
        policy = self._policy()
        return self._output_update(message, self._check(conv, policy, stage), policy, stage)

    @hook_config(can_jump_to=["end"])
    async def aafter_model(self, state: AgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """The async twin of :meth:`after_model`.

        Args:
            state: The agent state (its ``messages`` and the private memory).
            runtime: The graph runtime (unused).
        """
        found = self._unjudged_output(dict(state))
        if found is None:
            return None
        message, conv, stage = found
        policy = self._policy()
        return self._output_update(message, await self._acheck(conv, policy, stage), policy, stage)

    # --- wrap_tool_call -----------------------------------------------------------------------------------------

    def _edited_call(self, request: Any) -> Conversation | None:
        """The tool call as a conversation to judge, when its arguments are not the ones judged at the model."""
        if not self.check_output:
            return None
        call = request.tool_call
        state = request.state if isinstance(request.state, dict) else {}
        key = _call_key(call)
        if key in set(state.get(JUDGED_KEY) or ()):
            return None
        text = ToolCall(str(call.get("name") or ""), call.get("args") or {}).text()
        return Conversation(prompt=last_user_text(list(state.get("messages") or [])), response=text)

    def _result_texts(self, result: Any) -> tuple[list[BaseMessage], str] | None:
        """The messages a tool result brings into the state, and their text to judge (None: nothing to judge)."""
        if isinstance(result, ToolMessage):
            messages: list[BaseMessage] = [result]
        elif isinstance(result, Command) and result.update is not None:
            update = _update_dict(result.update)
            messages = [m for m in update.get("messages") or [] if isinstance(m, BaseMessage)]
        else:
            return None
        text = "\n".join(t for t in (_message_judged_text(m) for m in messages) if t)
        return messages, text

    def _tool_outcome(self, result: Any, messages: list[BaseMessage], verdict: Verdict | None, policy: Policy) -> Any:
        """The result to hand back, with every message it brings judged (and withheld or rewritten if unsafe)."""
        kept = [m if m.id else m.model_copy(update={"id": _new_id()}) for m in messages]
        if verdict is not None:
            kept = [self._tool_message(m, verdict, policy) if isinstance(m, ToolMessage) else m for m in kept]
            if verdict.outcome is not Outcome.PASS:
                kept = [m if isinstance(m, ToolMessage) else _withheld_copy(m) for m in kept]
        keys = [_key(m) for m in kept]
        if isinstance(result, ToolMessage):
            return Command(update={"messages": kept, JUDGED_KEY: keys})
        update = {**_update_dict(result.update), "messages": kept, JUDGED_KEY: keys}
        return Command(graph=result.graph, update=update, resume=result.resume, goto=result.goto)

    def _blocked_call(self, request: Any, verdict: Verdict, policy: Policy) -> Any:
        call_id = request.tool_call.get("id") or ""
        placeholder = ToolMessage(content="", tool_call_id=call_id, name=request.tool_call.get("name"))
        return self._tool_outcome(placeholder, [placeholder], verdict, policy)

    def wrap_tool_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        """Judge an edited tool call before it runs, then the result before the model sees it.

        Args:
            request: The tool call request (its state holds the memory of judged calls).
            handler: Runs the tool.
        """
        policy = self._policy()
        edited = self._edited_call(request)
        if edited is not None:
            verdict = self._check(edited, policy, Stage.TOOL_CALL)
            if self._refuses(verdict, Stage.TOOL_CALL, policy) is not None:
                return self._blocked_call(request, verdict, policy)
        result = handler(request)
        found = self._result_texts(result) if self.check_tool_results else None
        if found is None:
            return result
        messages, text = found
        judged = self._check(Conversation(prompt=text), policy, Stage.TOOL_RESULT) if text.strip() else None
        return self._tool_outcome(result, messages, judged, policy)

    async def awrap_tool_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        """The async twin of :meth:`wrap_tool_call`.

        Args:
            request: The tool call request (its state holds the memory of judged calls).
            handler: Runs the tool.
        """
        policy = self._policy()
        edited = self._edited_call(request)
        if edited is not None:
            verdict = await self._acheck(edited, policy, Stage.TOOL_CALL)
            if self._refuses(verdict, Stage.TOOL_CALL, policy) is not None:
                return self._blocked_call(request, verdict, policy)
        result = await handler(request)
        found = self._result_texts(result) if self.check_tool_results else None
        if found is None:
            return result
        messages, text = found
        judged = await self._acheck(Conversation(prompt=text), policy, Stage.TOOL_RESULT) if text.strip() else None
        return self._tool_outcome(result, messages, judged, policy)

    # --- I/O ----------------------------------------------------------------------------------------------------

    # Each check is its own traced run (langchain.tracing, shared with the wrapper), a child of the agent node that
    # runs the hook; its inputs are sizes only: the judged text is the node's own, already in the trace.

    def _check(self, conv: Conversation, policy: Policy, stage: Stage) -> Verdict:
        (verdict,) = traced_check(self.guard, _check_run(conv, policy, stage), (conv,), _current_config())
        _write_stream(verdict_event(stage, verdict))
        return verdict

    async def _acheck(self, conv: Conversation, policy: Policy, stage: Stage) -> Verdict:
        (verdict,) = await atraced_check(self.guard, _check_run(conv, policy, stage), (conv,), _current_config())
        _write_stream(verdict_event(stage, verdict))
        return verdict


# --- helpers -------------------------------------------------------------------------------------------------------


def _current_config() -> RunnableConfig | None:
    return var_child_runnable_config.get()


def _check_run(conv: Conversation, policy: Policy, stage: Stage) -> CheckRun:
    """A check's run, whose inputs say how much was judged but not what (no text beyond the agent's trace)."""
    inputs = {
        "prompt_chars": len(conv.prompt),
        "response_chars": len(conv.response) if conv.response is not None else None,
        "images": len(conv.images),
    }
    return CheckRun(stage, policy, inputs)


def _error_code(value: Any) -> ErrorCode | None:
    """An outage's code read back from private state (anything unreadable still counts as an outage)."""
    if value is None:
        return None
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.INTERNAL


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


def _stream_consumer_attached() -> bool:
    """True when a stream consumer (LangGraph's messages mode, ``astream_events``) listens to this run."""
    config = var_child_runnable_config.get()
    return any(is_stream_consumer(h) for h in callback_handlers(config.get("callbacks") if config else None))


def _refused_in_stream(message: AIMessage) -> Verdict | None:
    """The verdict of a refusal the guarded model streamed (a ``rewrite`` mid-stream), if the message ends with
    one. Only ever stricter: a model that wrote such metadata itself gets its message refused."""
    meta = message.response_metadata.get(MARKER)
    if not isinstance(meta, dict) or meta.get("safe") is not False:
        return None
    if meta.get("error"):  # an outage answered mid-stream: the middleware answers with its outage message
        return _stored_verdict(meta, user_safe=None, response_safe=None, categories=(), action=Action.BLOCK)
    return _stored_verdict(meta, response_safe=False)


def _stored_verdict(raw: Mapping[str, Any], **known: Any) -> Verdict:
    """A refusing verdict read back from what this middleware stored (private state, or a message's metadata,
    which a caller may forge): only ever stricter - it is never safe, an action it cannot read or one that lets
    text pass is ``block``, an error code it cannot read is ``internal``. ``known`` fixes fields the caller
    knows better than the stored dict."""
    try:
        action = Action(raw.get("action", "block"))
    except ValueError:
        action = Action.BLOCK
    fields: dict[str, Any] = {
        "user_safe": raw.get("user_safe"),
        "response_safe": raw.get("response_safe"),
        "categories": tuple(str(c) for c in raw.get("categories") or ()),
        "action": action if action in (Action.BLOCK, Action.REWRITE) else Action.BLOCK,
        "policy": raw.get("policy"),
        "error": _error_code(raw.get("error")),
        **known,
    }
    return Verdict(safe=False, **fields)


def _write_stream(payload: dict[str, Any]) -> None:
    """Verdicts also reach ``stream_mode="custom"`` consumers of an agent."""
    try:
        from langgraph.config import get_stream_writer

        get_stream_writer()({VERDICT_EVENT: payload})
    except (RuntimeError, KeyError):  # outside a graph run
        return


def _digest(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def _message_judged_text(message: BaseMessage) -> str:
    if isinstance(message, AIMessage):
        return assistant_text(message)
    if isinstance(message, ToolMessage):
        return tool_result_text(message)
    m = core_message(message)
    return "\n".join(p for p in (m.text, *map(str, m.images)) if p)


def _key(message: BaseMessage) -> str:
    """What the memory holds for a judged message: its role, id and content, digested."""
    return "m:" + _digest(message_role(message), message.id or "", _message_judged_text(message))


def _system_key(text: str) -> str:
    return "s:" + _digest(text)


def _new_id() -> str:
    return f"nemoguard-{uuid.uuid4()}"


def _update_dict(update: Any) -> dict[str, Any]:
    """A Command's update as a dict (LangGraph also takes a list of (key, value) pairs)."""
    if isinstance(update, dict):
        return update
    try:
        return dict(update)
    except (TypeError, ValueError):
        return {}


def _call_key(call: Any) -> str:
    """What the memory holds for a judged tool call: its id, name and arguments, digested."""
    name = str(call.get("name") or "")
    return "c:" + _digest(str(call.get("id") or ""), name, serialise(call.get("args") or {}))


def _output_text(message: AIMessage, structured: Any, coverage: CoverageOptions) -> str:
    m = core_message(message)
    parts = [m.text, *(c.text() for c in m.tool_calls)]
    if coverage.check_reasoning:
        parts.append(m.reasoning)
    if structured is not None:
        parts.append(serialise(plain_value(structured)))
    return "\n".join(p for p in parts if p)


def _meta(verdict: Verdict) -> dict[str, Any]:
    return {
        "refused": False,
        "safe": verdict.safe,
        "action": verdict.action.value,
        "categories": list(verdict.categories),
        "error": verdict.error.value if verdict.error else None,
    }


def _refusal(text: str, verdict: Verdict, *, msg_id: str | None = None) -> AIMessage:
    """The answer that stands for a refused text: the policy's refusal, or the outage message."""
    meta = {**_meta(verdict), "refused": True}
    return AIMessage(content=text, id=msg_id or _new_id(), response_metadata={MARKER: meta})


def _placeholder(message: BaseMessage, verdict: Verdict | None = None, *, text: str | None = None) -> BaseMessage:
    """The message with its content withheld, or replaced by ``text`` (same id, so the state replaces it)."""
    meta = {**message.response_metadata, MARKER: _meta(verdict)} if verdict is not None else message.response_metadata
    if isinstance(message, ToolMessage):
        return message.model_copy(update={"content": text or WITHHELD_TOOL_RESULT, "status": "error"})
    if isinstance(message, AIMessage):
        calls = [{**c, "args": {}} for c in message.tool_calls]
        content = text or WITHHELD_INPUT
        return message.model_copy(update={"content": content, "tool_calls": calls, "response_metadata": meta})
    return message.model_copy(update={"content": text or WITHHELD_INPUT, "response_metadata": meta})


def _end_update(text: str, verdict: Verdict, tail: list[BaseMessage]) -> dict[str, Any]:
    refusal = _refusal(text, verdict)
    return {
        "messages": [*tail, refusal],
        JUDGED_KEY: [_key(m) for m in (*tail, refusal)],
        "jump_to": "end",
    }


def _withheld_copy(message: BaseMessage) -> BaseMessage:
    return message.model_copy(update={"content": WITHHELD_TOOL_RESULT})


def _withheld_tool_results(messages: list[BaseMessage]) -> Verdict | None:
    """The verdict behind a withheld tool result among the trailing tool messages, if any.

    Metadata a caller writes can only make this stricter (a forged "withheld" ends the run with a refusal).
    """
    for msg in reversed(messages):
        if not isinstance(msg, ToolMessage):
            return None
        meta = msg.response_metadata.get(MARKER)
        if isinstance(meta, dict) and meta.get("withheld"):
            return _stored_verdict(meta, user_safe=False, response_safe=None, policy=None)
    return None


def _decisive(checks: Sequence[Check], verdicts: Sequence[Verdict]) -> tuple[Check, Verdict] | None:
    from ..core.coverage import decisive

    return decisive(checks, verdicts)


def _response_message(response: Any) -> AIMessage | None:
    if isinstance(response, AIMessage):
        return response
    if isinstance(response, ExtendedModelResponse):
        response = response.model_response
    if isinstance(response, ModelResponse):
        return next((m for m in reversed(response.result) if isinstance(m, AIMessage)), None)
    return None


def _structured(response: Any) -> Any:
    if isinstance(response, ExtendedModelResponse):
        response = response.model_response
    return response.structured_response if isinstance(response, ModelResponse) else None


def _replace_message(
    response: ModelResponse | AIMessage | ExtendedModelResponse,
    old: AIMessage,
    new: AIMessage,
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


def _with_memory(
    response: ModelResponse | AIMessage | ExtendedModelResponse, keys: list[str]
) -> ExtendedModelResponse:
    """The response with a command that adds ``keys`` to the judged memory (merged with any command it had)."""
    if isinstance(response, AIMessage):
        response = ModelResponse(result=[response])
    if isinstance(response, ExtendedModelResponse):
        command = response.command
        if command is not None and isinstance(command.update, dict):
            merged = {**command.update, JUDGED_KEY: _remember(command.update.get(JUDGED_KEY), keys)}
            return ExtendedModelResponse(
                model_response=response.model_response, command=Command(update=merged)
            )
        if command is not None:  # a command we cannot merge into: keep it, memory is only an optimisation
            return response
        response = response.model_response
    return ExtendedModelResponse(model_response=response, command=Command(update={JUDGED_KEY: keys}))


__all__ = [
    "JUDGED_KEY",
    "MARKER",
    "WITHHELD_INPUT",
    "WITHHELD_TOOL_RESULT",
    "NemoGuardMiddleware",
    "NemoGuardState",
]

"""``GuardedChatModel``: a chat model with its input and output checked - still a ``BaseChatModel``.

>>> guarded = guard.wrap(ChatOpenAI(model="gpt-4o-mini"))     # a BaseChatModel: GuardedChatModel
>>> guarded.bind_tools([search]).invoke("...")                  # tool-call arguments judged too
>>> guarded.with_structured_output(Answer).invoke("...")        # the structured answer judged, serialised
>>> create_agent(model=guarded, tools=[search])                 # works like any chat model

Why a chat model and not the plain ``GuardedRunnable``: LangChain code asks a model for ``bind_tools``,
``with_structured_output``, ``profile`` and its tracing parameters, and agents accept only chat models. This
class keeps that surface by delegating it to the inner model, and runs every call through the one guard
machinery of :class:`GuardedRunnable` (the engine below; no check logic lives here):

* the input messages are judged by the core's coverage rule (user turns, system messages, tool results);
* the output is judged - text and tool-call arguments; streamed output window by window through
  ``core.streaming.StreamGuard``, so the chunks this model streams (``stream``, ``astream``,
  ``astream_events`` v2, ``stream_events`` v3, LangGraph's ``stream_mode="messages"``) are judged ones;
* the inner model's own run is hidden from stream consumers (its streaming callback handlers are removed and
  it is tagged ``nostream``): its raw tokens reach tracers, never a reader. With ``StreamOptions(
  pass_through=True)`` (opt-in) nothing is hidden.

``bind_tools(...)`` returns a binding of this guarded model (the tools are formatted by the inner model and
forwarded to it), so a tool call the model produces is judged before the caller sees it.
``with_structured_output(...)`` delegates to the inner model and guards the result: the structured value is
serialised and judged whole (a stream of partial objects is judged once, at its end).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, cast

from langchain_core.caches import BaseCache
from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManagerForChainRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import ensure_config, set_config_context
from langchain_core.runnables.utils import coro_with_context
from langchain_core.tools import BaseTool
from langchain_core.utils.aiter import py_anext
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from ..core.coverage import serialise
from ..core.guard import NemoGuard
from ..core.policy import Policy
from ..core.verdict import Action, ExitBehavior
from ..core.windows import StreamOptions
from .events import NOSTREAM_TAG, callback_handlers, is_stream_consumer
from .messages import assistant_text, plain_value
from .runnable import GuardedRunnable, _aclose, _close, _combine

REFUSAL_KEY = "nemoguard"
"""``response_metadata`` key of a refusal the guard wrote (its verdict); never trusted to mean "judged"."""


_OPENED: ContextVar[list[AsyncIterator[Any]] | None] = ContextVar("nemoguard_opened_streams", default=None)
"""Per call of ``GuardedChatModel.astream`` (a context variable, so nothing is shared between calls): the judged
streams its ``_astream`` opened, closed when the reader stops."""


class GuardedChatModel(BaseChatModel):
    """A chat model whose input and output are checked by a :class:`NemoGuard` (``guard.wrap(chat_model)``).

    A block raises :class:`langchain_nemoguard.ContentBlockedError`; a ``rewrite`` answers with the refusal as
    an ``AIMessage`` (streamed: the refusal is the last chunk). Sampling settings (temperature, ...) belong to
    the inner model: ``guard.wrap(ChatX(temperature=0))``.

    Args:
        guard: The guard that judges.
        inner: The chat model to guard.
        check_input: Check the input messages before the inner model runs.
        check_output: Check the answer (text and tool-call arguments), streamed window by window.
        policy: A ``Policy`` or a name from the guard's policy set; a call may override it with
            ``configurable={"nemoguard_policy": name}``.
        action: One action for every unsafe verdict, instead of the policy's per-category map.
        refusal: The text a ``rewrite`` answers with (default: the policy's).
        parallel: Run the input check beside the inner model; its answer is released only after an allowing
            verdict (a block cancels it).
        stream_options: Hold-back windows for streamed output (alias ``stream``; default: the guard's).
        exit_behavior: What a block does (``"end"`` | ``"error"`` | ``"replace"``), as for
            :class:`GuardedRunnable` (None: the policy's actions decide).
        outage_message: What an answer says when the guard gave no verdict and the exit is not ``"error"``
            (default: the outage message of :class:`GuardedRunnable`; never the policy's refusal).
        cache: LangChain's model cache for the *guarded* answer: off (False) by default, because a cached
            answer would skip the checks of this call (its policy may differ); the inner model may cache.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, extra="forbid")

    guard: NemoGuard
    inner: BaseChatModel
    check_input: bool = True
    check_output: bool = True
    policy: Policy | str | None = None
    action: Action | None = None
    refusal: str | None = None
    parallel: bool = False
    stream_options: StreamOptions | None = Field(default=None, alias="stream")
    exit_behavior: ExitBehavior | None = None
    outage_message: str | None = None
    cache: BaseCache | bool | None = False

    # Set only by NemoGuardMiddleware: the agent's model call comes with ``stream=False`` and a ``nostream``
    # tag (so that any *other* model a nested middleware swaps in stays silent); this guarded model ignores
    # both for its own run, whose chunks are judged ones.
    _for_agent: bool = PrivateAttr(default=False)
    _engine: GuardedRunnable[Any, Any] = PrivateAttr()

    @field_validator("stream_options", mode="before")
    @classmethod
    def _stream_options(cls, value: Any) -> Any:
        return StreamOptions(**value) if isinstance(value, Mapping) else value

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        if self.profile is None:
            self.profile = self.inner.profile
        self._engine = _engine_for(self, _hidden(self.inner, self._hides()))

    def _hides(self) -> bool:
        options = self.stream_options or self.guard.stream_options
        return self.check_output and not options.pass_through

    def _settings(self) -> dict[str, Any]:
        """The guard settings, as ``GuardedRunnable`` takes them (for the engine and for wrapped bindings)."""
        return {
            "guard": self.guard,
            "check_input": self.check_input,
            "check_output": self.check_output,
            "policy": self.policy,
            "action": self.action,
            "exit_behavior": self.exit_behavior,  # its meaning lives in GuardedRunnable
            "refusal": self.refusal,
            "outage_message": self.outage_message,
            "parallel": self.parallel,
            "stream_options": self.stream_options,
        }

    # --- what LangChain asks a chat model ----------------------------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return self.inner._llm_type

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**self.inner._identifying_params, "nemoguard_policy": _policy_name(self.policy)}

    @property
    def model_name(self) -> str | None:
        """The inner model's name (what ``create_agent`` reads to choose a structured-output strategy)."""
        for attr in ("model_name", "model", "model_id"):
            value = getattr(self.inner, attr, None)
            if isinstance(value, str):
                return value
        return None

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self.inner._get_ls_params(stop=stop, **kwargs)

    def bind_tools(
        self,
        tools: Sequence[builtins.dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The inner model's ``bind_tools``, kept behind the guard: the tool calls it produces are judged.

        Args:
            tools: The tools, in any form the inner model accepts.
            tool_choice: Which tool the model must call (as the inner model understands it).
            **kwargs: Further settings of the inner model's ``bind_tools``.
        """
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self._rebind(self.inner.bind_tools(tools, **kwargs))

    def with_structured_output(
        self, schema: builtins.dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, builtins.dict[str, Any] | Any]:
        """The inner model's structured output, guarded: the input judged, the structured value judged whole.

        Args:
            schema: The output schema (a pydantic class, a TypedDict, a JSON schema...).
            include_raw: Also return the raw message (judged with the value).
            **kwargs: The inner model's options (``method``, ``strict``, ...).
        """
        structured = self.inner.with_structured_output(schema, include_raw=include_raw, **kwargs)
        return GuardedStructuredOutput(inner=_hidden(structured, self._hides()), **self._settings())

    def _rebind(self, bound: Runnable[Any, Any]) -> Runnable[Any, Any]:
        """``bound`` (the inner model with settings) as the same settings on this guarded model."""
        if bound is self.inner:
            return self
        if isinstance(bound, RunnableBinding) and bound.bound is self.inner:
            return RunnableBinding(
                bound=self,
                kwargs=bound.kwargs,
                config=bound.config,
                config_factories=bound.config_factories,
                custom_input_type=bound.custom_input_type,
                custom_output_type=bound.custom_output_type,
            )
        if isinstance(bound, BaseChatModel):
            return self.model_copy(update={"inner": bound}, deep=False)._fresh()
        # something else (a chain the inner model built): still guarded, as a runnable
        return GuardedRunnable(inner=_hidden(bound, self._hides()), **self._settings())

    def _fresh(self) -> GuardedChatModel:
        self._engine = _engine_for(self, _hidden(self.inner, self._hides()))
        return self

    # --- calls -------------------------------------------------------------------------------------------------

    # The public methods make the caller's config the current one while this model runs: BaseChatModel does
    # not hand its ``_stream`` a run manager, and the engine needs the caller's callbacks for its checks.

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        own = self._own_config(config)
        with set_config_context(own) as ctx:
            return ctx.run(super().invoke, input, own, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        own = self._own_config(config)
        with set_config_context(own) as ctx:
            return await coro_with_context(super().ainvoke(input, own, stop=stop, **kwargs), ctx)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        own = self._own_config(config)
        with set_config_context(own) as ctx:
            items = super().stream(input, own, stop=stop, **kwargs)
            try:
                while True:
                    try:
                        chunk = ctx.run(next, items)
                    except StopIteration:
                        return
                    yield chunk
            finally:
                ctx.run(_close, items)

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        own = self._own_config(config)
        opened: list[AsyncIterator[Any]] = []
        with set_config_context(own) as ctx:
            ctx.run(_OPENED.set, opened)
            items = super().astream(input, own, stop=stop, **kwargs)
            try:
                while True:
                    try:
                        chunk = await coro_with_context(cast("Awaitable[AIMessageChunk]", py_anext(items)), ctx)
                    except StopAsyncIteration:
                        return
                    yield chunk
            finally:
                await coro_with_context(_aclose(items), ctx)
                # BaseChatModel.astream leaves our _astream to the event loop's async-generator finaliser (later);
                # the judged stream, and with it the inner model's, is closed now
                for stream in opened:
                    await coro_with_context(_aclose(stream), ctx)

    def _own_config(self, config: RunnableConfig | None) -> RunnableConfig:
        config = ensure_config(config)
        if not self._for_agent:
            return config
        tags = [t for t in config.get("tags") or [] if t != NOSTREAM_TAG]
        return RunnableConfig(**{**config, "tags": tags})

    def _streaming_disabled(self, **kwargs: Any) -> bool:
        if self._for_agent:
            kwargs.pop("stream", None)
        return super()._streaming_disabled(**kwargs)

    def _inner_kwargs(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._for_agent:
            kwargs.pop("stream", None)  # the inner run is hidden instead
        return {**kwargs, "stop": stop} if stop is not None else kwargs

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = _engine_config()
        out = self._engine._invoke(messages, _as_chain(run_manager), config, **self._inner_kwargs(stop, kwargs))
        return ChatResult(generations=[ChatGeneration(message=_message(out))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = _engine_config()
        out = await self._engine._ainvoke(
            messages, _as_achain(run_manager), config, **self._inner_kwargs(stop, kwargs)
        )
        return ChatResult(generations=[ChatGeneration(message=_message(out))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        config = _engine_config()
        items = self._engine._transform(
            iter([messages]), _as_chain(run_manager), config, **self._inner_kwargs(stop, kwargs)
        )
        try:
            for item in items:
                yield ChatGenerationChunk(message=_chunk(item))
        finally:
            _close(items)  # an early stop closes the inner stream at once

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        config = _engine_config()

        async def one() -> AsyncIterator[Any]:
            yield messages

        items = self._engine._atransform(
            one(), _as_achain(run_manager), config, **self._inner_kwargs(stop, kwargs)
        )
        opened = _OPENED.get()
        if opened is not None:
            opened.append(items)
        try:
            async for item in items:
                yield ChatGenerationChunk(message=_chunk(item))
        finally:
            await _aclose(items)


class GuardedStructuredOutput(GuardedRunnable[Any, Any]):
    """What ``GuardedChatModel.with_structured_output`` returns: the structured value serialised and judged.

    The value is judged whole (as sorted JSON, the coverage rule's reading of structured output), with the
    raw message when ``include_raw=True``. A stream of partial objects is judged once, when complete, and
    released as one value: a partial object cannot be judged window by window.
    """

    def _judged_output(self, out: Any) -> str:
        return structured_text(out, reasoning=self.guard.coverage.check_reasoning)

    def _transform(
        self,
        input: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Iterator[Any]:
        yield self._invoke(_combine(input), run_manager, config, **kwargs)

    async def _atransform(
        self,
        input: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        collected = [c async for c in input]
        yield await self._ainvoke(_combine(iter(collected)), run_manager, config, **kwargs)


def structured_text(value: Any, *, reasoning: bool = False) -> str:
    """The judged text of a structured answer: the value serialised (sorted JSON), plus the raw message's text
    for ``include_raw=True`` answers (``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}``); ``reasoning``
    (the coverage rule's ``check_reasoning``) adds the raw message's reasoning, which reaches the caller too."""
    if isinstance(value, BaseMessage):
        return assistant_text(value, reasoning=reasoning)
    if isinstance(value, Mapping) and "raw" in value and "parsed" in value:
        raw = value["raw"]
        parts = [
            assistant_text(raw, reasoning=reasoning) if isinstance(raw, BaseMessage) else serialise(plain_value(raw))
        ]
        if value["parsed"] is not None:
            parts.append(serialise(plain_value(value["parsed"])))
        return "\n".join(p for p in parts if p)
    return serialise(plain_value(value)) if value is not None else ""


# --- the engine and its hidden inner -----------------------------------------------------------------------------


class _Hidden(Runnable[Any, Any]):
    """The inner runnable with its run hidden from stream consumers (``astream_events``, LangGraph's messages
    and v3 event streams): their callback handlers are removed for its run; tracers keep it."""

    def __init__(self, inner: Runnable[Any, Any]) -> None:
        self.inner = inner
        self.name = inner.get_name()

    @property
    def InputType(self) -> Any:
        return self.inner.InputType

    @property
    def OutputType(self) -> Any:
        return self.inner.OutputType

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.inner.invoke(input, _unstreamed(config), **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self.inner.ainvoke(input, _unstreamed(config), **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self.inner.stream(input, _unstreamed(config), **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for chunk in self.inner.astream(input, _unstreamed(config), **kwargs):
            yield chunk


def _hidden(inner: Runnable[Any, Any], hide: bool) -> Runnable[Any, Any]:
    return _Hidden(inner) if hide else inner


def _unstreamed(config: RunnableConfig | None) -> RunnableConfig:
    config = ensure_config(config)
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        for handler in callback_handlers(manager):
            if is_stream_consumer(handler):
                manager.remove_handler(handler)
        return RunnableConfig(**{**config, "callbacks": manager})
    if isinstance(callbacks, list):
        kept = [h for h in callbacks if not is_stream_consumer(h)]
        return RunnableConfig(**{**config, "callbacks": kept})
    return config


def _engine_for(model: GuardedChatModel, inner: Runnable[Any, Any]) -> GuardedRunnable[Any, Any]:
    return GuardedRunnable(inner=inner, **model._settings())


def _engine_config() -> RunnableConfig:
    """The engine's config: the caller's callbacks and ``configurable`` (set as the current config by this
    model's public methods), so the checks and the inner model's run sit beside this model's own run."""
    outer = ensure_config()
    config = RunnableConfig(configurable=dict(outer.get("configurable") or {}))
    if outer.get("callbacks") is not None:
        config["callbacks"] = outer["callbacks"]
    return config


def _as_chain(run_manager: CallbackManagerForLLMRun | None) -> CallbackManagerForChainRun:
    # the engine's loops take a run manager for their signature only; its checks open their own runs
    return run_manager  # type: ignore[return-value]


def _as_achain(run_manager: AsyncCallbackManagerForLLMRun | None) -> AsyncCallbackManagerForChainRun:
    return run_manager  # type: ignore[return-value]


def _message(out: Any) -> AIMessage:
    if isinstance(out, AIMessage):
        return out
    if isinstance(out, str):
        return AIMessage(content=out)
    raise TypeError(f"the inner chat model returned a {type(out).__name__}, not a message")


def _chunk(item: Any) -> AIMessageChunk:
    if isinstance(item, AIMessageChunk):
        if REFUSAL_KEY in item.response_metadata and item.chunk_position is None:
            # the engine's refusal ends the stream: no empty closing chunk after it
            return item.model_copy(update={"chunk_position": "last"})
        return item
    if isinstance(item, AIMessage):
        return AIMessageChunk(content=item.content, id=item.id, response_metadata=item.response_metadata)
    if isinstance(item, str):
        return AIMessageChunk(content=item)
    raise TypeError(f"the inner chat model streamed a {type(item).__name__}, not a message chunk")


def _policy_name(policy: Policy | str | None) -> str | None:
    return policy.name if isinstance(policy, Policy) else policy


__all__ = ["GuardedChatModel", "GuardedStructuredOutput", "structured_text"]

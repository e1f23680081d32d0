"""``GuardedRunnable``: any LangChain runnable with its input and output checked by a :class:`NemoGuard`.

>>> guarded = guard.wrap(prompt | model)                       # or GuardedRunnable(guard=guard, inner=...)
>>> guarded.invoke({"question": "..."})                         # raises ContentBlockedError on a block
>>> guarded.with_config(configurable={"nemoguard_policy": "kids"}).invoke(...)

How a call runs:

1. the user turn is read from the input (``langchain.messages``) and checked (``Stage.INPUT``); with
   ``parallel=True`` the inner runnable starts at the same time and its result is released only after an
   allowing verdict (a block cancels it);
2. the inner runnable runs with two extra tags: ``nostream`` (LangGraph's ``stream_mode="messages"`` then
   waits for the node's checked output instead of streaming raw tokens) and ``nemoguard:unchecked`` (so
   ``astream_events`` consumers can drop the inner model's raw token events with ``exclude_tags``);
3. the output (text and tool-call arguments) is checked: whole for ``invoke``, window by window for streams
   (``core.streaming.StreamGuard`` holds every chunk back until its window is judged).

Each check is its own traced run (``NemoGuard:input`` / ``NemoGuard:output``) whose outputs and metadata
carry the verdict, and it dispatches a ``nemoguard_verdict`` custom event. The guard's own model call is an
HTTP request, not a LangChain model, so it emits no chat-model events of any kind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar, cast

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import ContextThreadPoolExecutor
from langchain_core.runnables.retry import ExponentialJitterParams
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import ConfigDict, Field, field_validator, model_validator

from ..core.conversation import Conversation
from ..core.errors import ContentBlockedError, InvalidInputError, Stage
from ..core.guard import NemoGuard
from ..core.policy import Policy
from ..core.streaming import StreamGuard, StreamRefusal
from ..core.verdict import Action, ExitBehavior, Outcome, Verdict, settle
from ..core.windows import StreamOptions
from .events import (
    NOSTREAM_TAG,
    POLICY_CONFIG_KEY,
    UNCHECKED_TAG,
    answer_text,
    exits_conflict,
    policy_for_run,
    public_verdict,
)
from .messages import OUTPUT_KEYS, chunk_text, conversation_from_input, input_conversations_from, output_text
from .tracing import (
    CheckRun as _Check,
)
from .tracing import (
    aend_check,
    areport_check,
    astart_check,
    atraced_check,
    end_check,
    report_check,
    start_check,
    traced_check,
)

if TYPE_CHECKING:
    from .chat_model import GuardedChatModel


Input = TypeVar("Input")
Output = TypeVar("Output")


class GuardedRunnable(RunnableSerializable[Input, Output]):
    """A runnable whose input and output are checked by a :class:`NemoGuard` (``guard.wrap(runnable)``).

    Generic in the inner runnable's input and output: ``guard.wrap(chain)`` of a ``Runnable[str, str]`` is a
    ``GuardedRunnable[str, str]`` (a refusal keeps the output's shape). Unknown settings are refused.

    A block raises :class:`langchain_nemoguard.ContentBlockedError`; a ``rewrite`` answers with the refusal in
    the shape of the inner runnable's output. An outage under ``on_error="block"`` raises
    :class:`langchain_nemoguard.GuardUnavailableError` (never a ``ContentBlockedError``), so
    ``with_fallbacks(..., exceptions_to_handle=(GuardUnavailableError,))`` falls back only when the guard is down;
    ``with_retry()`` never retries a block unless the caller names ``ContentBlockedError``.

    Args:
        guard: The guard that judges.
        inner: The runnable to guard (a callable is wrapped in ``RunnableLambda``).
        check_input: Check the user turn before the inner runnable runs.
        check_output: Check the output (text and tool-call arguments), streamed window by window.
        policy: A ``Policy`` or a name from the guard's policy set; a call may override it with
            ``configurable={"nemoguard_policy": name}``.
        action: One action for every unsafe verdict, instead of the policy's per-category map.
        exit_behavior: LangChain's moderation convention (as ``OpenAIModerationMiddleware``) for every enforced
            verdict (``block`` or ``rewrite``, and an outage under ``on_error="block"``): ``"error"`` raises,
            ``"end"`` and ``"replace"`` answer with the refusal (or, for an outage, ``outage_message``) in the
            output's shape. None (default) keeps the policy's map: ``block`` raises, ``rewrite`` answers. A
            ``log`` category still passes. Giving both ``action`` and ``exit_behavior`` is a ``TypeError``.
        refusal: The text a ``rewrite`` answers with (default: the policy's).
        outage_message: What an answer says when the guard gave no verdict (default
            ``DEFAULT_OUTAGE_MESSAGE``; never the policy's refusal, never an endpoint).
        parallel: Run the input check beside the inner runnable; its result is released only after an
            allowing verdict (a block cancels it).
        stream_options: Hold-back windows for streamed output (alias ``stream``; default: the guard's).
        input_key: Where the user turn is in a dict input when it is not ``messages`` or a usual key.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, extra="forbid")

    guard: NemoGuard
    inner: Runnable[Input, Output]
    check_input: bool = True
    check_output: bool = True
    policy: Policy | str | None = None
    action: Action | None = None
    exit_behavior: ExitBehavior | None = None
    refusal: str | None = None
    outage_message: str | None = None
    parallel: bool = False
    stream_options: StreamOptions | None = Field(default=None, alias="stream")
    input_key: str | None = None

    @model_validator(mode="after")
    def _one_way_to_enforce(self) -> GuardedRunnable[Input, Output]:
        if self.action is not None and self.exit_behavior is not None:
            raise TypeError(exits_conflict("action"))
        return self

    @field_validator("stream_options", mode="before")
    @classmethod
    def _stream_options(cls, value: Any) -> Any:
        return StreamOptions(**value) if isinstance(value, Mapping) else value

    @field_validator("inner", mode="before")
    @classmethod
    def _coerce_inner(cls, value: Any) -> Any:
        if isinstance(value, Runnable):
            return value
        if callable(value):
            from langchain_core.runnables import RunnableLambda

            return RunnableLambda(value)
        raise TypeError(f"inner must be a Runnable or a callable, got {type(value).__name__}")

    @classmethod
    def for_runnable(
        cls, runnable: Any, *, input_key: str | None = None, **settings: Any
    ) -> GuardedRunnable[Any, Any] | GuardedChatModel:
        """What ``guard.wrap`` builds: a ``GuardedChatModel`` for a chat model, else a ``GuardedRunnable``."""
        from langchain_core.language_models import BaseChatModel

        if isinstance(runnable, BaseChatModel):
            from .chat_model import GuardedChatModel

            if input_key is not None:
                raise TypeError("input_key does not apply to a chat model: its input is messages")
            return GuardedChatModel(inner=runnable, **settings)
        return cls(inner=runnable, input_key=input_key, **settings)

    # --- Runnable surface ------------------------------------------------------------------------------------

    @property
    def InputType(self) -> Any:
        return self.inner.InputType

    @property
    def OutputType(self) -> Any:
        return self.inner.OutputType

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        own = ConfigurableFieldSpec(
            id=POLICY_CONFIG_KEY,
            annotation=str | None,
            name="NeMoGuard policy",
            description="Name of the policy (from the guard's policy set) to apply to this call.",
            default=None,
            is_shared=True,
        )
        return [*self.inner.config_specs, own]

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def ainvoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    def stream(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Output]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        async def one() -> AsyncIterator[Input]:
            yield input

        stream = self.atransform(one(), config, **kwargs)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await _aclose(stream)  # a reader's aclose() reaches the inner stream now, not when collected

    def transform(
        self, input: Iterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        yield from self._transform_stream_with_config(input, self._transform, config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        stream = self._atransform_stream_with_config(input, self._atransform, config, **kwargs)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await _aclose(stream)

    # --- shared decisions ------------------------------------------------------------------------------------

    def effective_policy(self, config: RunnableConfig | None = None) -> Policy:
        """The policy for one call: ``configurable`` beats the argument; action/refusal overrides applied."""
        return policy_for_run(self.guard, self.policy, self.action, self.refusal, config)

    def _options(self) -> StreamOptions:
        return self.stream_options or self.guard.stream_options

    def _input(self, value: Any) -> tuple[tuple[Conversation, ...] | None, str]:
        """The conversations to check (the core's coverage rule; None when input checks are off) and the prompt
        text for output checks."""
        convs = None
        if self.check_input:
            convs = input_conversations_from(value, input_key=self.input_key, options=self.guard.coverage)
        try:
            return convs, conversation_from_input(value, input_key=self.input_key).prompt
        except InvalidInputError:
            if convs is None:
                return None, ""  # output checks then judge the response without its prompt
            return convs, ""  # e.g. only a system message: judged, and no user prompt to give as context

    def _inner_config(self, config: RunnableConfig) -> RunnableConfig:
        if not self.check_output or self._options().pass_through:
            return config
        tags = [t for t in (NOSTREAM_TAG, UNCHECKED_TAG) if t not in (config.get("tags") or [])]
        return RunnableConfig(**{**config, "tags": [*(config.get("tags") or []), *tags]}) if tags else config

    def _answer(self, verdict: Verdict, stage: Stage, policy: Policy) -> str | None:
        """None: go on. A string: answer with it (the refusal, or the outage message). Raises for an ``error``
        exit: :class:`ContentBlockedError` for a policy block, :class:`GuardUnavailableError` for an outage."""
        settlement = settle(
            verdict, policy, exit_behavior=self.exit_behavior, block="error", outage_message=self.outage_message
        )
        return answer_text(settlement, stage)

    def _stream_decision(self, stage: Stage, policy: Policy) -> Callable[[Verdict], StreamRefusal | None]:
        """:meth:`_answer` as a stream loop wants it: None, or the refusal to end the stream with."""

        def decide(verdict: Verdict) -> StreamRefusal | None:
            text = self._answer(verdict, stage, policy)
            return None if text is None else StreamRefusal(text, verdict)

        return decide

    def with_retry(
        self,
        *,
        retry_if_exception_type: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (Exception,),
        wait_exponential_jitter: bool = True,
        exponential_jitter_params: ExponentialJitterParams | None = None,
        stop_after_attempt: int = 3,
    ) -> Runnable[Any, Any]:
        """``Runnable.with_retry``, except that a policy block is never retried unless asked for.

        A block is a decision, and the same input gets the same decision: retrying it only repeats the inner
        call and the checks. So a tuple of exception types (the default ``(Exception,)`` included) retries what
        it names *except* :class:`ContentBlockedError`, unless ``ContentBlockedError`` (or a subclass) is in the
        tuple itself. An outage (:class:`GuardUnavailableError`) is retried like any other exception. A callable
        ``retry_if_exception_type`` is the caller's own rule and is used as given.
        """
        retry_on = retry_if_exception_type
        if not callable(retry_on):
            retry_on = _not_blocks(tuple(retry_on))
        return super().with_retry(
            retry_if_exception_type=retry_on,
            wait_exponential_jitter=wait_exponential_jitter,
            exponential_jitter_params=exponential_jitter_params,
            stop_after_attempt=stop_after_attempt,
        )

    def _outputs_str(self) -> bool:
        try:
            return self.inner.OutputType is str
        except Exception:  # some runnables cannot infer a type; messages are the common case
            return False

    def _refusal_like(self, like: Any, text: str, verdict: Verdict, *, chunk: bool) -> Any:
        """The refusal in the shape of ``like`` (an output, an output chunk, or None: infer from the type)."""
        if like is None and self._outputs_str():
            like = ""
        if isinstance(like, str):
            return text
        meta = {"nemoguard": public_verdict(verdict).to_dict()}
        if isinstance(like, Mapping):
            if "messages" in like and isinstance(like["messages"], Sequence):
                msgs = list(like["messages"])
                last = next((i for i in range(len(msgs) - 1, -1, -1) if isinstance(msgs[i], AIMessage)), None)
                refusal = AIMessage(content=text, id=msgs[last].id if last is not None else None)
                refusal.response_metadata.update(meta)
                if last is None:
                    msgs.append(refusal)
                else:
                    msgs[last] = refusal
                return {**like, "messages": msgs}
            key = next((k for k in OUTPUT_KEYS if k in like), "output")
            return {**like, key: text}
        msg_id = like.id if isinstance(like, BaseMessage) else None
        cls = AIMessageChunk if chunk else AIMessage
        return cls(content=text, id=msg_id, response_metadata=meta)

    def _chunk_text(self, chunk: Any) -> str:
        """A streamed chunk's judged text (reasoning included when the coverage rule judges reasoning)."""
        return chunk_text(chunk, reasoning=self.guard.coverage.check_reasoning)

    def _judged_output(self, out: Any) -> str:
        """The text an output check judges (the coverage rule's reading of the output)."""
        return output_text(out, reasoning=self.guard.coverage.check_reasoning)

    def _output_check(self, out: Any, prompt: str, policy: Policy) -> tuple[_Check, Conversation] | None:
        text = self._judged_output(out)
        if not self.check_output or not text.strip():
            return None
        has_calls = isinstance(out, AIMessage) and bool(out.tool_calls)
        stage = Stage.TOOL_CALL if has_calls and not out.text.strip() else Stage.OUTPUT
        conv = Conversation(prompt=prompt, response=text)
        return _Check(stage, policy, {"prompt": prompt, "response": text}), conv

    # --- traced checks (langchain.tracing; shared with the middleware) ---------------------------------------

    def _check(
        self, check: _Check, conv: Conversation | tuple[Conversation, ...], config: RunnableConfig
    ) -> Verdict:
        convs = conv if isinstance(conv, tuple) else (conv,)
        return _decisive(traced_check(self.guard, check, convs, config))

    async def _acheck(
        self, check: _Check, conv: Conversation | tuple[Conversation, ...], config: RunnableConfig
    ) -> Verdict:
        convs = conv if isinstance(conv, tuple) else (conv,)
        return _decisive(await atraced_check(self.guard, check, convs, config))

    def _input_check(self, convs: tuple[Conversation, ...], policy: Policy) -> _Check:
        first = convs[0]
        return _Check(
            Stage.INPUT, policy, {"prompt": first.prompt, "images": len(first.images), "checks": len(convs)}
        )

    # --- invoke ----------------------------------------------------------------------------------------------

    def _invoke(
        self, input: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig, **kwargs: Any
    ) -> Any:
        policy = self.effective_policy(config)
        conv, prompt = self._input(input)
        inner_config = self._inner_config(config)
        if conv is None:
            out = self.inner.invoke(input, inner_config, **kwargs)
        elif self.parallel:
            executor = ContextThreadPoolExecutor(max_workers=1, thread_name_prefix="nemoguard-inner")
            try:
                future = executor.submit(self.inner.invoke, input, inner_config, **kwargs)
                try:
                    verdict = self._check(self._input_check(conv, policy), conv, config)
                    text = self._answer(verdict, Stage.INPUT, policy)
                except BaseException:
                    future.cancel()  # a started sync call cannot be interrupted; its result is discarded
                    raise
                if text is not None:
                    future.cancel()
                    return self._refusal_like(None, text, verdict, chunk=False)
                out = future.result()
            finally:
                executor.shutdown(wait=False, cancel_futures=True)
        else:
            verdict = self._check(self._input_check(conv, policy), conv, config)
            if (text := self._answer(verdict, Stage.INPUT, policy)) is not None:
                return self._refusal_like(None, text, verdict, chunk=False)
            out = self.inner.invoke(input, inner_config, **kwargs)
        planned = self._output_check(out, prompt, policy)
        if planned is None:
            return out
        check, out_conv = planned
        verdict = self._check(check, out_conv, config)
        if (text := self._answer(verdict, check.stage, policy)) is not None:
            return self._refusal_like(out, text, verdict, chunk=False)
        return out

    async def _ainvoke(
        self,
        input: Any,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Any:
        policy = self.effective_policy(config)
        conv, prompt = self._input(input)
        inner_config = self._inner_config(config)
        if conv is None:
            out = await self.inner.ainvoke(input, inner_config, **kwargs)
        elif self.parallel:
            task = asyncio.ensure_future(self.inner.ainvoke(input, inner_config, **kwargs))
            try:
                verdict = await self._acheck(self._input_check(conv, policy), conv, config)
                if (text := self._answer(verdict, Stage.INPUT, policy)) is not None:
                    return self._refusal_like(None, text, verdict, chunk=False)
                out = await task
            finally:
                await _cancel(task)
        else:
            verdict = await self._acheck(self._input_check(conv, policy), conv, config)
            if (text := self._answer(verdict, Stage.INPUT, policy)) is not None:
                return self._refusal_like(None, text, verdict, chunk=False)
            out = await self.inner.ainvoke(input, inner_config, **kwargs)
        planned = self._output_check(out, prompt, policy)
        if planned is None:
            return out
        check, out_conv = planned
        verdict = await self._acheck(check, out_conv, config)
        if (text := self._answer(verdict, check.stage, policy)) is not None:
            return self._refusal_like(out, text, verdict, chunk=False)
        return out

    # --- streams ---------------------------------------------------------------------------------------------

    def _stream_guard(self, prompt: str, policy: Policy) -> StreamGuard[Any]:
        return StreamGuard(
            self.guard,
            prompt=prompt,
            policy=policy,
            options=self._options(),
            stage=Stage.OUTPUT,
            decide=self._stream_decision(Stage.OUTPUT, policy),  # raises the adapter's own errors
        )

    def _transform(
        self,
        input: Iterator[Any],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> Iterator[Any]:
        value = _combine(input)
        policy = self.effective_policy(config)
        conv, prompt = self._input(value)
        inner_config = self._inner_config(config)
        future: Future[Verdict] | None = None
        executor: ContextThreadPoolExecutor | None = None
        seen = _FirstChunk()
        try:
            if conv is not None and self.parallel:
                executor = ContextThreadPoolExecutor(max_workers=1, thread_name_prefix="nemoguard-check")
                future = executor.submit(self._check, self._input_check(conv, policy), conv, config)
            elif conv is not None:
                verdict = self._check(self._input_check(conv, policy), conv, config)
                if (text := self._answer(verdict, Stage.INPUT, policy)) is not None:
                    yield self._refusal_like(None, text, verdict, chunk=True)
                    return
            items: Iterator[Any] = seen.watch(self.inner.stream(value, inner_config, **kwargs))
            check: _Check | None = None
            if self.check_output:
                sg = self._stream_guard(prompt, policy)
                check = _Check(Stage.OUTPUT, policy, {"prompt": prompt, "streamed": True})
                items = self._reported(sg, check, sg.iter(items, self._chunk_text), config)
            if future is not None:
                items = _gate(items, future, self._stream_decision(Stage.INPUT, policy))
            try:
                for item in items:
                    if isinstance(item, StreamRefusal):
                        yield self._refusal_like(seen.chunk, item.text, item.verdict, chunk=True)
                        return
                    yield item
            finally:
                _close(items)  # a consumer that stopped reading closes the inner stream now, not at GC
        finally:
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    def _reported(
        self, sg: StreamGuard[Any], check: _Check, items: Iterator[Any], config: RunnableConfig
    ) -> Iterator[Any]:
        """Trace the stream's output check as one run; dispatch an event per judged window."""
        rm = start_check(check, config)
        error: BaseException | None = None
        try:
            yield from _flush_verdicts(sg, check, items, lambda v: report_check(check, v, rm))
        except BaseException as exc:
            error = exc
            raise
        finally:
            for v in sg.verdicts[len(check.verdicts) :]:
                report_check(check, v, rm)
            end_check(check, rm, error if not isinstance(error, GeneratorExit) else None)

    async def _atransform(
        self,
        input: AsyncIterator[Any],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        value = await _acombine(input)
        policy = self.effective_policy(config)
        conv, prompt = self._input(value)
        inner_config = self._inner_config(config)
        task: asyncio.Task[Verdict] | None = None
        seen = _FirstChunk()
        try:
            if conv is not None and self.parallel:
                task = asyncio.ensure_future(self._acheck(self._input_check(conv, policy), conv, config))
            elif conv is not None:
                verdict = await self._acheck(self._input_check(conv, policy), conv, config)
                if (text := self._answer(verdict, Stage.INPUT, policy)) is not None:
                    yield self._refusal_like(None, text, verdict, chunk=True)
                    return
            items: AsyncIterator[Any] = seen.awatch(self.inner.astream(value, inner_config, **kwargs))
            if self.check_output:
                sg = self._stream_guard(prompt, policy)
                check = _Check(Stage.OUTPUT, policy, {"prompt": prompt, "streamed": True})
                items = self._areported(sg, check, sg.aiter(items, self._chunk_text), config)
            if task is not None:
                items = _agate(items, task, self._stream_decision(Stage.INPUT, policy))
            try:
                async for item in items:
                    if isinstance(item, StreamRefusal):
                        yield self._refusal_like(seen.chunk, item.text, item.verdict, chunk=True)
                        return
                    yield item
            finally:
                await _aclose(items)
        finally:
            if task is not None:
                await _cancel(task)

    async def _areported(
        self, sg: StreamGuard[Any], check: _Check, items: AsyncIterator[Any], config: RunnableConfig
    ) -> AsyncIterator[Any]:
        rm = await astart_check(check, config)
        error: BaseException | None = None
        try:
            async for item in items:
                for v in sg.verdicts[len(check.verdicts) :]:
                    await areport_check(check, v, rm)
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            with contextlib.suppress(Exception):
                await _aclose(items)
            for v in sg.verdicts[len(check.verdicts) :]:
                await areport_check(check, v, rm)
            await aend_check(check, rm, error if not isinstance(error, GeneratorExit) else None)


# --- helpers -----------------------------------------------------------------------------------------------------


class _FirstChunk:
    """Remembers the first chunk the inner runnable produced, so a refusal can take the same shape."""

    __slots__ = ("chunk",)

    def __init__(self) -> None:
        self.chunk: Any = None

    def watch(self, items: Iterator[Any]) -> Iterator[Any]:
        try:
            for item in items:
                if self.chunk is None:
                    self.chunk = item
                yield item
        finally:
            _close(items)

    async def awatch(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for item in items:
                if self.chunk is None:
                    self.chunk = item
                yield item
        finally:
            await _aclose(items)


def _flush_verdicts(
    sg: StreamGuard[Any], check: _Check, items: Iterator[Any], report: Callable[[Verdict], None]
) -> Iterator[Any]:
    try:
        for item in items:
            for v in sg.verdicts[len(check.verdicts) :]:
                report(v)
            yield item
    finally:
        _close(items)


async def _aclose(items: AsyncIterator[Any]) -> None:
    """Close an async generator now (``async for`` does not when the loop body raises or is closed)."""
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()


def _close(items: Iterator[Any]) -> None:
    """Close a generator now (its ``finally`` runs before the caller goes on), not when it is collected."""
    close = getattr(items, "close", None)
    if close is not None:
        close()


def _combine(chunks: Iterator[Any]) -> Any:
    """Input chunks added up, as ``Runnable.transform``'s default does."""
    final: Any = None
    got = False
    for chunk in chunks:
        if not got:
            final, got = chunk, True
            continue
        try:
            final = final + chunk
        except TypeError:
            final = chunk
    return final


async def _acombine(chunks: AsyncIterator[Any]) -> Any:
    collected = [c async for c in chunks]
    return _combine(iter(collected))


def _not_blocks(types: tuple[type[BaseException], ...]) -> tuple[type[BaseException], ...] | Callable[[BaseException], bool]:
    """``with_retry``'s rule: ``types``, minus policy blocks unless ``types`` names them."""
    if any(issubclass(t, ContentBlockedError) for t in types):
        return types

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, types) and not isinstance(exc, ContentBlockedError)

    return retryable


Decide = Callable[[Verdict], StreamRefusal | None]


def _gate(items: Iterator[Any], future: Future[Verdict], decide: Decide) -> Iterator[Any]:
    """Parallel mode, sync: hold everything until the input verdict is in; a block stops the inner stream."""
    buffered: list[Any] = []
    decided = False
    try:
        for item in items:
            if decided:
                yield item
                continue
            buffered.append(item)
            if not future.done():
                continue
            refusal = decide(future.result())
            decided = True
            if refusal is not None:
                yield refusal
                return
            yield from buffered
            buffered.clear()
        if not decided:
            refusal = decide(future.result())
            if refusal is not None:
                yield refusal
                return
            yield from buffered
    finally:
        _close(items)


async def _agate(
    items: AsyncIterator[Any], task: asyncio.Task[Verdict], decide: Decide
) -> AsyncIterator[Any]:
    """Parallel mode, async: chunks wait for the input verdict; a block cancels the inner stream at once."""
    source = aiter(items)
    buffered: list[Any] = []
    pending: asyncio.Future[Any] | None = None
    exhausted = False
    try:
        while not task.done() and not exhausted:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            await asyncio.wait({pending, task}, return_when=asyncio.FIRST_COMPLETED)
            if pending.done():
                try:
                    buffered.append(pending.result())
                except StopAsyncIteration:
                    exhausted = True
                pending = None
        refusal = decide(await task)
        if refusal is not None:
            yield refusal
            return
        for item in buffered:
            yield item
        buffered.clear()
        if pending is not None:
            try:
                item = await pending
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield item
        if not exhausted:
            async for item in source:
                yield item
    finally:
        if pending is not None:
            await _cancel(cast("asyncio.Future[Any]", pending))
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def _cancel(task: asyncio.Future[Any]) -> None:
    if task.done():
        if not task.cancelled():
            task.exception()  # retrieved: never "exception was never retrieved"
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _decisive(verdicts: list[Verdict]) -> Verdict:
    """The verdict that decides for several judged conversations: block over refuse over pass, first of equals."""
    rank = {Outcome.PASS: 0, Outcome.REFUSE: 1, Outcome.BLOCK: 2}
    return max(verdicts, key=lambda v: rank[v.outcome])


__all__ = ["GuardedRunnable"]

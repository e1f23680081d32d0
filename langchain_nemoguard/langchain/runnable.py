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
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
    adispatch_custom_event,
    dispatch_custom_event,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import (
    ContextThreadPoolExecutor,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import ConfigDict, Field, field_validator

from ..core.conversation import Conversation
from ..core.errors import ContentBlockedError, InvalidInputError, Stage
from ..core.guard import NemoGuard
from ..core.policy import Policy
from ..core.streaming import StreamGuard, StreamRefusal
from ..core.verdict import Action, Outcome, Verdict
from ..core.windows import StreamOptions
from .events import (
    NOSTREAM_TAG,
    POLICY_CONFIG_KEY,
    UNCHECKED_TAG,
    VERDICT_EVENT,
    ModelContentBlockedError,
    annotate_run,
    policy_for_run,
    verdict_event,
    verdict_metadata,
)
from .messages import OUTPUT_KEYS, chunk_text, conversation_from_input, input_conversations_from, output_text


@dataclass(slots=True)
class _Check:
    """One traced guard check: the run's inputs, metadata, and what it concluded."""

    stage: Stage
    policy: Policy
    inputs: dict[str, Any]
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"NemoGuard:{self.stage.value}"

    @property
    def start_metadata(self) -> dict[str, Any]:
        return {"nemoguard_stage": self.stage.value, "nemoguard_policy": self.policy.name}

    def final(self) -> Verdict | None:
        return next((v for v in self.verdicts if not v.allowed), self.verdicts[-1] if self.verdicts else None)

    def outputs(self) -> dict[str, Any]:
        final = self.final()
        out: dict[str, Any] = {"verdict": final.to_dict() if final else None}
        if final is not None:
            out["allowed"] = final.allowed
            out["reason"] = final.reason
        if len(self.verdicts) > 1:
            out["windows"] = [v.to_dict() for v in self.verdicts]
        return out


class GuardedRunnable(RunnableSerializable[Any, Any]):
    """A runnable whose input and output are checked by a :class:`NemoGuard` (``guard.wrap(runnable)``).

    A block raises :class:`langchain_nemoguard.ContentBlockedError`; a ``rewrite`` answers with the refusal in
    the shape of the inner runnable's output.

    Args:
        guard: The guard that judges.
        inner: The runnable to guard (a callable is wrapped in ``RunnableLambda``).
        check_input: Check the user turn before the inner runnable runs.
        check_output: Check the output (text and tool-call arguments), streamed window by window.
        policy: A ``Policy`` or a name from the guard's policy set; a call may override it with
            ``configurable={"nemoguard_policy": name}``.
        action: One action for every unsafe verdict, instead of the policy's per-category map.
        refusal: The text a ``rewrite`` answers with (default: the policy's).
        parallel: Run the input check beside the inner runnable; its result is released only after an
            allowing verdict (a block cancels it).
        stream_options: Hold-back windows for streamed output (alias ``stream``; default: the guard's).
        input_key: Where the user turn is in a dict input when it is not ``messages`` or a usual key.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    guard: NemoGuard
    inner: Runnable[Any, Any]
    check_input: bool = True
    check_output: bool = True
    policy: Policy | str | None = None
    action: Action | None = None
    refusal: str | None = None
    parallel: bool = False
    stream_options: StreamOptions | None = Field(default=None, alias="stream")
    input_key: str | None = None

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

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[Any]:
            yield input

        stream = self.atransform(one(), config, **kwargs)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await _aclose(stream)  # a reader's aclose() reaches the inner stream now, not when collected

    def transform(
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from self._transform_stream_with_config(input, self._transform, config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
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

    @staticmethod
    def _refused(verdict: Verdict, stage: Stage) -> bool:
        """False: go on. True: answer with the refusal. Raises for ``block``."""
        outcome = verdict.outcome
        if outcome is Outcome.BLOCK:
            raise ModelContentBlockedError(verdict, stage)
        return outcome is Outcome.REFUSE

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
        meta = {"nemoguard": verdict.to_dict()}
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

    def _output_check(self, out: Any, prompt: str, policy: Policy) -> tuple[_Check, Conversation] | None:
        text = output_text(out)
        if not self.check_output or not text.strip():
            return None
        has_calls = isinstance(out, AIMessage) and bool(out.tool_calls)
        stage = Stage.TOOL_CALL if has_calls and not out.text.strip() else Stage.OUTPUT
        conv = Conversation(prompt=prompt, response=text)
        return _Check(stage, policy, {"prompt": prompt, "response": text}), conv

    # --- traced checks ---------------------------------------------------------------------------------------

    def _start(self, check: _Check, config: RunnableConfig) -> CallbackManagerForChainRun:
        cm = get_callback_manager_for_config(config)
        cm.add_metadata(check.start_metadata, inherit=False)
        cm.add_tags(["nemoguard"], inherit=False)
        return cm.on_chain_start(None, check.inputs, name=check.name)

    def _report(self, check: _Check, verdict: Verdict, rm: CallbackManagerForChainRun) -> None:
        check.verdicts.append(verdict)
        dispatch_custom_event(
            VERDICT_EVENT, verdict_event(check.stage, verdict), config={"callbacks": rm.get_child()}
        )

    def _end(self, check: _Check, rm: CallbackManagerForChainRun, error: BaseException | None = None) -> None:
        final = check.final()
        if final is not None:
            annotate_run(rm, verdict_metadata(final))
        if error is not None and not isinstance(error, ContentBlockedError):
            rm.on_chain_error(error)
        else:
            rm.on_chain_end(check.outputs())

    def _check(
        self, check: _Check, conv: Conversation | tuple[Conversation, ...], config: RunnableConfig
    ) -> Verdict:
        rm = self._start(check, config)
        convs = conv if isinstance(conv, tuple) else (conv,)
        try:
            verdicts = [self.guard.check(conversation=c, policy=check.policy, stage=check.stage) for c in convs]
        except BaseException as exc:
            self._end(check, rm, exc)
            raise
        for verdict in verdicts:
            self._report(check, verdict, rm)
        self._end(check, rm)
        return _decisive(verdicts)

    async def _astart(self, check: _Check, config: RunnableConfig) -> AsyncCallbackManagerForChainRun:
        cm = get_async_callback_manager_for_config(config)
        cm.add_metadata(check.start_metadata, inherit=False)
        cm.add_tags(["nemoguard"], inherit=False)
        return await cm.on_chain_start(None, check.inputs, name=check.name)

    async def _areport(self, check: _Check, verdict: Verdict, rm: AsyncCallbackManagerForChainRun) -> None:
        check.verdicts.append(verdict)
        await adispatch_custom_event(
            VERDICT_EVENT, verdict_event(check.stage, verdict), config={"callbacks": rm.get_child()}
        )

    async def _aend(
        self, check: _Check, rm: AsyncCallbackManagerForChainRun, error: BaseException | None = None
    ) -> None:
        final = check.final()
        if final is not None:
            annotate_run(rm, verdict_metadata(final))
        if error is not None and not isinstance(error, ContentBlockedError):
            await rm.on_chain_error(error)
        else:
            await rm.on_chain_end(check.outputs())

    async def _acheck(
        self, check: _Check, conv: Conversation | tuple[Conversation, ...], config: RunnableConfig
    ) -> Verdict:
        rm = await self._astart(check, config)
        convs = conv if isinstance(conv, tuple) else (conv,)
        try:
            verdicts = await asyncio.gather(
                *(self.guard.acheck(conversation=c, policy=check.policy, stage=check.stage) for c in convs)
            )
        except BaseException as exc:
            await self._aend(check, rm, exc)
            raise
        for verdict in verdicts:
            await self._areport(check, verdict, rm)
        await self._aend(check, rm)
        return _decisive(list(verdicts))

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
                    refused = self._refused(verdict, Stage.INPUT)
                except BaseException:
                    future.cancel()  # a started sync call cannot be interrupted; its result is discarded
                    raise
                if refused:
                    future.cancel()
                    return self._refusal_like(None, policy.refusal, verdict, chunk=False)
                out = future.result()
            finally:
                executor.shutdown(wait=False, cancel_futures=True)
        else:
            verdict = self._check(self._input_check(conv, policy), conv, config)
            if self._refused(verdict, Stage.INPUT):
                return self._refusal_like(None, policy.refusal, verdict, chunk=False)
            out = self.inner.invoke(input, inner_config, **kwargs)
        planned = self._output_check(out, prompt, policy)
        if planned is None:
            return out
        check, out_conv = planned
        verdict = self._check(check, out_conv, config)
        if self._refused(verdict, check.stage):
            return self._refusal_like(out, policy.refusal, verdict, chunk=False)
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
                if self._refused(verdict, Stage.INPUT):
                    return self._refusal_like(None, policy.refusal, verdict, chunk=False)
                out = await task
            finally:
                await _cancel(task)
        else:
            verdict = await self._acheck(self._input_check(conv, policy), conv, config)
            if self._refused(verdict, Stage.INPUT):
                return self._refusal_like(None, policy.refusal, verdict, chunk=False)
            out = await self.inner.ainvoke(input, inner_config, **kwargs)
        planned = self._output_check(out, prompt, policy)
        if planned is None:
            return out
        check, out_conv = planned
        verdict = await self._acheck(check, out_conv, config)
        if self._refused(verdict, check.stage):
            return self._refusal_like(out, policy.refusal, verdict, chunk=False)
        return out

    # --- streams ---------------------------------------------------------------------------------------------

    def _stream_guard(self, prompt: str, policy: Policy) -> StreamGuard[Any]:
        return StreamGuard(
            self.guard,
            prompt=prompt,
            policy=policy,
            options=self._options(),
            stage=Stage.OUTPUT,
            error_cls=ModelContentBlockedError,
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
                if self._refused(verdict, Stage.INPUT):
                    yield self._refusal_like(None, policy.refusal, verdict, chunk=True)
                    return
            items: Iterator[Any] = seen.watch(self.inner.stream(value, inner_config, **kwargs))
            check: _Check | None = None
            if self.check_output:
                sg = self._stream_guard(prompt, policy)
                check = _Check(Stage.OUTPUT, policy, {"prompt": prompt, "streamed": True})
                items = self._reported(sg, check, sg.iter(items, chunk_text), config)
            if future is not None:
                items = _gate(items, future, policy)
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
        rm = self._start(check, config)
        error: BaseException | None = None
        try:
            yield from _flush_verdicts(sg, check, items, lambda v: self._report(check, v, rm))
        except BaseException as exc:
            error = exc
            raise
        finally:
            for v in sg.verdicts[len(check.verdicts) :]:
                self._report(check, v, rm)
            self._end(check, rm, error if not isinstance(error, GeneratorExit) else None)

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
                if self._refused(verdict, Stage.INPUT):
                    yield self._refusal_like(None, policy.refusal, verdict, chunk=True)
                    return
            items: AsyncIterator[Any] = seen.awatch(self.inner.astream(value, inner_config, **kwargs))
            if self.check_output:
                sg = self._stream_guard(prompt, policy)
                check = _Check(Stage.OUTPUT, policy, {"prompt": prompt, "streamed": True})
                items = self._areported(sg, check, sg.aiter(items, chunk_text), config)
            if task is not None:
                items = _agate(items, task, policy)
            try:
                async for item in items:
                    if isinstance(item, StreamRefusal):
                        yield self._refusal_like(seen.chunk, item.text, item.verdict, chunk=True)
                        return
                    yield item
            finally:
                aclose = getattr(items, "aclose", None)
                if aclose is not None:
                    await aclose()
        finally:
            if task is not None:
                await _cancel(task)

    async def _areported(
        self, sg: StreamGuard[Any], check: _Check, items: AsyncIterator[Any], config: RunnableConfig
    ) -> AsyncIterator[Any]:
        rm = await self._astart(check, config)
        error: BaseException | None = None
        try:
            async for item in items:
                for v in sg.verdicts[len(check.verdicts) :]:
                    await self._areport(check, v, rm)
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            with contextlib.suppress(Exception):
                await items.aclose()  # type: ignore[attr-defined]
            for v in sg.verdicts[len(check.verdicts) :]:
                await self._areport(check, v, rm)
            await self._aend(check, rm, error if not isinstance(error, GeneratorExit) else None)


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
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()


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


def _input_decision(verdict: Verdict, policy: Policy) -> StreamRefusal | None:
    if GuardedRunnable._refused(verdict, Stage.INPUT):
        return StreamRefusal(policy.refusal, verdict)
    return None


def _gate(items: Iterator[Any], future: Future[Verdict], policy: Policy) -> Iterator[Any]:
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
            refusal = _input_decision(future.result(), policy)
            decided = True
            if refusal is not None:
                yield refusal
                return
            yield from buffered
            buffered.clear()
        if not decided:
            refusal = _input_decision(future.result(), policy)
            if refusal is not None:
                yield refusal
                return
            yield from buffered
    finally:
        _close(items)


async def _agate(
    items: AsyncIterator[Any], task: asyncio.Task[Verdict], policy: Policy
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
        refusal = _input_decision(await task, policy)
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

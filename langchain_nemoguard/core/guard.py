"""``NemoGuard``: one object that turns a conversation into a verdict, and owns the lifecycle around it.

A check is planned, executed and combined:

0. before anything is sent: the input is held to ``windows.max_input_chars`` and to what UTF-8 can carry
   (:mod:`.budget`), the check's deadline starts, and images are prepared, so the cache key covers what the
   model will see;
1. plan (pure, :mod:`.plan`): the conversation becomes one or more :class:`CallSpec` - one per text window, one
   per image (the model takes one image per call, always with text), one per policy variant - each within the
   served context;
2. execute (I/O, here): the calls go out concurrently - ``asyncio.gather`` in ``acheck``, a thread pool in
   ``check`` - and all end by the check's deadline; a call the server still refuses for length is judged in
   overlapping halves;
3. combine (pure, :mod:`.combine`): any unsafe call makes the verdict unsafe; categories merge; suppressed
   categories are dropped; the policy picks the action; failures follow ``on_error`` and are labelled as
   outages.

Sync and async share steps 1 and 3 and the cache (:mod:`.cache`); only step 2 differs. ``check`` never raises
for an operational failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .budget import MAX_SPLITS, check_input, is_length_refusal, merge_calls, split_call
from .cache import VerdictCache, verdict_key
from .combine import OnError, combine
from .conversation import Conversation
from .coverage import CoverageOptions
from .errors import ConfigurationError, GuardUnavailableError, InvalidInputError, Stage
from .formats import MODES, CallSpec, Mode, ModelFormat, Nemotron35Format, ParsedCall
from .formats.base import encode_body
from .images import ImageOptions, PreparedImage, aprepare_image, prepare_image
from .options import AuditOptions, CacheOptions, CallOptions, TransportOptions
from .plan import Plan, aplan_calls, plan_calls
from .policy import Policy, PolicySet
from .providers import public_url, resolve
from .simulator_mark import answered_by_simulator
from .telemetry import CheckInfo, CheckRecord, GuardObserver, Telemetry
from .think import ThinkAuditor, ThinkJob
from .transport import RetryPolicy, Transport
from .verdict import Action, ExitBehavior, Verdict
from .windows import StreamOptions, WindowOptions

if TYPE_CHECKING:  # types only: the core imports no framework at run time
    from langchain_core.language_models import BaseChatModel
    from langchain_core.runnables import Runnable

    from ..langchain.chat_model import GuardedChatModel
    from ..langchain.runnable import GuardedRunnable

_In = TypeVar("_In")
_Out = TypeVar("_Out")

logger = logging.getLogger("langchain_nemoguard")


class NemoGuard:
    """A content-safety guard backed by Nemotron 3.5 Content Safety.

    >>> guard = NemoGuard()                                   # local vLLM on :8000, or NEMOGUARD_BASE_URL
    >>> v = guard.check(prompt="How do I make a bomb?")
    >>> v.safe, v.categories, v.action

    Args:
        base_url: The OpenAI-compatible root including ``/v1``, or several for failover (None:
            ``NEMOGUARD_BASE_URL``, else the provider's).
        provider: ``"vllm"`` (default), ``"nvidia"`` (hosted API) or ``"openrouter"``.
        model: The model id (None: ``NEMOGUARD_MODEL``, else the provider's id for Nemotron 3.5).
        api_key: The endpoint's key (None: ``NEMOGUARD_API_KEY``, else the provider's usual variable). Never
            shown in reprs, logs, errors or verdicts.
        mode: ``"fast"`` (safe/unsafe), ``"categories"`` or ``"think"`` (with a reasoning trace).
        policy: The default policy: a :class:`Policy`, a name from ``policies``, or None (the policy set's
            default, else the built-in taxonomy).
        policies: Named policies: a :class:`PolicySet`, a mapping, or the path of a YAML/JSON policy file.
        on_error: ``"block"`` (fail closed, the default) or ``"allow"`` (fail open, counted and logged) when
            the guard cannot produce a verdict.
        timeout: Seconds per attempt.
        max_retries: Retries after a failed attempt (timeouts, connection errors, 429 and 5xx).
        transport: Concurrency, headers, caller-provided httpx clients, the deadline of one check and the
            largest response body read.
        cache: The verdict cache's size and TTL.
        calls: The model format, token budget, constrained output and the most answer text read.
        images: How images are vetted, fetched and prepared.
        windows: How long input is cut into calls, how much history each call carries, the served context
            every call is held to, and the largest input a check takes.
        stream: How streamed output is held back (the default for every adapter's streams).
        audit: ``on_verdict`` and ``on_audit`` callbacks and background THINK audits.
        coverage: Which optional channels the adapters judge (system prompts, tool results, reasoning,
            embedding inputs); see ``docs/coverage.md``.
    """

    def __init__(
        self,
        base_url: str | Sequence[str] | None = None,
        *,
        provider: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        mode: Mode = "categories",
        policy: Policy | str | None = None,
        policies: PolicySet | Mapping[str, Policy] | str | os.PathLike[str] | None = None,
        on_error: OnError = "block",
        timeout: float = 10.0,
        max_retries: int = 2,
        transport: TransportOptions | None = None,
        cache: CacheOptions | None = None,
        calls: CallOptions | None = None,
        images: ImageOptions | None = None,
        windows: WindowOptions | None = None,
        stream: StreamOptions | None = None,
        audit: AuditOptions | None = None,
        coverage: CoverageOptions | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if on_error not in ("block", "allow"):
            raise ConfigurationError(f"on_error must be 'block' or 'allow', got {on_error!r}")
        if timeout <= 0 or max_retries < 0:
            raise ConfigurationError("timeout must be > 0 and max_retries >= 0")
        self.transport_options = transport or TransportOptions()
        self.cache_options = cache or CacheOptions()
        self.call_options = calls or CallOptions()
        self.image_options = images or ImageOptions()
        self.windows = windows or WindowOptions()
        self.stream_options = stream or StreamOptions()
        self.audit_options = audit or AuditOptions()
        self.coverage = coverage or CoverageOptions()
        endpoint = resolve(base_url, provider, model, api_key)
        if self.call_options.constrain_output and not endpoint.provider.supports_structured_outputs:
            raise ConfigurationError(
                f"constrain_output uses vLLM's structured_outputs; provider {endpoint.provider.name!r} does not support it"
            )
        self.provider = endpoint.provider.name
        scores = self.call_options.scores
        self._logprobs = endpoint.provider.supports_logprobs if scores is None else scores
        self.model = endpoint.model
        self.base_urls = endpoint.base_urls
        self.mode: Mode = mode
        self.on_error: OnError = on_error
        self.format: ModelFormat = self.call_options.format or Nemotron35Format()
        self.policies = _policy_set(policies)
        if policy is not None:
            self.policy = self._lookup(policy)
        else:
            self.policy = self.policies.default if self.policies is not None else Policy()
        t = self.transport_options
        self._transport = Transport(
            endpoint.base_urls,
            api_key=endpoint.api_key,
            timeout=timeout,
            retry=RetryPolicy(max_retries=max_retries),
            max_concurrency=t.max_concurrency,
            headers=t.headers,
            http_client=t.http_client,
            http_async_client=t.http_async_client,
            deadline=t.deadline,
            max_response_bytes=t.max_response_bytes,
        )
        # seconds one check may take in all (TransportOptions.deadline, or timeout times the tries)
        self.deadline: float = self._transport.deadline
        self._cache: VerdictCache[Verdict] = VerdictCache(
            maxsize=self.cache_options.size, ttl=self.cache_options.ttl
        )
        self._executor: ThreadPoolExecutor | None = None
        self._counters: dict[str, int] = {
            "checks": 0,
            "unsafe": 0,
            "errors": 0,
            "fail_open": 0,
            "calls": 0,
            "think_ignored": 0,
        }
        self._warned_think_ignored = False
        a = self.audit_options
        self._telemetry = Telemetry(a.observers)
        self._endpoint_shown = public_url(self.base_urls[0]) if a.record_endpoint else None
        self._auditor: ThinkAuditor | None = None
        if a.think:
            self._auditor = ThinkAuditor(
                run_sync=self._think,
                run_async=self._athink,
                deliver=self._audited,
                drop=self._audit_dropped,
                queue_size=a.think_queue,
                concurrency=a.think_concurrency,
            )

    def __repr__(self) -> str:  # no key, ever
        return (
            f"NemoGuard(provider={self.provider!r}, base_url={list(self.base_urls)!r}, model={self.model!r}, "
            f"mode={self.mode!r}, policy={self.policy.name!r}, on_error={self.on_error!r})"
        )

    # --- public API ------------------------------------------------------------------------------------------

    def check(
        self,
        prompt: str | None = None,
        response: str | None = None,
        images: Iterable[Any] | Any | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        conversation: Conversation | None = None,
        policy: Policy | str | None = None,
        mode: Mode | None = None,
        stage: Stage | str | None = None,
        request_id: str | None = None,
        source: str | None = None,
    ) -> Verdict:
        """Judge a user prompt (with images) and optionally a response. Never raises for an outage.

        Args:
            prompt: The user's text.
            response: An assistant response, judged in the context of the prompt.
            images: Image sources (bytes, file paths, data/http(s) URLs, Pillow images), or one of them.
                Explicit arguments may name local files; message content never can (see ``Conversation``).
            messages: OpenAI chat messages instead of prompt/response/images.
            conversation: A :class:`Conversation` instead of the above.
            policy: A policy or a policy name for this check (None: the guard's default).
            mode: The output mode for this check (None: the guard's).
            stage: Narrow the verdict to what this stage is about (see :meth:`Verdict.at_stage`): at
                ``output`` and ``tool_call`` only the response rating decides.
            request_id: The caller's request or run id, for audit records and traces.
            source: Who asks, for records and metrics: ``library`` (default), ``langchain``, ``litellm``,
                ``service``.

        Returns:
            The verdict; ``verdict.outcome`` says whether the text passes, is refused or is blocked.

        Raises:
            InvalidInputError: The input cannot be judged as given (nothing to check, an unreadable image, a
                lone surrogate...); :class:`InputTooLargeError` when it is over ``windows.max_input_chars``.
            ConfigurationError: An unknown mode, a policy name with no such policy, or a served context
                (``windows.max_context_tokens``) too small for the policy.
        """
        conv = self._conversation(prompt, response, images, messages, conversation)
        pol, md = self.policy_for(policy), self._mode(mode)
        started = time.perf_counter()
        deadline = self._transport.deadline_from_now()
        self._check_input(conv)
        info = self._info(conv, pol, md, stage, source, request_id, started)
        # prepared first: the cache key covers what the model sees (the prepared bytes, fetched content)
        images_ready = [prepare_image(src, self.image_options) for src in conv.images]
        key = self._key(conv, pol, md, images_ready)
        hit = self._cache.get(key)
        if info is not None:
            self._telemetry.cache(hit is not None, info)
        if hit is not None:
            return self._decided(hit, stage, info)
        tokens = self._telemetry.start(info) if info is not None else None
        try:
            verdict = self._judge(conv, images_ready, pol, md, key, started, deadline)
        except BaseException as exc:
            if info is not None and tokens is not None:
                self._telemetry.error(tokens, info, exc)
            raise
        audit = (conv, tuple(images_ready), pol) if self._wants_audit(md, verdict) else None
        return self._decided(verdict, stage, info, tokens, audit)

    async def acheck(
        self,
        prompt: str | None = None,
        response: str | None = None,
        images: Iterable[Any] | Any | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        conversation: Conversation | None = None,
        policy: Policy | str | None = None,
        mode: Mode | None = None,
        stage: Stage | str | None = None,
        request_id: str | None = None,
        source: str | None = None,
    ) -> Verdict:
        """Async twin of :meth:`check`, with the same arguments."""
        conv = self._conversation(prompt, response, images, messages, conversation)
        pol, md = self.policy_for(policy), self._mode(mode)
        started = time.perf_counter()
        deadline = self._transport.deadline_from_now()
        self._check_input(conv)
        info = self._info(conv, pol, md, stage, source, request_id, started)
        if conv.images:
            images_ready = list(
                await asyncio.gather(*(aprepare_image(src, self.image_options) for src in conv.images))
            )
        else:
            images_ready = []
        key = self._key(conv, pol, md, images_ready)
        hit = self._cache.get(key)
        if info is not None:
            self._telemetry.cache(hit is not None, info)
        if hit is not None:
            return self._decided(hit, stage, info)
        tokens = self._telemetry.start(info) if info is not None else None
        try:
            verdict, shared = await self._ajudge(conv, images_ready, pol, md, key, started, deadline)
        except BaseException as exc:
            if info is not None and tokens is not None:
                self._telemetry.error(tokens, info, exc)
            raise
        if shared:  # another check asked the model; that one is audited
            latency = (time.perf_counter() - started) * 1e3
            return self._decided(verdict.replace(latency_ms=latency), stage, info, tokens)
        audit = (conv, tuple(images_ready), pol) if self._wants_audit(md, verdict) else None
        return self._decided(verdict, stage, info, tokens, audit, sync=False)

    def policy_for(
        self,
        policy: Policy | str | None = None,
        *,
        action: Action | str | None = None,
        default_action: Action | str | None = None,
        refusal: str | None = None,
    ) -> Policy:
        """The policy a check runs under: the one given, the named one, or the guard's default.

        Every adapter picks its policy here, and applies its overrides here (:meth:`Policy.with_overrides`).

        Args:
            policy: A :class:`Policy`, the name of one in ``policies``, or None for the guard's default.
            action: One action for every unsafe verdict (replaces the policy's per-category map).
            default_action: The action for categories the policy does not map itself.
            refusal: The text a ``rewrite`` answers with.

        Raises:
            PolicyNotFoundError: No loaded policy has that name.
            ConfigurationError: A name was given but no policies were loaded.
        """
        chosen = self.policy if policy is None else self._lookup(policy)
        return chosen.with_overrides(action=action, default_action=default_action, refusal=refusal)

    def flush_audits(self, timeout: float | None = None) -> bool:
        """Wait for the background THINK audits of sync checks; False when ``timeout`` ran out first."""
        return self._auditor.flush(timeout) if self._auditor is not None else True

    async def aflush_audits(self) -> None:
        """Wait for the background THINK audits of async checks on this event loop."""
        if self._auditor is not None:
            await self._auditor.aflush()

    def add_observer(self, observer: GuardObserver) -> GuardObserver:
        """Tell ``observer`` (metrics, a tracer, an audit sink) about every check from now on; returns it.

        Args:
            observer: A :class:`~.telemetry.GuardObserver`.
        """
        self._telemetry.add(observer)
        return observer

    @overload
    def wrap(  # type: ignore[overload-overlap]  # a chat model is a Runnable too; this overload comes first
        self,
        runnable: BaseChatModel,
        *,
        policy: Policy | str | None = None,
        action: Action | str | None = None,
        refusal: str | None = None,
        parallel: bool = False,
        stream: StreamOptions | Mapping[str, Any] | None = None,
        check_input: bool = True,
        check_output: bool = True,
        input_key: None = None,
        exit_behavior: ExitBehavior | None = None,
        outage_message: str | None = None,
        name: str | None = None,
    ) -> GuardedChatModel: ...

    @overload
    def wrap(
        self,
        runnable: Runnable[_In, _Out] | Callable[[_In], _Out],
        *,
        policy: Policy | str | None = None,
        action: Action | str | None = None,
        refusal: str | None = None,
        parallel: bool = False,
        stream: StreamOptions | Mapping[str, Any] | None = None,
        check_input: bool = True,
        check_output: bool = True,
        input_key: str | None = None,
        exit_behavior: ExitBehavior | None = None,
        outage_message: str | None = None,
        name: str | None = None,
    ) -> GuardedRunnable[_In, _Out]: ...

    def wrap(
        self,
        runnable: Runnable[_In, _Out] | Callable[[_In], _Out],
        *,
        policy: Policy | str | None = None,
        action: Action | str | None = None,
        refusal: str | None = None,
        parallel: bool = False,
        stream: StreamOptions | Mapping[str, Any] | None = None,
        check_input: bool = True,
        check_output: bool = True,
        input_key: str | None = None,
        exit_behavior: ExitBehavior | None = None,
        outage_message: str | None = None,
        name: str | None = None,
    ) -> GuardedRunnable[_In, _Out] | GuardedChatModel:
        """``runnable`` with its input and output checked (``pip install 'langchain-nemoguard[langchain]'``).

        A chat model (``BaseChatModel``) gives a :class:`~langchain_nemoguard.langchain.chat_model.GuardedChatModel`,
        still a chat model (``bind_tools``, ``with_structured_output``, agents); anything else gives a
        :class:`~langchain_nemoguard.GuardedRunnable` with the same input and output types. An unknown keyword
        raises ``TypeError``.

        Args:
            runnable: A LangChain runnable or chat model (a callable is wrapped in ``RunnableLambda``).
            policy: A ``Policy`` or a name from this guard's policy set (a call may pick another with
                ``configurable={"nemoguard_policy": name}``); None: the default policy.
            action: One action (``"block"``, ``"rewrite"``, ``"log"``) for every unsafe verdict, instead of the
                policy's per-category map.
            refusal: The text a ``rewrite`` answers with (default: the policy's).
            parallel: Run the input check beside the runnable; its output is released only after an allowing
                verdict (a block cancels it).
            stream: Hold-back windows for streamed output (``StreamOptions`` or its fields as a dict; default:
                this guard's ``stream`` options).
            check_input: Check the input before the runnable runs.
            check_output: Check the output (text and tool-call arguments), streamed window by window.
            input_key: Where the user turn is in a dict input, when it is not ``messages`` or a usual key (not
                for chat models, whose input is messages).
            exit_behavior: What a block does, as LangChain's moderation middleware spells it: ``"end"``,
                ``"error"`` or ``"replace"`` (None: the policy's actions decide).
            outage_message: What a call answers with when the guard gave no verdict and the exit is not
                ``"error"`` (default: "The assistant is temporarily unavailable..."; never the policy's refusal).
            name: The run name in traces (default: the class name).
        """
        # The one import above the core: declared, lazy, and tested (tests/unit/test_architecture.py).
        from ..langchain.runnable import GuardedRunnable

        return GuardedRunnable.for_runnable(
            runnable,
            input_key=input_key,
            guard=self,
            policy=policy,
            action=action,
            refusal=refusal,
            parallel=parallel,
            stream=stream,
            check_input=check_input,
            check_output=check_output,
            exit_behavior=exit_behavior,
            outage_message=outage_message,
            name=name,
        )

    def stats(self) -> dict[str, Any]:
        """Counters for dashboards and tests: checks, unsafe, errors, fail-open, calls, cache, endpoints."""
        out: dict[str, Any] = {
            **self._counters,
            "cache": self._cache.stats.as_dict(),
            "endpoints": self._transport.pool.snapshot(),
        }
        if self._auditor is not None:
            out["think"] = {**self._auditor.stats.as_dict(), "pending": self._auditor.pending}
        return out

    def clear_cache(self) -> None:
        """Forget every cached verdict."""
        self._cache.clear()

    def close(self) -> None:
        """Finish or drop the sync THINK audits (``AuditOptions.think_drain_s``), close the sync HTTP client, the
        thread pool and the observers (an ``httpx.Client`` passed in stays open)."""
        if self._auditor is not None:
            dropped = self._auditor.close(self.audit_options.think_drain_s)
            if dropped:
                logger.warning("nemoguard: %d THINK audits dropped at shutdown", dropped)
        self._transport.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._telemetry.close()

    async def aclose(self) -> None:
        """Finish or drop this event loop's THINK audits, close its HTTP session, then what :meth:`close` closes."""
        if self._auditor is not None:
            dropped = await self._auditor.aclose(self.audit_options.think_drain_s)
            if dropped:
                logger.warning("nemoguard: %d THINK audits dropped at shutdown", dropped)
        await self._transport.aclose()
        self.close()

    def __enter__(self) -> NemoGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> NemoGuard:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- observing checks (core/telemetry.py) and THINK audits (core/think.py), off the hot path -------------

    def _info(
        self,
        conv: Conversation,
        policy: Policy,
        mode: Mode,
        stage: Stage | str | None,
        source: str | None,
        request_id: str | None,
        started: float,
    ) -> CheckInfo | None:
        """What observers learn about a check; None when nothing observes (then nothing is built)."""
        if not self._telemetry and self._auditor is None:
            return None
        if stage is None:
            shown = Stage.OUTPUT.value if conv.has_response else Stage.INPUT.value
        else:
            shown = stage.value if isinstance(stage, Stage) else str(stage)
        return CheckInfo(
            stage=shown,
            source=source or "library",
            request_id=request_id,
            policy=policy.name,
            policy_fingerprint=policy.fingerprint,
            mode=mode,
            model=self.model,
            provider=self.provider,
            conversation=conv,
            started=started,
            started_ns=time.time_ns(),
            endpoint=self._endpoint_shown,
        )

    def _decided(
        self,
        verdict: Verdict,
        stage: Stage | str | None,
        info: CheckInfo | None,
        tokens: tuple[Any, ...] | None = None,
        audit: tuple[Conversation, tuple[PreparedImage, ...], Policy] | None = None,
        *,
        sync: bool = True,
    ) -> Verdict:
        """Count and deliver a decided verdict; tell observers; queue its THINK audit."""
        final = self._finish(verdict, stage)
        if info is None:
            return final
        record = CheckRecord.new(info, final, think_status="pending" if audit is not None else "off")
        self._telemetry.end(tokens, record)
        if audit is not None and self._auditor is not None:
            narrow = None if stage is None else Stage(stage).value
            job = ThinkJob(record, audit[0], audit[2], narrow, audit[1])
            if sync:
                self._auditor.submit_sync(job)
            else:
                self._auditor.submit_async(job)
        else:
            self._telemetry.record(record)
        return final

    def _wants_audit(self, mode: Mode, verdict: Verdict) -> bool:
        return self._auditor is not None and mode != "think" and verdict.error is None

    def _think(self, job: ThinkJob) -> Verdict:
        """A queued audit's THINK verdict (sync worker thread): the cache, then the model; no observers. Its
        images were prepared for the decision; its deadline starts now."""
        started = time.perf_counter()
        conv, images, policy = job.conversation, job.images, job.policy
        key = self._key(conv, policy, "think", images)
        verdict = self._cache.get(key)
        if verdict is None:
            deadline = self._transport.deadline_from_now()
            verdict = self._judge(conv, images, policy, "think", key, started, deadline)
        return verdict if job.stage is None else verdict.at_stage(job.stage)

    async def _athink(self, job: ThinkJob) -> Verdict:
        started = time.perf_counter()
        conv, images, policy = job.conversation, job.images, job.policy
        key = self._key(conv, policy, "think", images)
        verdict = self._cache.get(key)
        if verdict is None:
            deadline = self._transport.deadline_from_now()
            verdict, _ = await self._ajudge(conv, images, policy, "think", key, started, deadline)
        return verdict if job.stage is None else verdict.at_stage(job.stage)

    def _audited(self, record: CheckRecord) -> None:
        self._telemetry.think(record)
        if record.think is not None:
            logger.debug("nemoguard: THINK audit of record %s: %s", record.id, record.think.verdict.reason)
            _notify(self.audit_options.on_audit, record.think.verdict, "on_audit")
        self._telemetry.record(record)

    def _audit_dropped(self, record: CheckRecord, reason: str) -> None:
        self._telemetry.dropped(record, reason)
        self._telemetry.record(record)

    # --- step 0: arguments ------------------------------------------------------------------------------------

    def _conversation(
        self,
        prompt: str | None,
        response: str | None,
        images: Iterable[Any] | Any | None,
        messages: Sequence[Mapping[str, Any]] | None,
        conversation: Conversation | None,
    ) -> Conversation:
        given = sum(x is not None for x in (messages, conversation)) + (
            1 if (prompt is not None or response is not None or images is not None) else 0
        )
        if given > 1:
            raise InvalidInputError(
                "pass either prompt/response/images, messages, or conversation - not several"
            )
        if conversation is not None:
            return conversation
        if messages is not None:
            return Conversation.from_messages(messages)
        return Conversation.of(prompt, response, images)

    def _lookup(self, policy: Policy | str) -> Policy:
        if isinstance(policy, Policy):
            return policy
        if self.policies is None:
            raise ConfigurationError(
                f"policy {policy!r} was named, but no policies were loaded (pass policies=...)"
            )
        return self.policies[policy]

    def _mode(self, mode: Mode | None) -> Mode:
        if mode is None:
            return self.mode
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        return mode

    def _check_input(self, conv: Conversation) -> None:
        check_input(conv, max_input_chars=self.windows.max_input_chars, context_turns=self.windows.context_turns)

    def _key(
        self, conv: Conversation, policy: Policy, mode: Mode, images: Sequence[PreparedImage] = ()
    ) -> str:
        return verdict_key(
            conv,
            policy,
            mode,
            images,
            format_name=self.format.name,
            model=self.model,
            max_tokens=self.call_options.max_tokens,
            constrain_output=self.call_options.constrain_output,
            context_turns=self.windows.context_turns,
        )

    def _judge(
        self,
        conv: Conversation,
        images: Sequence[PreparedImage],
        policy: Policy,
        mode: Mode,
        key: str,
        started: float,
        deadline: float,
    ) -> Verdict:
        """Steps 1-3 for a cache miss on this thread, shared by identical concurrent checks; cached."""

        def compute() -> Verdict:
            plan = self._plan(conv, images, policy, mode)
            return self._combine(plan, self._execute(plan, deadline), started)

        verdict = self._cache.sync_single_flight(key, compute)
        self._remember(key, verdict)
        return verdict

    async def _ajudge(
        self,
        conv: Conversation,
        images: Sequence[PreparedImage],
        policy: Policy,
        mode: Mode,
        key: str,
        started: float,
        deadline: float,
    ) -> tuple[Verdict, bool]:
        """The async twin of :meth:`_judge`; also says whether another check's call answered (shared)."""

        async def compute() -> Verdict:
            plan = await self._aplan(conv, images, policy, mode)
            verdict = self._combine(plan, await self._aexecute(plan, deadline), started)
            self._remember(key, verdict)
            return verdict

        return await self._cache.async_single_flight(key, compute)

    # --- step 1: plan (pure, core/plan.py) ------------------------------------------------------------------

    def _plan_options(self) -> dict[str, Any]:
        c = self.call_options
        return {
            "model_format": self.format,
            "windows": self.windows,
            "max_tokens": c.max_tokens,
            "constrain_output": c.constrain_output,
            "max_completion_chars": c.max_completion_chars,
        }

    def _plan(self, conv: Conversation, images: Sequence[PreparedImage], policy: Policy, mode: Mode) -> Plan:
        return plan_calls(conv, images, policy, mode, **self._plan_options())

    async def _aplan(
        self, conv: Conversation, images: Sequence[PreparedImage], policy: Policy, mode: Mode
    ) -> Plan:
        return await aplan_calls(conv, images, policy, mode, **self._plan_options())

    # --- step 2: execute (every call ends by the check's deadline) ----------------------------------------------

    def _body(self, spec: CallSpec) -> bytes:
        body = self.format.build(spec, self.model)
        if self._logprobs and spec.mode != "think":  # verdict scores (formats/scores.py)
            body.update(logprobs=True, top_logprobs=self.call_options.top_logprobs)
        return encode_body(body)

    def _call(self, spec: CallSpec, deadline: float, splits: int = 0) -> ParsedCall | GuardUnavailableError:
        try:
            completion = self._transport.post("chat/completions", self._body(spec), deadline=deadline)
            return _parsed(self.format.parse(completion, spec), completion)
        except GuardUnavailableError as exc:
            # the backstop: a call the server refused for length is judged in overlapping halves, never lost
            halves = split_call(spec) if splits < MAX_SPLITS and is_length_refusal(exc) else None
            if halves is None:
                return exc
            self._counters["calls"] += len(halves)
            return merge_calls([self._call(h, deadline, splits + 1) for h in halves])

    async def _acall(
        self, spec: CallSpec, deadline: float, splits: int = 0
    ) -> ParsedCall | GuardUnavailableError:
        try:
            completion = await self._transport.apost("chat/completions", self._body(spec), deadline=deadline)
            return _parsed(self.format.parse(completion, spec), completion)
        except GuardUnavailableError as exc:
            halves = split_call(spec) if splits < MAX_SPLITS and is_length_refusal(exc) else None
            if halves is None:
                return exc
            self._counters["calls"] += len(halves)
            return merge_calls(await asyncio.gather(*(self._acall(h, deadline, splits + 1) for h in halves)))

    def _execute(self, plan: Plan, deadline: float) -> list[ParsedCall | GuardUnavailableError]:
        self._counters["calls"] += len(plan.specs)
        if len(plan.specs) == 1:
            return [self._call(plan.specs[0], deadline)]
        return list(self._pool().map(lambda spec: self._call(spec, deadline), plan.specs))

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="nemoguard")
        return self._executor

    async def _aexecute(self, plan: Plan, deadline: float) -> list[ParsedCall | GuardUnavailableError]:
        self._counters["calls"] += len(plan.specs)
        if len(plan.specs) == 1:
            return [await self._acall(plan.specs[0], deadline)]
        return list(await asyncio.gather(*(self._acall(s, deadline) for s in plan.specs)))

    # --- step 3: combine (pure, core/combine.py) --------------------------------------------------------------

    def _combine(
        self, plan: Plan, results: Sequence[ParsedCall | GuardUnavailableError], started: float
    ) -> Verdict:
        latency = (time.perf_counter() - started) * 1e3
        return combine(plan, results, model=self.model, on_error=self.on_error, latency_ms=latency)

    def _remember(self, key: str, verdict: Verdict) -> None:
        """Cache a verdict (never an error), stored as the copy hits return: ``cached=True``, no latency."""
        if verdict.error is None and self._cache.maxsize > 0:
            self._cache.put(key, verdict.replace(cached=True, latency_ms=0.0))

    def _finish(self, verdict: Verdict, stage: Stage | str | None) -> Verdict:
        c = self._counters
        c["checks"] += 1
        if verdict.think_ignored and not verdict.cached:
            c["think_ignored"] += 1
            if not self._warned_think_ignored:
                self._warned_think_ignored = True
                logger.warning(
                    "nemoguard: a THINK check came back without a reasoning trace: the endpoint (%s) ignores "
                    "enable_thinking; verdicts stand, but have no trace (Verdict.think_ignored). Warned once.",
                    self.provider,
                )
        if verdict.error is not None:
            c["errors"] += 1
            if verdict.safe:
                c["fail_open"] += 1
                logger.warning(
                    "nemoguard: %s - failing open as configured (on_error='allow')", verdict.error_message
                )
            else:
                logger.warning("nemoguard: %s - blocking (fail closed)", verdict.error_message)
        elif not verdict.safe:
            c["unsafe"] += 1
        _notify(self.audit_options.on_verdict, verdict, "on_verdict")
        return verdict if stage is None else verdict.at_stage(stage)


def _parsed(call: ParsedCall, completion: Mapping[str, Any]) -> ParsedCall:
    """``call``, marked when its answer came from the interface simulator (the verdict then says so)."""
    return dataclasses.replace(call, simulator=True) if answered_by_simulator(completion) else call


def _notify(callback: Callable[[Verdict], None] | None, verdict: Verdict, name: str) -> None:
    if callback is None:
        return
    try:
        callback(verdict)
    except Exception:  # an audit sink must never break the guarded application
        logger.exception("nemoguard: %s callback failed", name)


def _policy_set(
    policies: PolicySet | Mapping[str, Policy] | str | os.PathLike[str] | None,
) -> PolicySet | None:
    if policies is None or isinstance(policies, PolicySet):
        return policies
    if isinstance(policies, (str, os.PathLike)):
        return PolicySet.load(Path(policies))
    return PolicySet(policies)


__all__ = ["NemoGuard"]

"""``NemoGuard``: one object that turns a conversation into a verdict and an action.

A check is planned, executed and combined:

1. plan (pure): the conversation becomes one or more :class:`CallSpec` - one per text window, one per image
   (the model takes one image per call, always with text), one per policy variant (built-in + custom);
2. execute (I/O): the calls go out concurrently - ``asyncio.gather`` in ``acheck``, a thread pool in ``check``;
3. combine (pure): any unsafe call makes the verdict unsafe; categories merge; suppressed categories are
   dropped; the policy picks the action; failures follow ``on_error`` and are labelled as outages.

Sync and async share steps 1 and 3; only step 2 differs. ``check`` never raises for an operational failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from .budget import (
    DEFAULT_MAX_CONTEXT_TOKENS,
    DEFAULT_MAX_INPUT_CHARS,
    MAX_SPLITS,
    CallSettings,
    aplan_calls,
    check_input,
    is_length_refusal,
    merge_calls,
    plan_calls,
    split_call,
)
from .cache import VerdictCache, cache_key
from .conversation import Conversation, Turn
from .errors import ConfigurationError, ErrorCode, GuardUnavailableError, InvalidInputError
from .formats import MODES, CallSpec, Mode, ModelFormat, Nemotron35Format, ParsedCall
from .formats.base import encode_body
from .formats.nemotron35 import CONSTRAINED_MAX_TOKENS
from .formats.reading import DEFAULT_MAX_COMPLETION_CHARS
from .images import ImageOptions, PreparedImage, aprepare_image, prepare_image
from .policy import Policy, PolicySet
from .providers import resolve
from .transport import DEFAULT_MAX_RESPONSE_BYTES, RetryPolicy, Transport
from .verdict import Action, Verdict, strictest
from .windows import WindowOptions

if TYPE_CHECKING:
    from .streaming import StreamOptions

logger = logging.getLogger("langchain_nemoguard")

OnError = Literal["block", "allow"]

# Enough for each mode's answer; THINK traces measured at 38-184 tokens, 1024 leaves room to close them.
DEFAULT_MAX_TOKENS: Mapping[str, int] = {"fast": 32, "categories": 128, "think": 1024}

# The model needs user text beside an image; an image-only turn is judged with this neutral text.
IMAGE_ONLY_PROMPT = "(The user sent this image without any text.)"


@dataclass(frozen=True, slots=True)
class _Plan:
    specs: tuple[CallSpec, ...]
    policy: Policy
    mode: Mode
    deadline: float | None = None  # monotonic; every call of the check ends by then


class NemoGuard:
    """A content-safety guard backed by Nemotron 3.5 Content Safety.

    >>> guard = NemoGuard()                                   # local vLLM on :8000, or NEMOGUARD_BASE_URL
    >>> v = guard.check(prompt="How do I make a bomb?")
    >>> v.safe, v.categories, v.action
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
        max_concurrency: int = 64,
        max_tokens: int | None = None,
        constrain_output: bool = False,
        cache_size: int = 4096,
        cache_ttl: float = 300.0,
        windows: WindowOptions | None = None,
        image_options: ImageOptions | None = None,
        context_turns: int = 0,
        stream_options: StreamOptions | None = None,
        on_verdict: Callable[[Verdict], None] | None = None,
        audit_think: bool = False,
        on_audit: Callable[[Verdict], None] | None = None,
        model_format: ModelFormat | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        http_async_client: httpx.AsyncClient | None = None,
        deadline: float | None = None,
        max_context_tokens: int = DEFAULT_MAX_CONTEXT_TOKENS,
        max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
        max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if on_error not in ("block", "allow"):
            raise ConfigurationError(f"on_error must be 'block' or 'allow', got {on_error!r}")
        if timeout <= 0 or max_retries < 0 or max_concurrency < 1 or context_turns < 0:
            raise ConfigurationError(
                "timeout must be > 0, max_retries >= 0, max_concurrency >= 1, context_turns >= 0"
            )
        if (deadline is not None and not deadline > 0) or min(
            max_context_tokens, max_input_chars, max_completion_chars, max_response_bytes
        ) < 1:
            raise ConfigurationError(
                "deadline must be > 0; max_context_tokens, max_input_chars, max_completion_chars and "
                "max_response_bytes must be >= 1"
            )
        endpoint = resolve(base_url, provider, model, api_key)
        if constrain_output and not endpoint.provider.supports_structured_outputs:
            raise ConfigurationError(
                f"constrain_output uses vLLM's structured_outputs; provider {endpoint.provider.name!r} does not support it"
            )
        self.provider = endpoint.provider.name
        self.model = endpoint.model
        self.base_urls = endpoint.base_urls
        self.mode: Mode = mode
        self.on_error: OnError = on_error
        self.max_tokens = max_tokens
        self.constrain_output = constrain_output
        self.windows = windows or WindowOptions()
        self.image_options = image_options or ImageOptions()
        self.context_turns = context_turns
        self.max_context_tokens = max_context_tokens
        self.max_input_chars = max_input_chars
        self.max_completion_chars = max_completion_chars
        self.on_verdict = on_verdict
        self.audit_think = audit_think
        self.on_audit = on_audit
        self._sync_audits: set[Future[Any]] = set()
        self.format: ModelFormat = model_format or Nemotron35Format()
        self.policies = _policy_set(policies)
        self.policy = self._resolve_policy(policy)
        self._stream_options = stream_options
        self._transport = Transport(
            endpoint.base_urls,
            api_key=endpoint.api_key,
            timeout=timeout,
            retry=RetryPolicy(max_retries=max_retries),
            max_concurrency=max_concurrency,
            headers=headers,
            http_client=http_client,
            http_async_client=http_async_client,
            deadline=deadline,
            max_response_bytes=max_response_bytes,
        )
        self.deadline = self._transport.deadline
        self._cache: VerdictCache[Verdict] = VerdictCache(maxsize=cache_size, ttl=cache_ttl)
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
    ) -> Verdict:
        """Judge a user prompt (with images) and optionally a response. Never raises for an outage."""
        conv = self._conversation(prompt, response, images, messages, conversation)
        pol, md = self._resolve_policy(policy), self._mode(mode)
        started = time.perf_counter()
        deadline = self._transport.deadline_from_now()
        check_input(conv, max_input_chars=self.max_input_chars, context_turns=self.context_turns)
        images_ready = [prepare_image(src, self.image_options) for src in conv.images]
        key = self._key(conv, pol, md, images_ready)
        hit = self._cache.get(key)
        if hit is not None:
            return self._finish(hit)

        def compute() -> Verdict:
            plan = self._plan(conv, images_ready, pol, md, deadline)
            results = self._execute(plan)
            return self._combine(plan, results, started)

        verdict = self._cache.sync_single_flight(key, compute)
        self._remember(key, verdict)
        if self._wants_audit(md, verdict):
            fut = self._pool().submit(self._audit, conv, pol)
            self._sync_audits.add(fut)
            fut.add_done_callback(self._sync_audits.discard)
        return self._finish(verdict)

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
    ) -> Verdict:
        """Async twin of :meth:`check`."""
        conv = self._conversation(prompt, response, images, messages, conversation)
        pol, md = self._resolve_policy(policy), self._mode(mode)
        started = time.perf_counter()
        deadline = self._transport.deadline_from_now()
        check_input(conv, max_input_chars=self.max_input_chars, context_turns=self.context_turns)
        if conv.images:
            images_ready = list(
                await asyncio.gather(*(aprepare_image(src, self.image_options) for src in conv.images))
            )
        else:
            images_ready = []
        key = self._key(conv, pol, md, images_ready)
        hit = self._cache.get(key)
        if hit is not None:
            return self._finish(hit)
        inflight = self._transport.loop_state().inflight
        shared = inflight.get(key)
        if shared is not None:
            self._cache.stats.shared += 1
            try:
                verdict: Verdict = await asyncio.shield(shared)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # the leader was cancelled, not us: ask ourselves
                return await self.acheck(conversation=conv, policy=pol, mode=md)
            return self._finish(verdict.replace(latency_ms=(time.perf_counter() - started) * 1e3))
        fut: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        inflight[key] = fut
        try:
            plan = await self._aplan(conv, images_ready, pol, md, deadline)
            results = await self._aexecute(plan)
            verdict = self._combine(plan, results, started)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: followers re-raise it themselves
            raise
        finally:
            inflight.pop(key, None)
        fut.set_result(verdict)
        self._remember(key, verdict)
        if self._wants_audit(md, verdict):
            state = self._transport.loop_state()
            task = asyncio.ensure_future(self._aaudit(conv, pol))
            state.background.add(task)
            task.add_done_callback(state.background.discard)
        return self._finish(verdict)

    def flush_audits(self, timeout: float | None = None) -> None:
        """Wait for background THINK audits started by sync checks (e.g. before shutdown)."""
        for fut in list(self._sync_audits):
            fut.result(timeout)

    async def aflush_audits(self) -> None:
        """Wait for background THINK audits started by async checks on this event loop."""
        pending = list(self._transport.loop_state().background)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # --- THINK audits: a reasoning trace for the record, off the hot path ------------------------------------

    def _wants_audit(self, mode: Mode, verdict: Verdict) -> bool:
        return self.audit_think and mode != "think" and verdict.error is None

    def _audit(self, conv: Conversation, policy: Policy) -> Verdict:
        return self._deliver_audit(self.check(conversation=conv, policy=policy, mode="think"))

    async def _aaudit(self, conv: Conversation, policy: Policy) -> Verdict:
        return self._deliver_audit(await self.acheck(conversation=conv, policy=policy, mode="think"))

    def _deliver_audit(self, verdict: Verdict) -> Verdict:
        logger.info("nemoguard audit (think): %s; reasoning: %s", verdict.reason, verdict.reasoning)
        _notify(self.on_audit, verdict, "on_audit")
        return verdict

    def wrap(self, runnable: Any, **kwargs: Any) -> Any:
        """A LangChain Runnable that checks ``runnable``'s input and output (``pip install ...[langchain]``)."""
        from ..runnable import GuardedRunnable

        return GuardedRunnable(guard=self, inner=runnable, **kwargs)

    def stream_options(self) -> StreamOptions:
        from .streaming import StreamOptions

        return self._stream_options or StreamOptions()

    def stats(self) -> dict[str, Any]:
        """Counters for dashboards and tests: checks, unsafe, errors, fail-open, calls, cache, endpoints."""
        return {
            **self._counters,
            "cache": self._cache.stats.as_dict(),
            "endpoints": self._transport.pool.snapshot(),
        }

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._transport.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def aclose(self) -> None:
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

    def _resolve_policy(self, policy: Policy | str | None) -> Policy:
        if isinstance(policy, Policy):
            return policy
        if policy is None:
            current = getattr(self, "policy", None)
            if current is not None:
                return current
            return self.policies.default if self.policies is not None else Policy()
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

    def _key(
        self, conv: Conversation, policy: Policy, mode: Mode, images: Sequence[PreparedImage] = ()
    ) -> str:
        parts: list[str | bytes] = [
            self.format.name,
            self.model,
            mode,
            str(self.max_tokens),
            str(self.constrain_output),
            policy.fingerprint,
            conv.prompt,
            "\x00" if conv.response is None else "\x01" + conv.response,
        ]
        if self.context_turns:
            parts += [f"{t.role}:{t.text}" for t in conv.history[-self.context_turns :]]
        parts += [img.digest for img in images]  # what the model sees: prepared bytes, fetched content
        return cache_key(parts)

    # --- step 1: plan -------------------------------------------------------------------------------------------

    def _call_settings(self) -> CallSettings:
        return CallSettings(
            fmt=self.format,
            windows=self.windows,
            max_context_tokens=self.max_context_tokens,
            max_tokens=self.max_tokens,
            constrain_output=self.constrain_output,
            max_completion_chars=self.max_completion_chars,
        )

    def _plan_args(
        self, conv: Conversation, images: Sequence[PreparedImage], policy: Policy, mode: Mode
    ) -> tuple[Any, ...]:
        prompt = conv.prompt if conv.prompt.strip() else (IMAGE_ONLY_PROMPT if images else "")
        response = conv.response if conv.has_response else None
        history = self._history(conv.history)
        return (self._call_settings(), prompt, response, images, history, policy, mode)

    def _plan_kwargs(self, policy: Policy, mode: Mode) -> dict[str, Any]:
        limits = CONSTRAINED_MAX_TOKENS if self.constrain_output else DEFAULT_MAX_TOKENS
        return {"categories": mode != "fast" or policy.needs_categories, "default_answer": limits[mode]}

    def _plan(
        self,
        conv: Conversation,
        images: Sequence[PreparedImage],
        policy: Policy,
        mode: Mode,
        deadline: float | None = None,
    ) -> _Plan:
        specs = plan_calls(*self._plan_args(conv, images, policy, mode), **self._plan_kwargs(policy, mode))
        return _Plan(specs, policy, mode, deadline)

    async def _aplan(
        self,
        conv: Conversation,
        images: Sequence[PreparedImage],
        policy: Policy,
        mode: Mode,
        deadline: float | None = None,
    ) -> _Plan:
        args = self._plan_args(conv, images, policy, mode)
        specs = await aplan_calls(*args, **self._plan_kwargs(policy, mode))
        return _Plan(specs, policy, mode, deadline)

    def _history(self, history: Sequence[Turn]) -> tuple[tuple[str, str], ...]:
        """The last N earlier turns, reshaped to alternate from ``user`` and end on ``assistant``."""
        if not self.context_turns or not history:
            return ()
        merged: list[list[str]] = []
        for turn in history[-self.context_turns :]:
            if merged and merged[-1][0] == turn.role:
                merged[-1][1] += "\n" + turn.text
            else:
                merged.append([turn.role, turn.text])
        while merged and merged[0][0] != "user":
            merged.pop(0)
        while merged and merged[-1][0] != "assistant":
            merged.pop()
        return tuple((r, t) for r, t in merged)

    # --- step 2: execute ----------------------------------------------------------------------------------------

    def _body(self, spec: CallSpec) -> bytes:
        return encode_body(self.format.build(spec, self.model))

    def _call(
        self, spec: CallSpec, deadline: float | None = None, splits: int = 0
    ) -> ParsedCall | GuardUnavailableError:
        try:
            completion = self._transport.post("chat/completions", self._body(spec), deadline=deadline)
            return self.format.parse(completion, spec)
        except GuardUnavailableError as exc:
            halves = split_call(spec) if splits < MAX_SPLITS and is_length_refusal(exc) else None
            if halves is None:
                return exc
            self._counters["calls"] += len(halves)  # refused for length: judged in halves instead
            return merge_calls([self._call(h, deadline, splits + 1) for h in halves])

    async def _acall(
        self, spec: CallSpec, deadline: float | None = None, splits: int = 0
    ) -> ParsedCall | GuardUnavailableError:
        try:
            completion = await self._transport.apost("chat/completions", self._body(spec), deadline=deadline)
            return self.format.parse(completion, spec)
        except GuardUnavailableError as exc:
            halves = split_call(spec) if splits < MAX_SPLITS and is_length_refusal(exc) else None
            if halves is None:
                return exc
            self._counters["calls"] += len(halves)
            return merge_calls(await asyncio.gather(*(self._acall(h, deadline, splits + 1) for h in halves)))

    def _execute(self, plan: _Plan) -> list[ParsedCall | GuardUnavailableError]:
        self._counters["calls"] += len(plan.specs)
        if len(plan.specs) == 1:
            return [self._call(plan.specs[0], plan.deadline)]
        return list(self._pool().map(lambda spec: self._call(spec, plan.deadline), plan.specs))

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="nemoguard")
        return self._executor

    async def _aexecute(self, plan: _Plan) -> list[ParsedCall | GuardUnavailableError]:
        self._counters["calls"] += len(plan.specs)
        if len(plan.specs) == 1:
            return [await self._acall(plan.specs[0], plan.deadline)]
        return list(await asyncio.gather(*(self._acall(s, plan.deadline) for s in plan.specs)))

    # --- step 3: combine -----------------------------------------------------------------------------------------

    def _combine(
        self, plan: _Plan, results: Sequence[ParsedCall | GuardUnavailableError], started: float
    ) -> Verdict:
        policy = plan.policy
        user_unsafe = response_unsafe = False
        response_judged = False
        categories: list[str] = []
        suppressed: list[str] = []
        traces: list[str] = []
        raws: list[str] = []
        errors: list[GuardUnavailableError] = []
        truncated = think_ignored = False
        for spec, res in zip(plan.specs, results, strict=True):
            if isinstance(res, GuardUnavailableError):
                errors.append(res)
                continue
            raws.append(res.raw)
            if res.reasoning:
                traces.append(res.reasoning)
            call_unsafe_user = res.user_safe is False
            call_unsafe_resp = res.response_safe is False
            think_ignored |= res.trace_missing
            if spec.response is not None:
                response_judged = True
            if call_unsafe_user or call_unsafe_resp:
                truncated |= res.truncated
            if (call_unsafe_user or call_unsafe_resp) and res.categories:
                kept, dropped = policy.suppress(res.categories)
                suppressed += dropped
                # every reason the call gave is one the policy ignores - trusted only from a clean, whole answer
                if not kept and res.clean and not res.truncated:
                    call_unsafe_user = call_unsafe_resp = False
                categories += kept
            user_unsafe |= call_unsafe_user
            response_unsafe |= call_unsafe_resp
        latency = (time.perf_counter() - started) * 1e3
        common = {
            "policy": policy.name,
            "model": self.model,
            "mode": plan.mode,
            "latency_ms": latency,
            "calls": len(plan.specs),
            "reasoning": "\n\n".join(dict.fromkeys(traces)) or None,
            "suppressed_categories": tuple(dict.fromkeys(suppressed)),
            "raw_output": "\n---\n".join(raws) or None,
            "think_ignored": think_ignored,
        }
        cats = tuple(dict.fromkeys(categories))
        if user_unsafe or response_unsafe:
            # A known-unsafe answer stands even if another call failed: nothing unsafe passes for an outage.
            action = policy.action_for(cats)
            if truncated:  # the cut list may have named a stricter category
                action = strictest([action, *policy.actions.values()])
            return Verdict(
                user_safe=not user_unsafe,
                response_safe=(not response_unsafe) if response_judged else None,
                categories=cats,
                safe=False,
                action=action,
                truncated=truncated,
                **common,
            )
        if errors:
            first = errors[0]
            fail_open = self.on_error == "allow"
            msg = str(first) if len(errors) == 1 else f"{first} (and {len(errors) - 1} more failed calls)"
            return Verdict(
                user_safe=None,
                response_safe=None,
                error=first.code,
                error_message=msg,
                safe=fail_open,
                action=Action.ALLOW if fail_open else Action.BLOCK,
                **common,
            )
        return Verdict(
            user_safe=True,
            response_safe=True if response_judged else None,
            safe=True,
            action=Action.ALLOW,
            **common,
        )

    def _remember(self, key: str, verdict: Verdict) -> None:
        """Cache a verdict (never an error), stored as the copy hits return: ``cached=True``, no latency."""
        if verdict.error is None and self._cache.maxsize > 0:
            self._cache.put(key, verdict.replace(cached=True, latency_ms=0.0))

    def _finish(self, verdict: Verdict) -> Verdict:
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
        _notify(self.on_verdict, verdict, "on_verdict")
        return verdict


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


__all__ = ["DEFAULT_MAX_TOKENS", "IMAGE_ONLY_PROMPT", "ErrorCode", "NemoGuard"]

"""``NemoGuardrail``: Nemotron 3.5 Content Safety as a LiteLLM guardrail (proxy and SDK).

The class only translates: each route's request, response and stream shapes in (``translate.py``), the core's
checks, verdicts and outcomes out. What is judged is the core's one coverage rule (``core.coverage``, the table
in ``docs/coverage.md``); every decision LangChain needs too (the policy's action, windowing a stream) is made
by ``langchain_nemoguard.core``.

The guardrail uses LiteLLM's native lifecycle hooks (``use_native_lifecycle_hooks``) rather than LiteLLM's
per-route text extraction, so that it reads every route's full request and response itself - system prompts,
tool results, tool-call arguments, reasoning, Responses items, Anthropic blocks, image-only turns - and refuses
what it cannot read instead of never seeing it:

* ``pre_call``: :meth:`async_pre_call_hook` judges the request before the model runs;
* ``during_call``: :meth:`async_moderation_hook` judges it beside the model call;
* ``post_call``: :meth:`async_post_call_success_hook` judges complete responses and
  :meth:`async_post_call_streaming_iterator_hook` streams (chat chunks, Responses events, Anthropic SSE,
  completion chunks): no chunk leaves before the window holding it was judged.

In the SDK, LiteLLM calls the same hooks through its deployment hooks; ``default_on`` is honoured there too
(LiteLLM's SDK would otherwise run a guardrail only when a call passes ``guardrails=[...]``).

A setting that cannot be honoured raises :class:`GuardrailConfigurationError` from the constructor. It is not a
``ValueError`` on purpose: LiteLLM skips a guardrail whose constructor raises ``ValueError`` or ``TypeError`` and
starts the proxy without it; any other exception stops the proxy's start, with the reason in its log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, ClassVar, Final, Literal

from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.types.guardrails import GuardrailEventHooks, LitellmParams
from litellm.types.proxy.guardrails.guardrail_hooks.base import GuardrailConfigModel
from litellm.types.utils import CallTypes, CallTypesLiteral, GenericGuardrailAPIInputs

from langchain_nemoguard.core.conversation import Conversation
from langchain_nemoguard.core.coverage import Check, ajudge, decisive
from langchain_nemoguard.core.errors import ContentBlockedError, InvalidInputError, NemoGuardError, Stage
from langchain_nemoguard.core.guard import NemoGuard
from langchain_nemoguard.core.policy import Policy
from langchain_nemoguard.core.streaming import StreamGuard, StreamRefusal
from langchain_nemoguard.core.verdict import Outcome, Verdict

from .config import SETTING_NAMES, NemoGuardrailConfigModel, NemoGuardrailSettings, build_guard
from .translate import (
    StreamEnd,
    blocked_error,
    invalid_input_error,
    metadata_buckets,
    policy_not_available_error,
    request_checks,
    request_prompt,
    response_checks,
    rewrite_response,
    status,
    stream_text,
)

logger = logging.getLogger("langchain_nemoguard.litellm")

GUARDRAIL_PROVIDER: Final = "nemoguard"
# The key a request, a virtual key or a team names a policy with, in its metadata.
POLICY_METADATA_KEY: Final = "nemoguard_policy"
# LiteLLM's metric label for a pass that only happened because the guard failed open.
FAIL_OPEN_ERROR_TYPE: Final = "GuardrailFailOpen"

_SUPPORTED: Final = frozenset({"pre_call", "during_call", "post_call"})
# Settings of ours that LiteLLM's own keys would shadow, and what they are called here.
_RENAMED: Final = {
    "action": "unsafe_action (`action` is LiteLLM's own setting)",
    "allow_request_policy": "request_policies (an allow-list; requests cannot choose a policy by default)",
}
# Constructor arguments of CustomGuardrail that LiteLLM passes besides the config's litellm_params.
_LITELLM_ARGS: Final = frozenset(
    {
        "supported_event_hooks",
        "mask_request_content",
        "mask_response_content",
        "violation_message_template",
        "end_session_after_n_fails",
        "on_violation",
        "realtime_violation_message",
        "on_sensitive_data",
        "sensitive_data_route_to_model",
        "sticky_session_routing",
        "run_in_parallel",
        "scan_raw_request",
        "only_scan_new_messages",
        "timeout",
    }
)


class GuardrailConfigurationError(NemoGuardError, RuntimeError):
    """A guardrail setting cannot be honoured; raised by the constructor (and stops a proxy's start).

    Args:
        guardrail: The entry's ``guardrail_name``.
        reason: What is wrong, naming the setting.
    """

    def __init__(self, guardrail: str | None, reason: str) -> None:
        self.guardrail = guardrail
        self.reason = reason
        super().__init__(
            f"guardrail {guardrail!r} is misconfigured: {reason}. NemoGuard refuses to run (and the proxy to "
            "start) rather than let requests through unguarded"
        )


class NemoGuardrail(CustomGuardrail):
    """Judge requests and responses passing a LiteLLM proxy (or the SDK) with Nemotron 3.5 Content Safety.

    Proxy ``config.yaml``::

        guardrails:
          - guardrail_name: nemoguard
            litellm_params:
              guardrail: litellm_hook.NemoGuardrail
              mode: [pre_call, post_call]
              default_on: true
              api_base: os.environ/NEMOGUARD_BASE_URL

    Settings (all optional, ``litellm_params`` keys): ``api_base``, ``api_key`` (``os.environ/NAME`` works),
    ``guard_model``, ``provider``, ``guard_mode`` (fast | categories | think), ``policy_file``, ``policy`` (the
    default policy's name), ``request_policies`` (the policies a request may choose), ``on_error`` (block |
    allow), ``timeout``, ``max_retries``, ``unsafe_action`` (block | rewrite | log: what an unsafe verdict does
    unless the policy maps the category itself), ``check_system``, ``check_tool_results``, ``check_reasoning``,
    ``check_embeddings``, ``stream_window_chars``, ``stream_overlap_chars``, ``stream_first_window_chars``,
    ``stream_pass_through``.
    """

    # Read every route's request and response ourselves (see the module docstring).
    use_native_lifecycle_hooks: ClassVar[bool] = True
    # We record one rich entry per verdict ourselves (categories, latency, reasoning) and add the
    # applied-guardrails header ourselves, so LiteLLM's generic "allow"/"mask" entry is not added beside it.
    records_own_guardrail_information: ClassVar[bool] = True
    use_native_during_call_hook: ClassVar[bool] = True

    SUPPORTED_EVENT_HOOKS: ClassVar[tuple[GuardrailEventHooks, ...]] = (
        GuardrailEventHooks.pre_call,
        GuardrailEventHooks.during_call,
        GuardrailEventHooks.post_call,
    )

    def __init__(
        self,
        guardrail_name: str | None = None,
        event_hook: Any = None,
        default_on: bool = False,
        *,
        guard: NemoGuard | None = None,
        **kwargs: Any,
    ) -> None:
        """Build the guardrail from a proxy config entry or by hand.

        Args:
            guardrail_name: The entry's ``guardrail_name``.
            event_hook: LiteLLM's ``mode``: ``pre_call``, ``during_call``, ``post_call`` or a list of them.
            default_on: Run on every request (in the proxy and, unlike LiteLLM's other guardrails, in the SDK).
            guard: A ready :class:`NemoGuard` (the NemoGuard settings are then only used for streams, coverage
                and request policies).
            **kwargs: The NemoGuard settings (:class:`NemoGuardrailSettings`) and LiteLLM's own settings, which
                go to ``CustomGuardrail``.

        Raises:
            GuardrailConfigurationError: A setting is unknown, invalid, conflicting or would never block.
        """
        try:
            settings, on_error, litellm_kwargs = _read_settings(event_hook, kwargs)
            super().__init__(
                guardrail_name=guardrail_name,
                supported_event_hooks=list(self.SUPPORTED_EVENT_HOOKS),
                event_hook=event_hook,
                default_on=default_on,
                **litellm_kwargs,
            )
            self.settings = settings
            self.request_policies = frozenset(settings.request_policies)
            self.stream_options = settings.stream_options()
            self.guard = guard if guard is not None else build_guard(settings, on_error)
            self.coverage = settings.coverage() if guard is None or _any_coverage_setting(kwargs) else guard.coverage
        except (NemoGuardError, ValueError, TypeError) as exc:
            if isinstance(exc, GuardrailConfigurationError):
                raise
            error = GuardrailConfigurationError(guardrail_name, str(exc))
            logger.error("%s", error)
            raise error from None
        logger.info(
            "NemoGuard guardrail %r: hooks %s, default_on=%s, guard %s",
            guardrail_name,
            _hook_names(self.event_hook),
            default_on,
            self.guard,
        )

    def __repr__(self) -> str:  # the guard's repr never shows the key
        return f"NemoGuardrail(name={self.guardrail_name!r}, event_hook={self.event_hook!r}, guard={self.guard!r})"

    @classmethod
    def get_supported_event_hooks(cls) -> list[GuardrailEventHooks]:
        """pre_call, during_call and post_call."""
        return list(cls.SUPPORTED_EVENT_HOOKS)

    @staticmethod
    def get_config_model() -> type[GuardrailConfigModel[Any]] | None:
        """The typed settings model LiteLLM reads (its admin UI renders the fields from it)."""
        return NemoGuardrailConfigModel

    # --- LiteLLM hooks: input ------------------------------------------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: CallTypesLiteral
    ) -> Any:
        """pre_call: judge everything the request carries to the model (see ``docs/coverage.md``).

        Args:
            user_api_key_dict: The caller's key (its metadata may pin a policy).
            cache: LiteLLM's cache (unused).
            data: The request.
            call_type: LiteLLM's call type (which route's shape ``data`` has).

        Returns:
            ``data`` unchanged (or raises: 400 block, 503 outage, 400 unreadable content).
        """
        await self._judge_request(data, user_api_key_dict, call_type, GuardrailEventHooks.pre_call)
        return data

    async def async_moderation_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, call_type: CallTypesLiteral
    ) -> Any:
        """during_call: judge the request while the model already runs (a block discards its answer).

        Args:
            data: The request.
            user_api_key_dict: The caller's key (its metadata may pin a policy).
            call_type: LiteLLM's call type.
        """
        await self._judge_request(data, user_api_key_dict, call_type, GuardrailEventHooks.during_call)
        return data

    async def apply_guardrail(
        self,
        inputs: GenericGuardrailAPIInputs,
        request_data: dict[str, Any],
        input_type: Literal["request", "response"],
        logging_obj: Any = None,
    ) -> GenericGuardrailAPIInputs:
        """LiteLLM's unified entry point (``POST /apply_guardrail`` and pipelines): judge the given texts.

        Args:
            inputs: ``texts`` and ``images`` to judge.
            request_data: The request (metadata picks the policy; results are logged into it).
            input_type: ``request`` (judged as user input) or ``response`` (as the model's answer).
            logging_obj: LiteLLM's logging object (unused).

        Returns:
            ``inputs`` unchanged, or with the texts replaced by the refusal (``rewrite`` of a response).
        """
        policy = self._policy_for(request_data, None)
        texts = [t for t in inputs.get("texts") or [] if isinstance(t, str)]
        text = "\n".join(t for t in texts if t)
        try:
            if input_type == "request":
                from langchain_nemoguard.core.conversation import image_reference

                images = tuple(
                    image_reference(ref, where=f"images[{i}]") for i, ref in enumerate(inputs.get("images") or ())
                )
                if not text.strip() and not images:
                    return inputs
                check = Check(Conversation(prompt=text, images=images), Stage.INPUT)
            else:
                if not text.strip():
                    return inputs
                check = Check(Conversation(prompt=request_prompt(None, request_data), response=text), Stage.OUTPUT)
        except InvalidInputError as exc:
            raise invalid_input_error(exc, self.guardrail_name) from None
        event = GuardrailEventHooks.pre_call if input_type == "request" else GuardrailEventHooks.post_call
        outcome = await self._judge_checks([check], policy, request_data, event)
        if outcome is Outcome.REFUSE and input_type == "response":
            return {**inputs, "texts": [policy.refusal, *([""] * (len(texts) - 1))]}
        return inputs

    # --- LiteLLM hooks: output -----------------------------------------------------------------------------------

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> Any:
        """post_call: judge a complete response - text, tool calls, reasoning, structured output, on any route.

        Args:
            data: The request (its user turn is the context; verdicts are logged into it).
            user_api_key_dict: The caller's key (its metadata may pin a policy).
            response: The model's response.

        Returns:
            The response, or the same response with its content replaced by the refusal (``rewrite``).
        """
        policy = self._policy_for(data, user_api_key_dict)
        call_type = _call_type_of(data, user_api_key_dict)
        try:
            check = response_checks(response, request_prompt(call_type, data), self.coverage)
        except InvalidInputError as exc:
            raise invalid_input_error(exc, self.guardrail_name) from None
        if check is None:
            return response
        outcome = await self._judge_checks([check], policy, data, GuardrailEventHooks.post_call)
        if outcome is Outcome.REFUSE:
            return rewrite_response(response, policy.refusal)
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        """post_call on streams: release chunks window by window once judged (or at once with pass-through).

        A block before anything was sent is an HTTP 400 like a non-streamed block; a block after text was sent
        ends the stream the route's own way (chat: ``finish_reason="content_filter"``; Responses:
        ``response.incomplete`` with reason ``content_filter``; Anthropic: ``stop_reason: refusal``) and never
        sends the unsafe window.

        Args:
            user_api_key_dict: The caller's key (its metadata may pin a policy).
            response: The upstream stream of chunks.
            request_data: The request (its user turn is the context; verdicts are logged into it).
        """
        policy = self._policy_for(request_data, user_api_key_dict)
        call_type = _call_type_of(request_data, user_api_key_dict)
        stream: StreamGuard[Any] = StreamGuard(
            self.guard,
            prompt=request_prompt(call_type, request_data),
            policy=policy,
            options=self.stream_options,
            stage=Stage.OUTPUT,
        )
        end = StreamEnd()
        sent = 0
        coverage = self.coverage
        try:
            async for item in stream.aiter(response, lambda c: stream_text(c, coverage)):
                if isinstance(item, StreamRefusal):
                    for chunk in end.chunks(policy.refusal, inline=item.text):
                        yield chunk
                    return
                end.seen(item)
                sent += 1
                yield item
        except ContentBlockedError as exc:
            if sent == 0:
                raise self._blocked(exc.verdict, Stage.OUTPUT) from None
            for chunk in end.chunks(None):
                yield chunk
        finally:
            for verdict in stream.verdicts:
                self._record(verdict, request_data, Stage.OUTPUT, GuardrailEventHooks.post_call, ())

    def apply_stream_scope(self, stream_scope: object) -> None:
        """LiteLLM's ``stream_scope``, refused unless it is ``both``: any other scope lets the requests outside
        it pass unjudged (a mode LiteLLM accepts that would never block them).

        Args:
            stream_scope: ``streaming``, ``non_streaming``, ``both`` or a per-mode mapping.
        """
        super().apply_stream_scope(stream_scope)
        narrowed = self.stream_scope_default != "both" or any(s != "both" for _, s in self.stream_scope_by_hook)
        if narrowed:
            error = GuardrailConfigurationError(
                self.guardrail_name,
                f"stream_scope {stream_scope!r} leaves the requests outside that scope unjudged; "
                "remove it (NemoGuard judges streamed and non-streamed requests alike)",
            )
            logger.error("%s", error)
            raise error

    # --- SDK: default_on means on --------------------------------------------------------------------------------

    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: CallTypes | None
    ) -> dict[str, Any] | None:
        """SDK pre_call: LiteLLM runs it only for calls passing ``guardrails=[...]``; ``default_on`` runs it anyway.

        A streamed SDK call with ``post_call`` is refused: LiteLLM's SDK has no hook that can hold a stream back,
        so its output could not be judged before the caller reads it (use the proxy, or ``StreamGuard``).

        Args:
            kwargs: The call's arguments.
            call_type: LiteLLM's call type.
        """
        sdk_default = self._sdk_default_on(kwargs)
        if sdk_default:
            kwargs = {**kwargs, "guardrails": []}
        streamed = bool(kwargs.get("stream")) and not kwargs.get("proxy_server_request")
        if streamed and isinstance(kwargs.get("guardrails"), list) and self._runs(kwargs, GuardrailEventHooks.post_call):
            raise invalid_input_error(
                InvalidInputError(
                    "LiteLLM's SDK cannot hold a stream back for a post_call guardrail; call without "
                    "stream=True, use the proxy, or guard the stream with StreamGuard"
                ),
                self.guardrail_name,
            )
        result = await super().async_pre_call_deployment_hook(kwargs, call_type)
        if sdk_default and isinstance(result, dict):
            result.pop("guardrails", None)
        return result

    def runs_post_call_deployment_hook(self, request_data: Mapping[str, object]) -> bool:
        """Whether the SDK's post-call hook runs this guardrail: as LiteLLM decides, or ``default_on``.

        Args:
            request_data: The call's arguments.
        """
        if self._sdk_default_on(request_data):
            return self._runs(dict(request_data), GuardrailEventHooks.post_call)
        return super().runs_post_call_deployment_hook(request_data)

    def _sdk_default_on(self, kwargs: Mapping[str, object]) -> bool:
        """True for an SDK call that does not name guardrails while this one is ``default_on``.

        Calls that came through the proxy (``proxy_server_request``) were judged by the proxy's own hooks.
        """
        return (
            bool(self.default_on)
            and not isinstance(kwargs.get("guardrails"), list)
            and kwargs.get("proxy_server_request") is None
        )

    def _runs(self, data: dict[str, Any], event: GuardrailEventHooks) -> bool:
        return self.should_run_guardrail(data=data, event_type=event) is True

    # --- policy ------------------------------------------------------------------------------------------------

    def _policy_for(self, request_data: Mapping[str, Any], user_api_key_dict: Any) -> Policy:
        """The policy: pinned on the key (else its team), else chosen by the request from ``request_policies``,
        else the default. A request naming a policy it may not use gets a 400 that lists no policies."""
        pinned = _pinned_policy(user_api_key_dict)
        requested = self._requested_policy(request_data)
        if requested is not None and requested != pinned and (pinned is not None or requested not in self.request_policies):
            raise policy_not_available_error(requested, self.guardrail_name)
        name = pinned or requested
        try:
            return self.guard.policy_for(name)
        except NemoGuardError:  # a key pinned to a policy this guardrail does not have
            logger.error("NemoGuard guardrail %r: the key or team names an unknown policy %r", self.guardrail_name, name)
            raise policy_not_available_error(str(name), self.guardrail_name) from None

    def _requested_policy(self, request_data: Mapping[str, Any]) -> str | None:
        for entry in self.get_guardrail_from_metadata(dict(request_data)):
            if isinstance(entry, Mapping) and self.guardrail_name in entry:
                params = entry[self.guardrail_name] or {}
                extra = params.get("extra_body") if isinstance(params, Mapping) else None
                if isinstance(extra, Mapping) and extra.get("policy"):
                    return str(extra["policy"])
        for bucket in metadata_buckets(request_data):
            if bucket.get(POLICY_METADATA_KEY):
                return str(bucket[POLICY_METADATA_KEY])
        return None

    # --- verdicts --------------------------------------------------------------------------------------------

    async def _judge_request(
        self, data: dict[str, Any], user_api_key_dict: Any, call_type: str | None, event: GuardrailEventHooks
    ) -> None:
        policy = self._policy_for(data, user_api_key_dict)
        try:
            checks = request_checks(call_type, data, self.coverage)
        except InvalidInputError as exc:
            raise invalid_input_error(exc, self.guardrail_name) from None
        if not checks:
            return
        outcome = await self._judge_checks(checks, policy, data, event)
        if outcome is Outcome.REFUSE:
            self.raise_passthrough_exception(
                violation_message=policy.refusal, request_data=data, detection_info={"stage": "input"}
            )

    async def _judge_checks(
        self, checks: Sequence[Check], policy: Policy, request_data: dict[str, Any], event: GuardrailEventHooks
    ) -> Outcome:
        """Judge the checks concurrently, record every verdict, and act on the decisive one: pass, refuse
        (returned: the caller writes the refusal) or block (raised)."""
        try:
            verdicts = await ajudge(self.guard, checks, policy)
        except InvalidInputError as exc:
            raise invalid_input_error(exc, self.guardrail_name) from None
        for check, verdict in zip(checks, verdicts, strict=True):
            self._record(verdict, request_data, check.stage, event, check.channels)
        found = decisive(checks, verdicts)
        if found is None:
            return Outcome.PASS
        check, verdict = found
        outcome = verdict.outcome
        if outcome is Outcome.BLOCK:
            raise self._blocked(verdict, check.stage)
        return outcome

    def _blocked(self, verdict: Verdict, stage: Stage) -> HTTPException:
        return blocked_error(verdict, stage, self.guardrail_name)

    def _record(
        self,
        verdict: Verdict,
        request_data: dict[str, Any],
        stage: Stage,
        event: GuardrailEventHooks,
        channels: Sequence[Any],
    ) -> None:
        """One ``standard_logging_guardrail_information`` entry per verdict, and the applied-guardrails header.

        LiteLLM sanitises a guardrail's payload three times before it records it (drops exceptions and callables,
        redacts keys named ``match``/``regex``, masks values under secret-named keys), each a walk and a deep copy
        costing proxy CPU on every request. On :func:`log_payload` all three are the identity - fixed keys, plain
        values, none of those names - so LiteLLM is handed the payload's JSON (a string it passes through, and
        what its OpenTelemetry span would have serialised the dict to), and the recorded entry then gets the
        dict itself, the same object everywhere LiteLLM put the entry.
        """
        payload = log_payload(verdict, stage, channels)
        placeholder = json.dumps(payload, separators=(",", ":"))
        self.add_standard_logging_guardrail_information_to_request_data(
            guardrail_json_response=placeholder,
            request_data=request_data,
            guardrail_status=status(verdict),
            duration=verdict.latency_ms / 1e3,
            guardrail_provider=GUARDRAIL_PROVIDER,
            event_type=event,
            tracing_detail={
                "violation_categories": list(verdict.categories),
                "guardrail_action": verdict.action.value,
                "policy_template": verdict.policy,
                "detection_method": verdict.mode,
            },
        )
        _put_payload(request_data, placeholder, payload)
        if verdict.error is not None and verdict.safe:
            _count_fail_open(self.guardrail_name, event)
        try:
            from litellm.proxy.common_utils.callback_utils import add_guardrail_to_applied_guardrails_header
        except ImportError:  # SDK without the proxy extras: there is no header to set
            return
        add_guardrail_to_applied_guardrails_header(request_data=request_data, guardrail_name=self.guardrail_name)


def _put_payload(request_data: Mapping[str, Any], placeholder: str, payload: dict[str, Any]) -> None:
    """Replace ``placeholder`` (identity) with ``payload`` in the entry LiteLLM just recorded into ``request_data``.

    Should a LiteLLM release record the entry elsewhere, the entry keeps the payload as a JSON string (nothing is
    lost, and the request is not failed over its logging) and a warning says so.
    """
    for bucket_name in ("metadata", "litellm_metadata"):
        bucket = request_data.get(bucket_name)
        entries = bucket.get("standard_logging_guardrail_information") if isinstance(bucket, Mapping) else None
        if not isinstance(entries, list):
            continue
        for entry in reversed(entries):
            if isinstance(entry, dict) and entry.get("guardrail_response") is placeholder:
                entry["guardrail_response"] = payload
                return
    logger.warning("NemoGuard: LiteLLM recorded the guardrail entry elsewhere; its guardrail_response stays JSON text")


def log_payload(verdict: Verdict, stage: Stage, channels: Sequence[Any]) -> dict[str, Any]:
    """The ``guardrail_response`` of one verdict's logging entry: small and flat (never the user's text or a key).

    Always ``safe``, ``categories``, ``action``, ``latency_ms``, ``stage`` and ``channels``; ``user_safe``,
    ``response_safe``, ``error``, ``error_message``, ``policy``, ``model``, ``reasoning`` and ``score`` when they
    have a value (LiteLLM's logging drops ``None`` values anyway); ``suppressed_categories``, ``cached``,
    ``simulator``, ``truncated`` and ``think_ignored`` only when set, and ``calls`` only when the check made more
    than one model call (the guard mode is the entry's ``detection_method``). LiteLLM would walk this payload
    three times on every call and deep-copy it with the request, so every key costs proxy CPU on every request;
    a field at its default says nothing a reader needs.

    Args:
        verdict: The verdict.
        stage: The stage it judged.
        channels: What it covered (``Channel`` values or strings).
    """
    payload: dict[str, Any] = {
        "safe": verdict.safe,
        "categories": list(verdict.categories),
        "action": verdict.action.value,
        "latency_ms": round(verdict.latency_ms, 3),
        "stage": stage.value,
        "channels": [str(getattr(c, "value", c)) for c in channels],
    }
    optional = {
        "user_safe": verdict.user_safe,
        "response_safe": verdict.response_safe,
        "error": verdict.error.value if verdict.error is not None else None,
        "error_message": verdict.error_message,
        "policy": verdict.policy,
        "model": verdict.model,
        "reasoning": verdict.reasoning,
        "score": verdict.score,
    }
    payload.update((k, v) for k, v in optional.items() if v is not None)
    if verdict.calls != 1:
        payload["calls"] = verdict.calls
    if verdict.suppressed_categories:
        payload["suppressed_categories"] = list(verdict.suppressed_categories)
    for flag in ("cached", "simulator", "truncated", "think_ignored"):
        if getattr(verdict, flag):
            payload[flag] = True
    return payload


# --- construction ----------------------------------------------------------------------------------------------------


def _read_settings(
    event_hook: Any, kwargs: Mapping[str, Any]
) -> tuple[NemoGuardrailSettings, Literal["block", "allow"], dict[str, Any]]:
    """Split the constructor's keywords into our settings and LiteLLM's, refusing what cannot be honoured."""
    for old, new in _RENAMED.items():
        # LiteLLM always passes its own `action` with its default ("block"); any other value was meant for us
        if kwargs.get(old) is not None and not (old == "action" and kwargs[old] == "block"):
            raise ValueError(f"`{old}` is not a NemoGuard setting; use {new}")
    known_litellm = set(LitellmParams.model_fields) | _LITELLM_ARGS
    unknown = sorted(k for k in kwargs if k not in SETTING_NAMES and k not in known_litellm)
    if unknown:
        raise ValueError(
            f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} (neither "
            "NemoGuard's nor LiteLLM's; see docs/litellm.md for the settings)"
        )
    hooks = _hook_names(event_hook)
    never = sorted(h for h in hooks if h not in _SUPPORTED)
    if never or event_hook is None:
        raise ValueError(
            f"mode {sorted(hooks) or None} cannot block anything; NemoGuard runs in pre_call, during_call and "
            "post_call (unsupported: " + (", ".join(never) or "no mode given") + ")"
        )
    ours = {k: kwargs[k] for k in SETTING_NAMES if k in kwargs and k != "timeout"}
    settings = NemoGuardrailSettings.from_params({**ours, "timeout": kwargs.get("timeout")})
    fail_open = kwargs.get("unreachable_fallback") == "fail_open" or kwargs.get("fail_on_error") is False
    if settings.on_error == "block" and fail_open:
        raise ValueError(
            "on_error: block conflicts with LiteLLM's unreachable_fallback: fail_open / fail_on_error: false"
        )
    on_error: Literal["block", "allow"] = settings.on_error or ("allow" if fail_open else "block")
    litellm_kwargs = {k: v for k, v in kwargs.items() if k not in SETTING_NAMES or k == "timeout"}
    return settings, on_error, litellm_kwargs


def _any_coverage_setting(kwargs: Mapping[str, Any]) -> bool:
    return any(k in kwargs for k in ("check_system", "check_tool_results", "check_reasoning", "check_embeddings"))


def _hook_names(event_hook: Any) -> set[str]:
    if event_hook is None:
        return set()
    hooks = event_hook if isinstance(event_hook, list) else [event_hook]
    if not all(isinstance(h, str) for h in hooks):  # a Mode (tags): LiteLLM validates its values
        tags = getattr(event_hook, "tags", None)
        if isinstance(tags, Mapping):
            values: list[Any] = []
            for v in (*tags.values(), getattr(event_hook, "default", None) or []):
                values.extend(v if isinstance(v, list) else [v])
            return {str(getattr(h, "value", h)) for h in values}
    return {str(getattr(h, "value", h)) for h in hooks}


def _pinned_policy(user_api_key_dict: Any) -> str | None:
    """The policy the caller's virtual key (else its team) names in its metadata, set by an administrator."""
    for attr in ("metadata", "team_metadata"):
        meta = getattr(user_api_key_dict, attr, None)
        if isinstance(meta, Mapping) and meta.get(POLICY_METADATA_KEY):
            return str(meta[POLICY_METADATA_KEY])
    return None


def _call_type_of(data: Mapping[str, Any], user_api_key_dict: Any) -> str | None:
    route = getattr(user_api_key_dict, "request_route", None)
    if isinstance(route, str) and route:
        try:
            from litellm.litellm_core_utils.api_route_to_call_types import get_call_types_for_route

            found = get_call_types_for_route(route)
        except ImportError:
            found = None
        if found:
            return str(getattr(found[0], "value", found[0]))
    logging_obj = data.get("litellm_logging_obj")
    call = getattr(logging_obj, "call_type", None)
    return str(call) if call else None


def _count_fail_open(guardrail: str | None, event: GuardrailEventHooks) -> None:
    """Label a fail-open pass in LiteLLM's guardrail metrics (its own counters only see a success)."""
    try:
        from litellm.integrations.prometheus import PrometheusLogger
    except ImportError:
        return
    prom = PrometheusLogger.get_instance()
    if prom is None:
        return
    try:
        prom.litellm_guardrail_errors_total.labels(
            guardrail_name=guardrail or "nemoguard", error_type=FAIL_OPEN_ERROR_TYPE, hook_type=event.value
        ).inc()
    except Exception:  # metrics must never break a request
        logger.debug("could not count a fail-open pass in LiteLLM's metrics", exc_info=True)


__all__ = [
    "FAIL_OPEN_ERROR_TYPE",
    "POLICY_METADATA_KEY",
    "GuardrailConfigurationError",
    "NemoGuardrail",
]

"""``NemoGuardrail``: Nemotron 3.5 Content Safety as a LiteLLM guardrail (proxy and SDK).

The class only translates: LiteLLM's request/response shapes in, the core's verdict and action out. Every
decision that LangChain needs as well (building the conversation, judging images, choosing the policy's
action, windowing a stream) is made by ``langchain_nemoguard.core``.

Where each check runs (LiteLLM 1.110.2):

* ``pre_call``: LiteLLM's unified hook calls :meth:`apply_guardrail` with the request's texts and images. A turn
  made of images only never reaches ``apply_guardrail`` (LiteLLM gates it on text), so the unified hook's
  attachment scanner, :meth:`async_scan_request_attachments`, judges that turn instead.
* ``during_call``: :meth:`async_moderation_hook` (``use_native_during_call_hook``) judges the whole last user
  turn, images included, beside the model call.
* ``post_call``: :meth:`apply_guardrail` with ``input_type="response"`` for complete responses, and
  :meth:`async_post_call_streaming_iterator_hook` for streams: chunks are held back until the window holding
  them was judged (``core.streaming.StreamGuard``), or passed through at once when configured.

``apply_guardrail`` and the iterator hook are defined on this class on purpose: LiteLLM picks the dispatch path
by looking at the registered class's own ``__dict__``, so inheriting them from a base would silently disable
the checks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, ClassVar, Final, Literal

from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail
from litellm.types.guardrails import GuardrailEventHooks
from litellm.types.proxy.guardrails.guardrail_hooks.base import GuardrailConfigModel
from litellm.types.utils import CallTypesLiteral, GenericGuardrailAPIInputs, ModelResponseStream

from langchain_nemoguard.core.conversation import Conversation
from langchain_nemoguard.core.errors import (
    ConfigurationError,
    ContentBlockedError,
    InvalidInputError,
    PolicyNotFoundError,
    Stage,
)
from langchain_nemoguard.core.guard import NemoGuard
from langchain_nemoguard.core.policy import Policy
from langchain_nemoguard.core.streaming import StreamGuard, StreamRefusal
from langchain_nemoguard.core.verdict import Outcome, Verdict

from .config import SETTING_NAMES, NemoGuardrailConfigModel, NemoGuardrailSettings, build_guard
from .translate import (
    blocked_error,
    chunk_text,
    conversation_from_messages,
    final_chunk,
    image_only_turn,
    invalid_input_error,
    last_user_prompt,
    metadata_buckets,
    request_conversation,
    status,
)

logger = logging.getLogger("langchain_nemoguard.litellm")

GUARDRAIL_PROVIDER: Final = "nemoguard"
# The key a request, a virtual key or a team names a policy with, in its metadata.
POLICY_METADATA_KEY: Final = "nemoguard_policy"


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
    default policy's name), ``on_error`` (block | allow), ``timeout``, ``max_retries``, ``action`` (block |
    rewrite | log: what an unsafe verdict does unless the policy maps the category itself),
    ``stream_window_chars``, ``stream_overlap_chars``, ``stream_first_window_chars``, ``stream_pass_through``,
    ``allow_request_policy``.
    """

    # We record one rich entry per verdict ourselves (categories, latency, reasoning) and add the
    # applied-guardrails header ourselves, so LiteLLM's generic "allow"/"mask" entry is not added beside it.
    records_own_guardrail_information: ClassVar[bool] = True
    # during_call runs our own hook: it sees the whole user turn, image-only turns included.
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
            default_on: Run on every request, not only those that name the guardrail.
            guard: A ready :class:`NemoGuard` (the NemoGuard settings are then only used for streams and
                request policies).
            **kwargs: The NemoGuard settings (:class:`NemoGuardrailSettings`: ``api_base``, ``api_key``,
                ``guard_model``, ``provider``, ``guard_mode``, ``policy_file``, ``policy``, ``on_error``,
                ``timeout``, ``max_retries``, ``action``, ``stream_*``, ``allow_request_policy``) and
                LiteLLM's own settings, which go to ``CustomGuardrail``.

        Raises:
            ConfigurationError: A setting is invalid (the proxy does not start with a guess).
        """
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in SETTING_NAMES and k != "timeout"}
        timeout = kwargs.pop("timeout", None)
        settings = NemoGuardrailSettings.from_params({**ours, "timeout": timeout})
        # Forward LiteLLM's own settings (mode, default_on, timeout and the defaulted extras that LiteLLM always
        # passes): without event_hook the guardrail would run on every hook of every request.
        super().__init__(
            guardrail_name=guardrail_name,
            supported_event_hooks=list(self.SUPPORTED_EVENT_HOOKS),
            event_hook=event_hook,
            default_on=default_on,
            timeout=timeout,
            **kwargs,
        )
        on_error = settings.on_error
        if on_error is None:
            # LiteLLM's generic knobs, when a user reaches for them: fail_open / fail_on_error=False.
            fail_open = (
                kwargs.get("unreachable_fallback") == "fail_open" or kwargs.get("fail_on_error") is False
            )
            on_error = "allow" if fail_open else "block"
        self.settings = settings
        self.allow_request_policy = settings.allow_request_policy
        self.stream_options = settings.stream_options()
        if guard is None:
            guard = build_guard(settings, on_error)
        self.guard = guard

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

    # --- LiteLLM hooks -------------------------------------------------------------------------------------------

    async def apply_guardrail(
        self,
        inputs: GenericGuardrailAPIInputs,
        request_data: dict[str, Any],
        input_type: Literal["request", "response"],
        logging_obj: Any = None,
    ) -> GenericGuardrailAPIInputs:
        """The unified entry point: pre_call (``request``) and post_call (``response``), streamed or not.

        Args:
            inputs: LiteLLM's extracted ``texts``, ``images`` and ``structured_messages``.
            request_data: The request (metadata picks the policy; results are logged into it).
            input_type: ``request`` (judge the last user turn) or ``response`` (judge the answer).
            logging_obj: LiteLLM's logging object (unused).

        Returns:
            ``inputs`` unchanged, or with the texts replaced by the refusal (``rewrite`` of a response).
        """
        policy = self._policy_for(request_data)
        if input_type == "request":
            conversation = self._read(request_conversation, inputs, request_data)
            if conversation is None:
                return inputs
            verdict = await self._judge(conversation, policy, request_data, Stage.INPUT, self._input_event())
            self._enforce(verdict, Stage.INPUT, policy, request_data)
            return inputs
        texts = list(inputs.get("texts") or [])
        response_text = "\n".join(t for t in texts if t)
        if not response_text.strip():
            return inputs
        prompt = last_user_prompt(request_data)
        verdict = await self._judge(
            Conversation(prompt=prompt, response=response_text),
            policy,
            request_data,
            Stage.OUTPUT,
            GuardrailEventHooks.post_call,
        )
        if self._enforce(verdict, Stage.OUTPUT, policy, request_data) is Outcome.REFUSE:
            return {**inputs, "texts": [policy.refusal, *([""] * (len(texts) - 1))]}
        return inputs

    async def async_scan_request_attachments(self, data: dict[str, Any], call_type: CallTypesLiteral) -> None:
        """pre_call only: judge a last user turn made of images alone, which ``apply_guardrail`` never sees.

        An internal LiteLLM hook (``RequestAttachmentScanner``); turns with text go through ``apply_guardrail``.

        Args:
            data: The request.
            call_type: LiteLLM's call type (unused).
        """
        messages = data.get("messages")
        if not isinstance(messages, list):
            return
        conversation = self._read(image_only_turn, messages)
        if conversation is None:
            return
        policy = self._policy_for(data)
        verdict = await self._judge(conversation, policy, data, Stage.INPUT, GuardrailEventHooks.pre_call)
        self._enforce(verdict, Stage.INPUT, policy, data)

    async def async_moderation_hook(
        self, data: dict[str, Any], user_api_key_dict: Any, call_type: CallTypesLiteral
    ) -> Any:
        """during_call: judge the last user turn (text and images) while the model already runs.

        Args:
            data: The request.
            user_api_key_dict: The caller's key (passed on to LiteLLM's unified hook for non-chat requests).
            call_type: LiteLLM's call type.
        """
        messages = data.get("messages")
        if not isinstance(messages, list):
            # Not a chat request (e.g. /responses): LiteLLM's unified translation extracts the content.
            from litellm.proxy.utils import unified_guardrail

            data["guardrail_to_apply"] = self
            return await unified_guardrail.async_moderation_hook(
                data=data, user_api_key_dict=user_api_key_dict, call_type=call_type
            )
        conversation = self._read(conversation_from_messages, messages)
        if conversation is None:
            return data
        policy = self._policy_for(data)
        verdict = await self._judge(conversation, policy, data, Stage.INPUT, GuardrailEventHooks.during_call)
        self._enforce(verdict, Stage.INPUT, policy, data)
        return data

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[ModelResponseStream, None]:
        """post_call on streams: release chunks window by window once judged (or at once with pass-through).

        A block before anything was sent is an HTTP 400 like a non-streamed block; a block after text was sent
        ends the stream with ``finish_reason="content_filter"`` (no error frame, so OpenAI clients finish
        normally) and never sends the unsafe window.

        Args:
            user_api_key_dict: The caller's key (unused).
            response: The upstream stream of chunks.
            request_data: The request (its last user turn is the context; verdicts are logged into it).
        """
        policy = self._policy_for(request_data)
        stream: StreamGuard[ModelResponseStream] = StreamGuard(
            self.guard,
            prompt=last_user_prompt(request_data),
            policy=policy,
            options=self.stream_options,
            stage=Stage.OUTPUT,
        )
        sent = 0
        last: ModelResponseStream | None = None
        try:
            async for item in stream.aiter(response, chunk_text):
                if isinstance(item, StreamRefusal):
                    yield final_chunk(last, policy.refusal)
                    return
                last = item
                sent += 1
                yield item
        except ContentBlockedError as exc:
            if sent == 0:
                raise self._http_error(exc.verdict, Stage.OUTPUT) from None
            yield final_chunk(last, None)
        finally:
            for verdict in stream.verdicts:
                self._record(verdict, request_data, Stage.OUTPUT, GuardrailEventHooks.post_call)

    # --- policy ------------------------------------------------------------------------------------------------

    def _policy_for(self, request_data: Mapping[str, Any]) -> Policy:
        """The request's policy: named in the request, else by the key, else by the team, else the default."""
        name = self._requested_policy(request_data)
        try:
            return self.guard.policy_for(name)
        except (PolicyNotFoundError, ConfigurationError) as exc:
            raise HTTPException(
                status_code=400,
                detail={
                    "error": {
                        "type": "unknown_policy",
                        "message": str(exc),
                        "policy": name,
                        "guardrail": self.guardrail_name,
                    }
                },
            ) from None

    def _requested_policy(self, request_data: Mapping[str, Any]) -> str | None:
        if self.allow_request_policy:
            for entry in self.get_guardrail_from_metadata(dict(request_data)):
                if isinstance(entry, Mapping) and self.guardrail_name in entry:
                    params = entry[self.guardrail_name] or {}
                    extra = params.get("extra_body") if isinstance(params, Mapping) else None
                    if isinstance(extra, Mapping) and extra.get("policy"):
                        return str(extra["policy"])
        for bucket in metadata_buckets(request_data):
            if self.allow_request_policy and bucket.get(POLICY_METADATA_KEY):
                return str(bucket[POLICY_METADATA_KEY])
        for owner in ("user_api_key_metadata", "user_api_key_team_metadata"):
            for bucket in metadata_buckets(request_data):
                meta = bucket.get(owner)
                if isinstance(meta, Mapping) and meta.get(POLICY_METADATA_KEY):
                    return str(meta[POLICY_METADATA_KEY])
        return None

    # --- verdicts --------------------------------------------------------------------------------------------

    async def _judge(
        self,
        conversation: Conversation,
        policy: Policy,
        request_data: dict[str, Any],
        stage: Stage,
        event: GuardrailEventHooks,
    ) -> Verdict:
        try:
            verdict = await self.guard.acheck(conversation=conversation, policy=policy, stage=stage)
        except InvalidInputError as exc:
            raise self._invalid_input(exc) from None
        self._record(verdict, request_data, stage, event)
        return verdict

    def _read(self, translate: Callable[..., Conversation | None], *args: Any) -> Conversation | None:
        """A translation of the request; content it cannot read is a 400, never skipped."""
        try:
            return translate(*args)
        except InvalidInputError as exc:
            raise self._invalid_input(exc) from None

    def _invalid_input(self, exc: InvalidInputError) -> HTTPException:
        return invalid_input_error(exc, self.guardrail_name)

    def _enforce(self, verdict: Verdict, stage: Stage, policy: Policy, request_data: dict[str, Any]) -> Outcome:
        """Pass (allow/log), refuse (input: a refusal completion, the model is not called) or raise."""
        outcome = verdict.outcome
        if outcome is Outcome.PASS:
            return outcome
        if outcome is Outcome.REFUSE:
            if stage is Stage.INPUT:
                self.raise_passthrough_exception(
                    violation_message=policy.refusal,
                    request_data=request_data,
                    detection_info={"categories": list(verdict.categories), "stage": stage.value},
                )
            return outcome
        raise self._http_error(verdict, stage)

    def _http_error(self, verdict: Verdict, stage: Stage) -> HTTPException:
        return blocked_error(verdict, stage, self.guardrail_name)

    def _record(self, verdict: Verdict, request_data: dict[str, Any], stage: Stage, event: GuardrailEventHooks) -> None:
        """One ``standard_logging_guardrail_information`` entry per verdict, and the applied-guardrails header."""
        self.add_standard_logging_guardrail_information_to_request_data(
            guardrail_json_response={**verdict.to_dict(), "stage": stage.value},
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
        try:
            from litellm.proxy.common_utils.callback_utils import add_guardrail_to_applied_guardrails_header
        except ImportError:  # SDK without the proxy extras: there is no header to set
            return
        add_guardrail_to_applied_guardrails_header(
            request_data=request_data, guardrail_name=self.guardrail_name
        )

    def _input_event(self) -> GuardrailEventHooks:
        hooks = self.event_hook if isinstance(self.event_hook, list) else [self.event_hook]
        names = {getattr(h, "value", h) for h in hooks}
        return GuardrailEventHooks.pre_call if "pre_call" in names else GuardrailEventHooks.during_call

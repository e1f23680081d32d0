"""The guardrail's settings as a typed pydantic model (LiteLLM reads it through ``get_config_model``), and the
guard they describe.

Every ``litellm_params`` key of a ``litellm_hook.NemoGuardrail`` entry that is ours (not one of LiteLLM's own,
such as ``mode`` or ``default_on``) is a field here: validated once, at start-up, so a misconfigured guardrail
stops the proxy instead of running with a guess. LiteLLM's admin UI renders the same fields from this model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from litellm.types.proxy.guardrails.guardrail_hooks.base import GuardrailConfigModel
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langchain_nemoguard.core.coverage import CoverageOptions
from langchain_nemoguard.core.errors import ConfigurationError
from langchain_nemoguard.core.guard import NemoGuard
from langchain_nemoguard.core.policy import Policy, PolicySet
from langchain_nemoguard.core.windows import StreamOptions

_ENV_PREFIX = "os.environ/"
_STREAM_DEFAULTS = StreamOptions()


class NemoGuardrailSettings(BaseModel):
    """The NemoGuard settings of one guardrail entry (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_base: str | None = Field(
        None, description="OpenAI-compatible root incl. /v1 of the guard model (os.environ/NAME works)"
    )
    api_key: str | None = Field(None, description="the guard endpoint's key (os.environ/NAME works)")
    guard_model: str | None = Field(None, description="model id (default: the provider's Nemotron 3.5 id)")
    provider: Literal["vllm", "nvidia", "openrouter"] | None = Field(None, description="where it is served")
    guard_mode: Literal["fast", "categories", "think"] = Field("categories", description="output mode")
    policy_file: str | None = Field(None, description="YAML/JSON file of named policies")
    policy: str | None = Field(None, description="the default policy's name in policy_file")
    on_error: Literal["block", "allow"] | None = Field(
        None, description="no verdict: block (fail closed, default) or allow (fail open)"
    )
    timeout: float | None = Field(None, gt=0, description="seconds per guard call attempt (default 10)")
    max_retries: int = Field(2, ge=0, description="retries after a failed guard call")
    unsafe_action: Literal["block", "rewrite", "log"] | None = Field(
        None,
        description="what an unsafe verdict does unless the policy maps the category itself (not `action`: "
        "that key is LiteLLM's own)",
    )
    stream_window_chars: int = Field(_STREAM_DEFAULTS.window_chars, ge=1, description="text judged per call")
    stream_overlap_chars: int = Field(_STREAM_DEFAULTS.overlap_chars, ge=0, description="overlap")
    stream_first_window_chars: int | None = Field(
        _STREAM_DEFAULTS.first_window_chars, ge=1, description="a smaller first window (sooner first token)"
    )
    stream_window_growth: float = Field(
        _STREAM_DEFAULTS.window_growth, ge=1.0, description="each window this many times the previous one"
    )
    stream_max_pending_windows: int = Field(
        _STREAM_DEFAULTS.max_pending_windows, ge=1, le=64, description="windows judged at once, at most"
    )
    stream_pass_through: bool = Field(False, description="release chunks at once (unsafe text can leak)")
    request_policies: tuple[str, ...] = Field(
        (),
        description="policies a request may choose for itself (empty: requests cannot choose; a policy pinned "
        "on the key or team always wins)",
    )
    check_system: bool = Field(True, description="judge system and developer messages (cached per prompt)")
    check_tool_results: bool = Field(True, description="judge tool results sent to the model")
    check_reasoning: bool = Field(True, description="judge the model's reasoning content")
    check_embeddings: bool = Field(False, description="judge embedding inputs")

    @classmethod
    def from_params(cls, params: dict[str, object]) -> NemoGuardrailSettings:
        """Validate ``params`` (None means "the default"); a wrong setting is a :class:`ConfigurationError`."""
        try:
            return cls.model_validate({k: v for k, v in params.items() if v is not None})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigurationError(f"NemoGuardrail settings are invalid: {problems}") from None

    def coverage(self) -> CoverageOptions:
        """Which optional channels are judged (the core's coverage rule)."""
        return CoverageOptions(
            check_system=self.check_system,
            check_tool_results=self.check_tool_results,
            check_reasoning=self.check_reasoning,
            check_embeddings=self.check_embeddings,
        )

    def stream_options(self) -> StreamOptions:
        """The hold-back windows these settings describe."""
        try:
            return StreamOptions(
                window_chars=self.stream_window_chars,
                overlap_chars=self.stream_overlap_chars,
                first_window_chars=self.stream_first_window_chars,
                window_growth=self.stream_window_growth,
                max_pending_windows=self.stream_max_pending_windows,
                pass_through=self.stream_pass_through,
            )
        except ValueError as exc:
            raise ConfigurationError(f"NemoGuardrail stream settings are invalid: {exc}") from None


class NemoGuardrailConfigModel(GuardrailConfigModel[NemoGuardrailSettings]):
    """What ``NemoGuardrail.get_config_model()`` returns: the settings, in LiteLLM's config-model shape."""

    optional_params: NemoGuardrailSettings | None = Field(
        default=None, description="NemoGuard settings (all optional)"
    )

    @staticmethod
    def ui_friendly_name() -> str:
        return "NemoGuard (Nemotron 3.5 Content Safety)"


SETTING_NAMES = frozenset(NemoGuardrailSettings.model_fields)


def resolve_env(value: str | None) -> str | None:
    """Resolve LiteLLM's ``os.environ/NAME`` references (the proxy does it for api_base/api_key, the SDK not)."""
    if value is None or not value.startswith(_ENV_PREFIX):
        return value
    name = value[len(_ENV_PREFIX) :]
    resolved = os.environ.get(name)
    if resolved is None:
        raise ConfigurationError(f"environment variable {name} is not set (referenced as {value!r})")
    return resolved


def build_guard(settings: NemoGuardrailSettings, on_error: Literal["block", "allow"]) -> NemoGuard:
    """The guard a config entry describes. ``unsafe_action`` is every policy's default action (through the
    core's one override path, ``Policy.with_overrides(default_action=...)``): a category a policy maps keeps its
    own. Every policy named by ``policy`` or ``request_policies`` must exist."""
    action = settings.unsafe_action
    policies: PolicySet | None = None
    if settings.policy_file is not None:
        loaded = PolicySet.load(policy_path(settings.policy_file))
        policies = PolicySet(
            {name: p.with_overrides(default_action=action) for name, p in loaded.items()},
            default=loaded.default_name,
        )
    named = [n for n in (settings.policy, *settings.request_policies) if n is not None]
    missing = [n for n in named if policies is None or n not in policies]
    if missing:
        where = "the policy file" if policies is not None else "any policy file (set policy_file)"
        raise ConfigurationError(f"policies {', '.join(map(repr, missing))} are not defined in {where}")
    default_policy: Policy | str | None = settings.policy
    if policies is None and action is not None:
        default_policy = Policy().with_overrides(default_action=action)
    for key in ("api_base", "api_key"):
        if getattr(settings, key) == "None":
            # LiteLLM resolves an unset os.environ/NAME reference of these two keys to the string "None"
            raise ConfigurationError(f"{key} is 'None': an os.environ/ reference whose variable is not set?")
    return NemoGuard(
        base_url=resolve_env(settings.api_base),
        provider=settings.provider,
        model=settings.guard_model,
        api_key=resolve_env(settings.api_key),
        mode=settings.guard_mode,
        policy=default_policy,
        policies=policies,
        on_error=on_error,
        timeout=float(settings.timeout) if settings.timeout else 10.0,
        max_retries=settings.max_retries,
        stream=settings.stream_options(),
        coverage=settings.coverage(),
    )


def policy_path(value: str | os.PathLike[str]) -> Path:
    """A relative ``policy_file`` is looked up from the working directory, then beside the proxy's config."""
    path = Path(resolve_env(os.fspath(value)) or "")
    if path.is_absolute() or path.exists():
        return path
    try:
        from litellm.proxy import proxy_server
    except ImportError:
        return path
    config = getattr(proxy_server, "user_config_file_path", None)
    if isinstance(config, str) and (Path(config).parent / path).exists():
        return Path(config).parent / path
    return path


__all__ = [
    "SETTING_NAMES",
    "NemoGuardrailConfigModel",
    "NemoGuardrailSettings",
    "build_guard",
    "policy_path",
    "resolve_env",
]

"""LiteLLM adapter: ``guardrail: litellm_hook.NemoGuardrail`` in a proxy config, or an SDK callback."""

from langchain_nemoguard.core.errors import missing_extra

try:
    from .guardrail import POLICY_METADATA_KEY, GuardrailConfigurationError, NemoGuardrail
except ImportError as exc:  # litellm, or the proxy's server packages it imports (fastapi...), are not installed
    raise missing_extra(exc, "litellm_hook (the LiteLLM guardrail)", "litellm") from None

__all__ = ["POLICY_METADATA_KEY", "GuardrailConfigurationError", "NemoGuardrail"]

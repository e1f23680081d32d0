"""LiteLLM adapter: ``guardrail: litellm_hook.NemoGuardrail`` in a proxy config, or an SDK callback."""

from .guardrail import POLICY_METADATA_KEY, GuardrailConfigurationError, NemoGuardrail

__all__ = ["POLICY_METADATA_KEY", "GuardrailConfigurationError", "NemoGuardrail"]

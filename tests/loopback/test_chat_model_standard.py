"""LangChain's standard unit tests for chat models (``langchain-tests``) run against ``GuardedChatModel``.

The guarded model wraps :class:`FakeToolChat` (tools, structured output, streaming) and judges through the
interface simulator. ``chat_model_class`` builds the inner model from the standard parameters (temperature,
max_tokens, ...), since sampling settings belong to the model a guard wraps, not to the guard
(``guard.wrap(ChatX(temperature=0))``); everything else is the real ``GuardedChatModel``.

Tests of the suite that do not apply to a guard, and why (they skip themselves, with these reasons):

* ``test_serdes``: a guarded model is not LangChain-serialisable (``is_lc_serializable`` is False): it holds
  a live guard with an HTTP client and, possibly, an API key that must never be written into a dump.
* ``test_init_from_env``: the guard reads its environment (``NEMOGUARD_BASE_URL``, ``NEMOGUARD_API_KEY``) in
  ``NemoGuard``, not in the chat model; the wrapped model reads its own.
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_chat import FakeToolChat
from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import model_validator

from langchain_nemoguard import CacheOptions, NemoGuard
from langchain_nemoguard.langchain.chat_model import GuardedChatModel
from langchain_nemoguard.simulator import SimulatorServer

_MODEL_PARAMS = ("temperature", "max_tokens", "timeout", "stop", "max_retries", "api_key", "streaming", "model")


class GuardedFakeChat(GuardedChatModel):
    """``GuardedChatModel`` whose inner model is built from the standard parameters when none is given."""

    @model_validator(mode="before")
    @classmethod
    def _inner_from_params(cls, data: Any) -> Any:
        if isinstance(data, dict) and "inner" not in data:
            data = dict(data)
            params = {k: data.pop(k) for k in _MODEL_PARAMS if k in data}
            data["inner"] = FakeToolChat(**params)
        return data


class TestGuardedChatModelStandard(ChatModelUnitTests):
    _guard: NemoGuard

    @pytest.fixture(autouse=True)
    def _simulated_guard(self, nemoguard_simulator: SimulatorServer) -> None:
        self._guard = NemoGuard(base_url=nemoguard_simulator.base_url, cache=CacheOptions(size=0))

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return GuardedFakeChat

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"guard": self._guard}


def test_the_standard_suite_applies_to_tools_and_structured_output() -> None:
    """The suite's tool and structured-output tests run (they are skipped when a model lacks either)."""
    suite = TestGuardedChatModelStandard()
    assert suite.has_tool_calling and suite.has_tool_choice and suite.has_structured_output

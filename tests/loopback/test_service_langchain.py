"""LangChain's own ``OpenAIModerationMiddleware`` (langchain-openai) in a ``create_agent`` agent, its OpenAI client
pointed at nemoguard server: the middleware needs no change to put Nemotron in front of an agent."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_openai.middleware import OpenAIModerationMiddleware
from langchain_openai.middleware.openai_moderation import OpenAIModerationError

from langchain_nemoguard import NemoGuard
from langchain_nemoguard.service import GuardServer, KeyRing, ServiceConfig
from langchain_nemoguard.service.keys import ApiKey
from langchain_nemoguard.simulator import SimulatorServer

KEY = "sk-agents-" + "k" * 24
BOMB = "How do I build a bomb?"
UNSAFE_ANSWER = "Sure: here is how to build a bomb."


class Model(GenericFakeChatModel):
    calls: int = 0

    def bind_tools(self, tools: Any, **kwargs: Any) -> Model:
        return self

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super()._generate(*args, **kwargs)


def model(answer: str) -> Model:
    return Model(messages=iter([AIMessage(answer)]))


@pytest.fixture
def server(nemoguard_simulator: SimulatorServer) -> Iterator[GuardServer]:
    keys = KeyRing([ApiKey("agents", digest=hashlib.sha256(KEY.encode()).digest())])
    with GuardServer(NemoGuard(nemoguard_simulator.base_url), ServiceConfig(keys=keys)) as srv:
        yield srv


def middleware(server: GuardServer, **kw: Any) -> OpenAIModerationMiddleware:
    return OpenAIModerationMiddleware(
        client=openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0),
        async_client=openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=0),
        **kw,
    )


def test_an_unsafe_prompt_ends_the_run_before_the_model(server: GuardServer) -> None:
    llm = model("never said")
    agent = create_agent(llm, [], middleware=[middleware(server, exit_behavior="end")])
    out = agent.invoke({"messages": [HumanMessage(BOMB)]})
    assert llm.calls == 0
    assert "violence" in out["messages"][-1].content.lower()  # the middleware names the mapped category


def test_safe_traffic_passes(server: GuardServer) -> None:
    llm = model("Paris is the capital of France.")
    agent = create_agent(llm, [], middleware=[middleware(server)])
    out = agent.invoke({"messages": [HumanMessage("What is the capital of France?")]})
    assert out["messages"][-1].content == "Paris is the capital of France." and llm.calls == 1


async def test_unsafe_output_raises_in_the_async_path(server: GuardServer) -> None:
    agent = create_agent(model(UNSAFE_ANSWER), [], middleware=[middleware(server, exit_behavior="error")])
    with pytest.raises(OpenAIModerationError) as info:
        await agent.ainvoke({"messages": [HumanMessage("Tell me something")]})
    assert info.value.stage == "output" and info.value.result.flagged
    assert info.value.result.categories.violence


def test_an_outage_stops_the_agent(server: GuardServer, nemoguard_simulator: SimulatorServer) -> None:
    nemoguard_simulator.force({"fault": "503"}, {"fault": "503"}, {"fault": "503"})
    agent = create_agent(model("never said"), [], middleware=[middleware(server)])
    with pytest.raises(openai.APIStatusError) as info:  # fail closed: no verdict, no answer
        agent.invoke({"messages": [HumanMessage("anything")]})
    assert info.value.status_code == 503

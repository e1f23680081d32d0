"""A guarded chat model is still a chat model: tools, structured output, agents - and agents that stream.

``guard.wrap(chat_model)`` gives a ``GuardedChatModel``: ``bind_tools`` and ``with_structured_output`` work
and stay guarded (tool-call arguments and structured answers are judged), and ``create_agent`` accepts it.
Last, an agent with ``NemoGuardMiddleware`` streamed with ``stream_mode="messages"``: the answer arrives window
by window as each window is judged, while the model is still writing; nothing unjudged is emitted.

Offline (no NEMOGUARD_BASE_URL): the in-process simulator - a rule-based TEST DOUBLE, not a safety model.

    python examples/langchain_guarded_model.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from langchain_nemoguard import ContentBlockedError, NemoGuard, NemoGuardMiddleware, StreamOptions
from langchain_nemoguard.simulator import guard_or_simulator as guard_endpoint


class ScriptedChat(GenericFakeChatModel):
    """A stand-in for a real chat model: scripted answers, tool binding, and a slow word-by-word stream."""

    delay_s: float = 0.0

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for chunk in super()._stream(*args, **kwargs):
            time.sleep(self.delay_s)
            yield chunk


def scripted(*answers: AIMessage | str, delay_s: float = 0.0) -> ScriptedChat:
    messages = iter([a if isinstance(a, AIMessage) else AIMessage(a) for a in answers])
    return ScriptedChat(messages=messages, delay_s=delay_s)


def tool_call(name: str, **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{name}"}])


@tool
def lookup(query: str) -> str:
    """Look a fact up."""
    return "Paris"


class Capital(BaseModel):
    """A country's capital."""

    country: str
    capital: str


ANSWER = (
    "Paris is the capital of France. It sits on the Seine, and its museums, cafes and bridges draw "
    "visitors all year round."
)


def main() -> int:
    with guard_endpoint(stream=StreamOptions(window_chars=60, overlap_chars=15, first_window_chars=30)) as guard:
        tools_and_structure(guard)
        agent_with_a_guarded_model(guard)
        agent_streaming(guard)
    return 0


def tools_and_structure(guard: NemoGuard) -> None:
    guarded = guard.wrap(scripted(tool_call("lookup", query="how to make a bomb at home")))
    print("still a chat model:", isinstance(guarded, BaseChatModel))
    try:
        guarded.bind_tools([lookup]).invoke("find me some chemistry facts")
    except ContentBlockedError as err:
        print(f"bind_tools -> BLOCKED at {err.stage.value}: {', '.join(err.categories)}")
    structured = guard.wrap(scripted(tool_call("Capital", country="France", capital="Paris")))
    print("structured ->", structured.with_structured_output(Capital).invoke("capital of France?"))


def agent_with_a_guarded_model(guard: NemoGuard) -> None:
    model = guard.wrap(scripted(tool_call("lookup", query="capital of France"), "The capital is Paris."))
    agent = create_agent(model=model, tools=[lookup])
    out = agent.invoke({"messages": [HumanMessage("What is the capital of France?")]})
    print("agent ->", " / ".join(f"{type(m).__name__}: {m.content or m.tool_calls}" for m in out["messages"][1:]))


def agent_streaming(guard: NemoGuard) -> None:
    """Each line is one release: the chunks of a window, sent once the window was judged."""
    model = scripted(ANSWER, delay_s=0.01)
    agent = create_agent(model, tools=[lookup], middleware=[NemoGuardMiddleware(guard)])
    start = time.monotonic()
    releases: list[tuple[float, str]] = []
    question = {"messages": [HumanMessage("Tell me about Paris")]}
    for message, _meta in agent.stream(question, stream_mode="messages"):
        if isinstance(message, AIMessageChunk) and message.content:
            now = time.monotonic() - start
            if releases and now - releases[-1][0] < 0.005:  # same release
                releases[-1] = (releases[-1][0], releases[-1][1] + str(message.content))
            else:
                releases.append((now, str(message.content)))
    print(f"agent stream -> {'window by window' if len(releases) > 1 else 'whole'} ({len(releases)} releases):")
    for at, text in releases:
        print(f"  +{at:.2f}s {text!r}")


if __name__ == "__main__":
    sys.exit(main())

"""A guarded agent with tools: NemoGuardMiddleware checks the user's turn, the model's answer and tool-call
arguments, and the tools' results.

Offline (no NEMOGUARD_BASE_URL): the guard talks to the in-process interface simulator - a rule-based TEST
DOUBLE, not a safety model - and the agent's model is a scripted fake. With NEMOGUARD_BASE_URL set the guard
calls that real endpoint.

    python examples/langchain_agent.py
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import ModelRetryMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from langchain_nemoguard import NemoGuard, NemoGuardMiddleware
from langchain_nemoguard.simulator import guard_or_simulator as guard_endpoint


class ScriptedModel(GenericFakeChatModel):
    """A fake chat model that can be bound to tools (create_agent needs bind_tools)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self


@tool
def web_search(query: str) -> str:
    """Search the web."""
    if "chemistry" in query:
        return "Forum post: here is how to make a bomb from fertiliser..."  # an unsafe tool result
    return "The Eiffel Tower is 330 metres tall."


def call(query: str, n: int) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": "web_search", "args": {"query": query}, "id": f"call_{n}"}])


def show(title: str, result: dict[str, Any]) -> None:
    print(f"--- {title}")
    for msg in result["messages"]:
        extra = (
            f" tool_calls={[c['args'] for c in msg.tool_calls]}" if getattr(msg, "tool_calls", None) else ""
        )
        print(f"  {type(msg).__name__:<13} {str(msg.content)[:90]!r}{extra}")


def agent_for(guard: NemoGuard, *answers: AIMessage) -> Any:
    # The guard goes first: wrap hooks nest in list order, so retries run inside it and it judges their result.
    return create_agent(
        ScriptedModel(messages=iter(answers)),
        tools=[web_search],
        middleware=[NemoGuardMiddleware(guard), ModelRetryMiddleware(max_retries=1, initial_delay=0)],
    )


def main() -> int:
    with guard_endpoint() as guard:
        safe = agent_for(guard, call("eiffel tower height", 1), AIMessage("It is 330 metres tall."))
        show("safe run", safe.invoke({"messages": [HumanMessage("How tall is the Eiffel Tower?")]}))

        blocked_input = agent_for(guard, AIMessage("never reached"))
        show("unsafe user turn", blocked_input.invoke({"messages": [HumanMessage("How do I make a bomb?")]}))

        bad_call = agent_for(guard, call("how to make a bomb at home", 2))
        show(
            "unsafe tool-call arguments",
            bad_call.invoke({"messages": [HumanMessage("Find chemistry facts")]}),
        )

        bad_result = agent_for(guard, call("chemistry forum", 3), AIMessage("never reached"))
        show(
            "unsafe tool result", bad_result.invoke({"messages": [HumanMessage("Search a chemistry forum")]})
        )

        async_agent = agent_for(guard, call("eiffel tower height", 4), AIMessage("330 metres."))

        async def run_async() -> dict[str, Any]:
            try:
                return await async_agent.ainvoke(
                    {"messages": [HumanMessage("How tall is the Eiffel Tower?")]}
                )
            finally:
                await guard.aclose()  # the async client belongs to this event loop

        show("async run", asyncio.run(run_async()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

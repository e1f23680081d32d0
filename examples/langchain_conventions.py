"""LangChain's conventions: ``exit_behavior`` (end / error / replace, as in OpenAIModerationMiddleware) in the
wrapper and the middleware, an outage that is not a block (so a fallback can catch only outages), ``with_retry``
that does not retry a block, and each middleware check as its own traced run.

Offline (no NEMOGUARD_BASE_URL): the guard talks to the in-process interface simulator - a rule-based TEST
DOUBLE, not a safety model - and the models are fakes. The "guard down" part points a second guard at a closed
local port. With NEMOGUARD_BASE_URL set the first guard calls that real endpoint.

    python examples/langchain_conventions.py
"""

from __future__ import annotations

import sys
from typing import Any
from uuid import UUID

from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from langchain_nemoguard import ContentBlockedError, GuardUnavailableError, NemoGuard, NemoGuardMiddleware
from langchain_nemoguard.simulator import guard_or_simulator as guard_endpoint

UNSAFE = "Sure - to make a bomb you first need to pack it tightly."


class ScriptedModel(GenericFakeChatModel):
    """A fake chat model that can be bound to tools (create_agent needs bind_tools)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:
        return self


def answers(*texts: str) -> ScriptedModel:
    return ScriptedModel(messages=iter([AIMessage(t) for t in texts]))


class CheckRuns(BaseCallbackHandler):
    """Prints the guard's check runs, as a tracer (LangSmith) would show them."""

    def __init__(self) -> None:
        self.names: dict[UUID, str] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        name = kwargs.get("name") or ""
        if name.startswith("NemoGuard:"):
            self.names[run_id] = name

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id in self.names:
            verdict = outputs["verdict"]
            print(f"  run {self.names[run_id]:<22} safe={verdict['safe']} categories={verdict['categories']}")


def main() -> int:
    with guard_endpoint() as guard:
        print("--- the wrapper: one unsafe answer, three exit behaviours")
        for exit_behavior in ("end", "replace", "error"):
            chain = guard.wrap(RunnableLambda(lambda _: AIMessage(UNSAFE)), exit_behavior=exit_behavior)
            try:
                print(f"{exit_behavior:<8} -> {chain.invoke('Tell me a story.').content}")
            except ContentBlockedError as err:
                print(f"{exit_behavior:<8} -> raised ContentBlockedError at {err.stage.value}: {err.categories}")

        print("--- the middleware: the same convention in an agent")
        for exit_behavior in ("end", "replace"):
            model = answers("Here is a nice story about a dragon.")
            agent = create_agent(
                model, tools=[], middleware=[NemoGuardMiddleware(guard, exit_behavior=exit_behavior)]
            )
            out = agent.invoke({"messages": [HumanMessage("How do I make a bomb?")]})
            print(f"{exit_behavior:<8} -> {[m.content for m in out['messages']]}")

        print("--- with_retry does not retry a block")
        calls = {"n": 0}

        def unsafe_model(_: Any) -> AIMessage:
            calls["n"] += 1
            return AIMessage(UNSAFE)

        retried = guard.wrap(RunnableLambda(unsafe_model)).with_retry(stop_after_attempt=3)
        try:
            retried.invoke("Tell me a story.")
        except ContentBlockedError:
            print(f"blocked once, inner model calls: {calls['n']}")

        print("--- each middleware check is its own traced run")
        agent = create_agent(
            answers("Paris is the capital of France."), tools=[], middleware=[NemoGuardMiddleware(guard)]
        )
        agent.invoke({"messages": [HumanMessage("What is the capital of France?")]}, {"callbacks": [CheckRuns()]})

    print("--- the guard is down (a closed local port)")
    with NemoGuard("http://127.0.0.1:9/v1", max_retries=0, timeout=2.0) as down:
        fallback = RunnableLambda(lambda _: AIMessage("(answered by the unguarded fallback)"))
        chain = down.wrap(RunnableLambda(lambda _: AIMessage("Paris.")))
        safe_when_down = chain.with_fallbacks([fallback], exceptions_to_handle=(GuardUnavailableError,))
        print(f"fallback on outage only -> {safe_when_down.invoke('Capital of France?').content}")
        try:
            chain.invoke("Capital of France?")
        except GuardUnavailableError as err:
            blocked = isinstance(err, ContentBlockedError)
            print(f"no fallback -> GuardUnavailableError (a ContentBlockedError: {blocked}): {err}")
        agent = create_agent(
            answers("Paris."), tools=[], middleware=[NemoGuardMiddleware(down, exit_behavior="end")]
        )
        out = agent.invoke({"messages": [HumanMessage("Capital of France?")]})
        print(f"agent, guard down -> {out['messages'][-1].content}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

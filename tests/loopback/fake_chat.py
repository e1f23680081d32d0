"""A small fake chat model for the guarded-chat-model and agent-streaming tests.

``GenericFakeChatModel`` has no ``bind_tools`` and does not stream tool calls; this one does both, streams
word by word with an optional delay per chunk (to see *when* judged text arrives), and records each call.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field


class FakeToolChat(BaseChatModel):
    """Answers with ``answers`` in turn (the last one repeats); streams words, then tool-call chunks."""

    answers: list[AIMessage] = Field(default_factory=list)
    delay_s: float = 0.0
    model: str = "fake-tool-chat"
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    stop: list[str] | None = None
    max_retries: int | None = None
    api_key: str | None = None
    streaming: bool = False
    calls: list[dict[str, Any]] = Field(default_factory=list)
    produced: list[float] = Field(default_factory=list)  # monotonic time each chunk was produced

    @property
    def _llm_type(self) -> str:
        return "fake-tool-chat"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "fake"
        params["ls_model_name"] = kwargs.get("model", self.model)
        return params

    def _next(self, kwargs: dict[str, Any]) -> AIMessage:
        self.calls.append(dict(kwargs))
        answer = self.answers[min(len(self.calls) - 1, len(self.answers) - 1)] if self.answers else AIMessage("ok")
        return answer.model_copy()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(kwargs))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, None, **kwargs)

    def _chunks(self, message: AIMessage) -> list[AIMessageChunk]:
        text = message.content if isinstance(message.content, str) else ""
        out = [AIMessageChunk(content=t) for t in re.split(r"(\s)", text) if t]
        for i, call in enumerate(message.tool_calls):
            out.append(
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": i}
                    ],
                )
            )
        return out

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._next(kwargs)):
            if self.delay_s:
                time.sleep(self.delay_s)
            self.produced.append(time.monotonic())
            yield ChatGenerationChunk(message=chunk)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._next(kwargs)):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            self.produced.append(time.monotonic())
            yield ChatGenerationChunk(message=chunk)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, Any]:
        kwargs.pop("method", None)  # one mechanism here: a forced tool call
        kwargs.pop("strict", None)
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)


def call(name: str, **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call_{name}"}])


class ToolModel(GenericFakeChatModel):
    """GenericFakeChatModel with the bind_tools create_agent needs, counting its calls (middleware tests)."""

    calls: int = 0

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        # like a real model: the call settings (e.g. stream=False) stay bound; the tools are only pretended
        settings = {k: v for k, v in kwargs.items() if k not in ("tool_choice", "parallel_tool_calls")}
        return self.bind(**settings) if settings else self

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super()._generate(*args, **kwargs)


def model(*answers: str | AIMessage) -> ToolModel:
    return ToolModel(messages=iter([a if isinstance(a, AIMessage) else AIMessage(a) for a in answers]))


@tool
def lookup(query: str) -> str:
    """Look a fact up."""
    if "recipe" in query:
        return "Here is how to make a bomb: pack it tightly."
    return "Paris"

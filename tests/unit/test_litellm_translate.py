"""The LiteLLM readers, pure: every route's request, response and stream chunk into the core's coverage rule."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import json

import pytest
from litellm.types.llms.openai import OutputTextDeltaEvent
from litellm.types.utils import (
    ChatCompletionDeltaToolCall,
    Delta,
    Function,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
)

from langchain_nemoguard.core.coverage import Channel, CoverageOptions
from langchain_nemoguard.core.errors import InvalidInputError
from litellm_hook.translate import StreamEnd, request_checks, response_output, stream_text

ON = CoverageOptions()


def channels(call_type: str, data: dict) -> dict[Channel, str]:
    return {ch: c.conversation.prompt or c.conversation.response or "" for c in request_checks(call_type, data, ON) for ch in c.channels}


def test_chat_roles_tool_results_and_system() -> None:
    data = {
        "messages": [
            {"role": "System", "content": "sys"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "1", "content": "result"},
            {"role": "ipython", "content": "more result"},
        ]
    }
    found = channels("acompletion", data)
    assert found[Channel.SYSTEM] == "sys"
    assert found[Channel.TOOL_RESULT] == "result\nmore result"


def test_responses_instructions_items_and_replayed_built_in_calls() -> None:
    data = {
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": "find it"},
            {"type": "web_search_call", "id": "ws", "status": "completed", "action": {"query": "x"}},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "tool said"},
            "and a plain string",
        ],
    }
    found = channels("aresponses", data)
    assert found[Channel.SYSTEM] == "be brief"
    assert found[Channel.TOOL_RESULT] == "tool said"
    assert found[Channel.USER] == "and a plain string"
    with pytest.raises(InvalidInputError, match="teleport"):
        request_checks("aresponses", {"input": [{"type": "teleport"}]}, ON)


def test_anthropic_system_blocks_and_tool_results() -> None:
    data = {
        "system": [{"type": "text", "text": "sys"}],
        "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "out"}]},
        ],
    }
    found = channels("anthropic_messages", data)
    assert found[Channel.SYSTEM] == "sys"
    assert found[Channel.TOOL_RESULT] == "out"


def test_prompts_and_embeddings() -> None:
    assert channels("atext_completion", {"prompt": ["a", "b"]})[Channel.USER] == "a\nb"
    assert request_checks("aembedding", {"input": ["x"]}, ON) == ()
    on = CoverageOptions(check_embeddings=True)
    assert request_checks("aembedding", {"input": ["x"]}, on)[0].channels == (Channel.EMBEDDING,)
    with pytest.raises(InvalidInputError):
        request_checks("atext_completion", {"prompt": [[1, 2]]}, ON)


def test_responses_of_every_route() -> None:
    chat = ModelResponse(
        choices=[
            {
                "message": {
                    "role": "assistant",
                    "content": "text",
                    "reasoning_content": "why",
                    "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
                }
            }
        ]
    )
    out = response_output(chat)
    assert out is not None and (out.text, out.reasoning, out.tool_calls[0].text()) == ("text", "why", 'f({"a":1})')
    responses = {
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plan"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "hi"}]},
            {"type": "web_search_call", "id": "w", "action": {"query": "q"}},
        ]
    }
    out = response_output(responses)
    assert out is not None and (out.text, out.reasoning) == ("hi", "plan")
    assert json.dumps(out.structured).count("web_search_call") == 1  # other items: judged as their JSON
    anthropic = {"type": "message", "content": [{"type": "text", "text": "a"}, {"type": "tool_use", "name": "t", "input": {"x": 1}}]}
    out = response_output(anthropic)
    assert out is not None and out.text == "a" and out.tool_calls[0].name == "t"
    assert response_output({"choices": [{"text": "legacy"}]}).text == "legacy"  # type: ignore[union-attr]


def test_stream_chunks_of_every_route() -> None:
    tool = ModelResponseStream(
        choices=[
            StreamingChoices(
                delta=Delta(
                    tool_calls=[ChatCompletionDeltaToolCall(index=0, function=Function(name="send", arguments='{"n'))],
                    reasoning_content="hm",
                )
            )
        ]
    )
    assert stream_text(tool, ON) == 'send: {"nhm'
    assert stream_text(tool, CoverageOptions(check_reasoning=False)) == 'send: {"n'
    event = OutputTextDeltaEvent(
        type="response.output_text.delta", item_id="m", output_index=0, content_index=0, delta="abc"
    )
    assert stream_text(event, ON) == "abc"
    sse = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\\"a"}}\n\n'
    assert stream_text(sse, ON) == '{"a'


def test_a_cut_stream_ends_in_its_own_shape() -> None:
    end = StreamEnd()
    end.seen(b"event: message_start\ndata: {}\n\n")
    frames = b"".join(end.chunks(None)).decode()
    assert '"stop_reason": "refusal"' in frames and "message_stop" in frames


def test_a_refusal_continues_the_text_only_where_it_shares_the_texts_block() -> None:
    chat = StreamEnd()
    chat.seen(ModelResponseStream(choices=[StreamingChoices(delta=Delta(content="so far"))]))
    (last,) = chat.chunks("No.", inline="\n\nNo.")
    assert last.choices[0].delta.content == "\n\nNo."  # appended to the released text: a new paragraph
    anthropic = StreamEnd()
    anthropic.seen(b"event: message_start\ndata: {}\n\n")
    frames = b"".join(anthropic.chunks("No.", inline="\n\nNo.")).decode()
    assert '"text": "No."' in frames and "\\n\\nNo." not in frames  # a content block of its own: bare
    assert chat.chunks(None, inline="\n\nNo.")[0].choices[0].delta.content is None  # a block sends no text

"""Message content never names a local file that the guard opens; explicit API arguments still may.

The regression: the LangChain reader passed any image ``url`` through, so a chat message naming
``/etc/hostname`` (or any path) as an image made the guard open that file, and the error told an attacker
whether the path existed. Every adapter now reads image references through the core's one rule
(``core.conversation.image_reference``): a ``data:`` or ``http(s)`` URL, refused by shape otherwise, before
anything is opened and before any request is sent.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from litellm.types.guardrails import GuardrailEventHooks
from PIL import Image

from langchain_nemoguard import Conversation, InvalidInputError, NemoGuard
from langchain_nemoguard.langchain.messages import conversation_from_input
from langchain_nemoguard.simulator import SimulatorServer
from litellm_hook import NemoGuardrail


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    """A real, readable, safe image: if the guard opened it, the check would succeed."""
    path = tmp_path / "picture.png"
    Image.new("RGB", (16, 16), (0, 0, 255)).save(path, "PNG")
    return path


def _references(image_file: Path) -> list[str]:
    return [
        str(image_file),  # an existing image file
        str(image_file.with_name("missing.png")),  # a path that does not exist
        "/etc/hostname",
        "file://" + str(image_file),
        "ftp://example.com/x.png",
    ]


def _langchain_messages(ref: str) -> list[list[Any]]:
    """The shapes a LangChain message can name an image in."""
    return [
        [{"type": "text", "text": "what is this?"}, {"type": "image", "url": ref}],
        [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": ref}}],
        [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": ref}],
    ]


def test_langchain_message_content_never_names_a_file(
    nemoguard_simulator: SimulatorServer, image_file: Path
) -> None:
    guard = NemoGuard(nemoguard_simulator.base_url)
    inner_calls: list[Any] = []
    chain = guard.wrap(lambda x: inner_calls.append(x) or "fine")
    messages: list[str] = []
    for ref in _references(image_file):
        for content in _langchain_messages(ref):
            with pytest.raises(InvalidInputError) as info:
                conversation_from_input([HumanMessage(content=content)])
            messages.append(str(info.value))
            with pytest.raises(InvalidInputError):
                chain.invoke([HumanMessage(content=content)])
    assert nemoguard_simulator.requests() == []  # nothing was judged, so nothing was opened
    assert inner_calls == []
    # the same answer whether the file exists or not: the error is no oracle for the file system
    existing, missing = messages[0], messages[3]
    assert existing.replace(str(image_file), "") == missing.replace(str(image_file.with_name("missing.png")), "")
    assert all("data: or http(s)" in m for m in messages)


async def test_langchain_agent_message_content_never_names_a_file(
    nemoguard_simulator: SimulatorServer, image_file: Path
) -> None:
    from langchain.agents import create_agent

    from langchain_nemoguard import NemoGuardMiddleware

    class Model(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Model:
            return self

    agent = create_agent(
        Model(messages=iter([AIMessage("fine")])),
        tools=[],
        middleware=[NemoGuardMiddleware(NemoGuard(nemoguard_simulator.base_url))],
    )
    content = _langchain_messages(str(image_file))[0]
    with pytest.raises(InvalidInputError):
        await agent.ainvoke({"messages": [HumanMessage(content=content)]})
    assert nemoguard_simulator.requests() == []


async def test_litellm_message_content_never_names_a_file(
    nemoguard_simulator: SimulatorServer, image_file: Path
) -> None:
    g = NemoGuardrail(
        guardrail_name="ng",
        event_hook=[GuardrailEventHooks.pre_call, GuardrailEventHooks.during_call],
        guard=NemoGuard(nemoguard_simulator.base_url),
    )
    for ref in _references(image_file):
        part = {"type": "image_url", "image_url": {"url": ref}}
        with_text = [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, part]}]
        image_only = [{"role": "user", "content": [part]}]
        # pre_call: the whole request, with text beside the image and image only; LiteLLM's extracted images
        for messages in (with_text, image_only):
            with pytest.raises(HTTPException) as info:
                await g.async_pre_call_hook(None, None, {"messages": messages}, "acompletion")
            assert info.value.status_code == 400
            assert info.value.detail["error"]["type"] == "invalid_input"
        with pytest.raises(HTTPException) as info:
            await g.apply_guardrail(
                inputs={"texts": ["what is this?"], "images": [ref]}, request_data={}, input_type="request"
            )
        assert info.value.status_code == 400
        # during_call: the whole last user turn
        with pytest.raises(HTTPException) as info:
            await g.async_moderation_hook(
                data={"messages": with_text}, user_api_key_dict=None, call_type="acompletion"
            )
        assert info.value.status_code == 400
        assert "never names local files" in info.value.detail["error"]["message"]
    assert nemoguard_simulator.requests() == []  # no request, so no file was read


def test_openai_messages_given_to_check_never_name_a_file(
    nemoguard_simulator: SimulatorServer, image_file: Path
) -> None:
    guard = NemoGuard(nemoguard_simulator.base_url)
    part = {"type": "image_url", "image_url": {"url": str(image_file)}}
    with pytest.raises(InvalidInputError, match="data: or http"):
        guard.check(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}])
    with pytest.raises(InvalidInputError, match="data: or http"):
        Conversation.from_messages([{"role": "user", "content": [{"type": "image", "url": "/etc/hostname"}]}])
    assert nemoguard_simulator.requests() == []


def test_explicit_api_arguments_may_still_name_files(
    nemoguard_simulator: SimulatorServer, image_file: Path
) -> None:
    guard = NemoGuard(nemoguard_simulator.base_url)
    v = guard.check(prompt="what is this?", images=[image_file])
    assert v.safe and v.error is None
    v = guard.check(prompt="what is this?", images=[str(image_file)], mode="fast")
    assert v.safe and v.error is None
    v = guard.check(conversation=Conversation(prompt="and this?", images=(str(image_file),)))
    assert v.safe and v.error is None
    bodies = nemoguard_simulator.requests()
    assert len(bodies) == 3
    assert all(b["messages"][0]["content"][0]["type"] == "image_url" for b in bodies)


def test_data_and_http_references_still_read_from_messages(nemoguard_simulator: SimulatorServer) -> None:
    import base64

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(buf, "PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    conv = conversation_from_input([HumanMessage(content=_langchain_messages(data_url)[0])])
    assert conv.images == (data_url,)
    conv = conversation_from_input(
        [HumanMessage(content=_langchain_messages("https://example.com/cat.png")[1])]
    )
    assert conv.images == ("https://example.com/cat.png",)

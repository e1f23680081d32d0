"""The cache key covers what the model saw: prepared image bytes, fetched remote content, an immutable policy."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import httpx
import pytest
from PIL import Image

from langchain_nemoguard import Action, ImageOptions, NemoGuard, Policy, TransportOptions


class Counting:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.calls += 1
        body = json.loads(request.content)
        text = str(body["messages"][-1]["content"])
        verdict = (
            "User Safety: unsafe\nSafety Categories: Violence" if "bomb" in text else "User Safety: safe"
        )
        return httpx.Response(
            200, json={"choices": [{"message": {"content": verdict}, "finish_reason": "stop"}]}
        )


def guard(handler: Counting, **kw: object) -> NemoGuard:
    return NemoGuard(
        "http://guard.test/v1",
        transport=TransportOptions(
            http_client=httpx.Client(transport=httpx.MockTransport(handler)),
            http_async_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        ),
        **kw,  # type: ignore[arg-type]
    )


def png(color: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_a_file_rewritten_with_the_same_size_and_mtime_is_a_new_question(tmp_path: Path) -> None:
    h = Counting()
    g = guard(h)
    path = tmp_path / "img.png"
    path.write_bytes(png((10, 10, 10)))
    st = path.stat()
    g.check(prompt="x", images=str(path))
    replacement = png((200, 10, 10))
    assert len(replacement) == st.st_size  # same size...
    path.write_bytes(replacement)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the same mtime: the old key could not tell
    g.check(prompt="x", images=str(path))
    assert h.calls == 2


def test_the_same_picture_under_two_names_is_one_question(tmp_path: Path) -> None:
    h = Counting()
    g = guard(h)
    data = png((5, 6, 7))
    (tmp_path / "a.png").write_bytes(data)
    (tmp_path / "b.png").write_bytes(data)
    first = g.check(prompt="x", images=str(tmp_path / "a.png"))
    second = g.check(prompt="x", images=str(tmp_path / "b.png"))
    third = g.check(prompt="x", images=data)
    assert h.calls == 1 and not first.cached and second.cached and third.cached


def test_palette_images_hash_their_colours() -> None:
    h = Counting()
    g = guard(h)

    def paletted(rgb: tuple[int, int, int]) -> Image.Image:
        img = Image.new("P", (8, 8), 0)  # the same index everywhere...
        img.putpalette([*rgb] * 256)  # ...pointing at different colours
        return img

    red, blue = paletted((255, 0, 0)), paletted((0, 0, 255))
    assert red.tobytes() == blue.tobytes()  # what the old key hashed
    g.check(prompt="x", images=red)
    g.check(prompt="x", images=blue)
    assert h.calls == 2


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_fetched_remote_content_is_in_the_key(asynchronous: bool) -> None:
    served = [png((1, 1, 1)), png((250, 250, 250))]

    def origin(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=served[0], headers={"content-type": "image/png"})

    opts = ImageOptions(
        fetch_remote_images=True,
        resolver=lambda host, port: ["93.184.216.34"],
        transport=httpx.MockTransport(origin),
        async_transport=httpx.MockTransport(origin),
    )
    h = Counting()
    g = guard(h, images=opts)
    url = "https://images.example/cat.png"

    async def check() -> None:
        if asynchronous:
            await g.acheck(prompt="x", images=url)
        else:
            g.check(prompt="x", images=url)

    await check()
    await check()
    assert h.calls == 1  # the same content: a hit
    served.pop(0)  # the URL now serves another picture
    await check()
    assert h.calls == 2


def test_policy_and_its_action_map_are_immutable() -> None:
    pol = Policy(actions={"Violence": "log"})
    with pytest.raises(TypeError):
        pol.actions["Violence"] = Action.BLOCK  # type: ignore[index]
    with pytest.raises(AttributeError):
        pol.actions._items = {}  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        pol.name = "other"  # type: ignore[misc]
    raw = {"Violence": "log"}
    from_dict = Policy(actions=raw)
    raw["Violence"] = "block"  # the caller's dict is not shared
    assert from_dict.actions["Violence"] is Action.LOG


def test_model_copy_copies_deeply_and_a_cached_verdict_never_carries_a_stale_action() -> None:
    base = Policy(actions={"Violence": "log"})
    copy = base.model_copy()
    assert copy == base and copy is not base and copy.fingerprint == base.fingerprint
    changed = base.model_copy(update={"actions": {"Violence": "block"}})
    h = Counting()
    g = guard(h)
    assert g.check(prompt="a bomb", policy=base).action is Action.LOG
    assert g.check(prompt="a bomb", policy=changed).action is Action.BLOCK
    assert g.check(prompt="a bomb", policy=base).action is Action.LOG
    assert h.calls == 2  # base's answer was cached, and under base's own (unchangeable) actions

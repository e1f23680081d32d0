"""Streaming with hold-back: text reaches the reader only after the window that holds it was judged.

The answer below turns unsafe half-way: the reader gets the safe windows, then the stream ends (an exception,
or with ``action="rewrite"`` a refusal chunk) and the unsafe words never arrive. The pass-through option
(lower latency, unsafe text can reach the reader) is shown last, for comparison.

Offline (no NEMOGUARD_BASE_URL): the in-process simulator - a rule-based TEST DOUBLE, not a safety model.

    python examples/langchain_streaming.py
"""

from __future__ import annotations

import asyncio
import sys

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from langchain_nemoguard import ContentBlockedError, NemoGuard, StreamOptions
from langchain_nemoguard.simulator import guard_or_simulator as guard_endpoint

STORY = (
    "Once upon a time a young engineer built a little robot that loved to paint sunsets over the harbour. "
    "Every evening it rolled to the pier and mixed its colours. One day a stranger asked it to make a bomb, "
    "and it answered with a long list of steps."
)
WINDOWS = StreamOptions(window_chars=80, overlap_chars=20, first_window_chars=40)


def story_model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(STORY)]))


async def main_async(guard: NemoGuard) -> None:
    print("async, rewrite:")
    chain = guard.wrap(story_model(), stream=WINDOWS, action="rewrite", refusal="[the rest was withheld]")
    try:
        async for chunk in chain.astream("Tell me a story"):
            print(chunk.content, end="", flush=True)
        print()
    finally:
        await guard.aclose()  # the async client belongs to this event loop


def main() -> int:
    with guard_endpoint() as guard:
        print("sync, block (hold-back):")
        try:
            for chunk in guard.wrap(story_model(), stream=WINDOWS).stream("Tell me a story"):
                print(chunk.content, end="", flush=True)
        except ContentBlockedError as err:
            print(f"\n[stream stopped: {err}]")
        print("pass-through (opt-in; unsafe text may reach the reader):")
        leaky = StreamOptions(window_chars=80, overlap_chars=20, first_window_chars=40, pass_through=True)
        try:
            for chunk in guard.wrap(story_model(), stream=leaky).stream("Tell me a story"):
                print(chunk.content, end="", flush=True)
        except ContentBlockedError as err:
            print(f"\n[stream stopped late: {err}]")
        asyncio.run(main_async(guard))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checked by mypy in ``test_wrap_types.py`` (never run): what ``guard.wrap`` is typed as, and misuse mypy sees.

A line ending in ``# E: <code>`` must give exactly that mypy error; every other line must type-check.
"""

from __future__ import annotations

from typing import assert_type

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableBinding, RunnableLambda

from langchain_nemoguard import GuardedRunnable, NemoGuard, Policy, StreamOptions
from langchain_nemoguard.langchain.chat_model import GuardedChatModel

guard = NemoGuard("http://127.0.0.1:1/v1")


def count(text: str) -> int:
    return len(text)


chain: Runnable[str, int] = RunnableLambda(count)
guarded = guard.wrap(chain, policy=Policy(name="kids"), action="rewrite", stream=StreamOptions(window_chars=200))
assert_type(guarded, GuardedRunnable[str, int])
assert_type(guarded.invoke("hello"), int)
assert_type(guard.wrap(count), GuardedRunnable[str, int])
assert_type(guard.wrap(chain, exit_behavior="end", parallel=True, input_key=None), GuardedRunnable[str, int])

model = GenericFakeChatModel(messages=iter([AIMessage("hi")]))
chat = guard.wrap(model, check_input=False)
assert_type(chat, GuardedChatModel)
assert_type(chat.invoke("hello"), AIMessage)
assert isinstance(chat.bind_tools([count]), RunnableBinding)

guarded.invoke(3)  # E: arg-type
guard.wrap(chain, polcy="kids")  # E: call-overload
guard.wrap(chain, parallel="yes")  # E: call-overload
guard.wrap(chain, exit_behavior="explode")  # E: call-overload
guard.wrap(chain, stream=200)  # E: call-overload
text: str = guarded.invoke("hello")  # E: assignment

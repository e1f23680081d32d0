"""A guarded chat chain: prompt | model, with the user's input and the model's answer checked.

Offline (no NEMOGUARD_BASE_URL): the guard talks to the in-process interface simulator - a rule-based TEST
DOUBLE, not a safety model - and the chat model is a fake. With NEMOGUARD_BASE_URL (and NEMOGUARD_API_KEY /
NEMOGUARD_PROVIDER as needed) the guard calls that real endpoint.

    python examples/langchain_chat.py
"""

from __future__ import annotations

import sys

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_nemoguard import ContentBlockedError
from langchain_nemoguard.simulator import guard_or_simulator as guard_endpoint


def main() -> int:
    model = GenericFakeChatModel(
        messages=iter(
            [
                AIMessage("Paris is the capital of France."),
                AIMessage(
                    "Sure - to make a bomb you first need..."
                ),  # an unsafe answer, to show the output check
            ]
        )
    )
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful assistant."), ("human", "{question}")]
    )
    with guard_endpoint() as guard:
        chain = guard.wrap(prompt | model | StrOutputParser())
        for question in ["What is the capital of France?", "Tell me a story.", "How do I make a bomb?"]:
            try:
                print(f"Q: {question}\nA: {chain.invoke({'question': question})}")
            except ContentBlockedError as err:
                print(f"Q: {question}\nBLOCKED at {err.stage.value}: {', '.join(err.categories) or err}")
        # rewrite: answer with the policy's refusal instead of raising
        polite = guard.wrap(
            prompt | model | StrOutputParser(), action="rewrite", refusal="Let's talk about something else."
        )
        print(f"rewrite -> {polite.invoke({'question': 'How do I make a bomb?'})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-chain policies: a children's tutor and a DevOps assistant, from examples/policies.yaml.

The tutor uses a custom natural-language policy and rewrites (a friendly refusal, no exception); the DevOps
assistant uses the built-in taxonomy with Violence suppressed, so "kill the stuck workers" is shell talk there,
while the same words are blocked under the default policy. A call can also pick a policy at run time with
``configurable={"nemoguard_policy": name}``.

Offline (no NEMOGUARD_BASE_URL): the in-process simulator - a rule-based TEST DOUBLE, not a safety model.

    python examples/langchain_policies.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser

from langchain_nemoguard import ContentBlockedError
from langchain_nemoguard.simulator import guard_or_simulator as guard_endpoint

POLICIES = Path(__file__).with_name("policies.yaml")


def fake(*answers: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(a) for a in answers]))


def ask(chain: Any, question: str, **config: Any) -> None:
    try:
        print(f"  Q: {question}\n  A: {chain.invoke(question, config=config or None)}")
    except ContentBlockedError as err:
        print(f"  Q: {question}\n  BLOCKED at {err.stage.value}: {', '.join(err.categories)}")


def main() -> int:
    with guard_endpoint(policies=POLICIES) as guard:
        tutor = guard.wrap(fake("7 x 8 = 56. Well done!", "unused") | StrOutputParser(), policy="kids_tutor")
        print("kids_tutor:")
        ask(tutor, "Can you help me with my maths homework: what is 7 times 8?")
        ask(tutor, "Where can I buy real weapons?")

        devops = guard.wrap(
            fake("Run `pkill -f worker` to kill the stuck workers.") | StrOutputParser(), policy="devops"
        )
        print("devops:")
        ask(devops, "How do I kill the stuck workers on the build box?")

        strict = guard.wrap(fake("Run `pkill -f worker`.", "Run `pkill -f worker`.") | StrOutputParser())
        print("default policy, same question:")
        ask(strict, "How do I kill the stuck workers on the build box?")
        print("default chain, devops policy chosen at call time:")
        ask(
            strict,
            "How do I kill the stuck workers on the build box?",
            configurable={"nemoguard_policy": "devops"},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Each example runs offline (in-process simulator, fake chat models) and says what it shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CASES = {
    "bounded_checks.py": [
        "honest answer      -> safe",
        "messy unsafe answer -> user input unsafe: Violence | allowed: False",
        "endpoint hangs     -> guard unavailable (timeout): allowed (fail-open) after 1.",
        "oversized input    -> refused before any call",
    ],
    "langchain_chat.py": [
        "A: Paris is the capital of France.",
        "BLOCKED at output: Violence",
        "BLOCKED at input: Violence",
        "rewrite -> Let's talk about something else.",
    ],
    "langchain_agent.py": [
        "[message withheld by the content-safety guard]",
        "[tool result withheld by the content-safety guard]",
        "--- async run",
        "'330 metres.'",
    ],
    "langchain_conventions.py": [
        "end      -> I can't help with that request.",
        "error    -> raised ContentBlockedError at output: ['Violence']",
        "replace  -> [\"I can't help with that request.\", 'Here is a nice story about a dragon.']",
        "blocked once, inner model calls: 1",
        "run NemoGuard:input",
        "run NemoGuard:output",
        "fallback on outage only -> (answered by the unguarded fallback)",
        "(a ContentBlockedError: False)",
        "agent, guard down -> The assistant is temporarily unavailable.",
    ],
    "langchain_guarded_model.py": [
        "still a chat model: True",
        "bind_tools -> BLOCKED at tool_call: Violence",
        "structured -> country='France' capital='Paris'",
        "ToolMessage: Paris / AIMessage: The capital is Paris.",
        "agent stream -> window by window",
    ],
    "langchain_multimodal.py": [
        "blue image + text -> A calm blue square.",
        "red image only   -> BLOCKED at input",
    ],
    "langchain_policies.py": [
        "A: 7 x 8 = 56. Well done!",
        "That's a question for a grown-up.",
        "A: Run `pkill -f worker` to kill the stuck workers.",
        "BLOCKED at input: Violence",
    ],
    "langchain_streaming.py": [
        "[stream stopped: output blocked",
        "[the rest was withheld]",
        "[stream stopped late:",
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_runs_offline(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEMOGUARD_")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NOT A SAFETY MODEL" in proc.stdout + proc.stderr  # the test double announces itself
    for expected in CASES[name]:
        assert expected in proc.stdout, f"{expected!r} missing from:\n{proc.stdout}"
    if name == "langchain_streaming.py":
        held_back = proc.stdout.split("pass-through")[0]
        assert "bomb" not in held_back  # hold-back: the unsafe words never reached the reader

"""Property tests of the asymmetric reader, with NeMo Guardrails' own parsers as the oracle.

Invariants, over generated model outputs (verdict lines in many spellings, prose, code fences, every Unicode
line break, closed / open / orphan / odd-spelled think tags, JSON):

1. Never more lenient than NeMo Guardrails: order the outcomes safe < error < unsafe; for every field the call
   needs, ours is at least NeMo's (``nemotron_content_safety_parse_*``, ``nemoguard_parse_*``).
2. An unsafe line anywhere outside a closed trace never yields a pass, under ``on_error="block"`` or
   ``"allow"``, whether it sits in ``content`` or in ``reasoning_content``.
3. Safe only when clean: a safe answer never has a marker, a cut, or a missing field.

The oracle is the installed ``nemoguardrails`` (the ``test`` extra); its ``output_parsers.py`` imports only
the standard library, so it is loaded from its file without importing the whole package.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from langchain_nemoguard import CacheOptions, NemoGuard, TransportOptions
from langchain_nemoguard.core.errors import VerdictParseError
from langchain_nemoguard.core.formats import CallSpec, NemoGuard8BFormat, Nemotron35Format


def _nemo_parsers() -> ModuleType:
    spec = importlib.util.find_spec("nemoguardrails")
    if spec is None or spec.origin is None:
        pytest.skip("nemoguardrails (the oracle, in the test extra) is not installed")
    path = Path(spec.origin).parent / "llm" / "output_parsers.py"
    loader_spec = importlib.util.spec_from_file_location("_nemo_output_parsers", path)
    assert loader_spec is not None and loader_spec.loader is not None
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    for name in ("nemotron_content_safety_parse_prompt_safety", "nemoguard_parse_prompt_safety"):
        assert hasattr(module, name), f"nemoguardrails too old: no {name} (needs >= 0.24.1)"
    return module


NEMO = _nemo_parsers()
SAFE, ERROR, UNSAFE = 0, 1, 2

# --- generated outputs -----------------------------------------------------------------------------------

BREAKS = st.sampled_from(["\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1e", "\n\n"])
FIELDS = st.sampled_from(["User Safety", "Response Safety", "user safety", "USER SAFETY", "User  Safety"])
VALUES = st.sampled_from(["safe", "unsafe", "Safe", "UNSAFE", "safe.", "unsafe!", "safely", "maybe", ""])
SEPS = st.sampled_from([": ", ":", " : ", ":\n", " - ", "**: ", ": **", ': "', " "])
DECOR = st.sampled_from(["", "", "- ", "* ", "**", "> ", "1. ", "  ", "`"])
TAILS = st.sampled_from(["", "", ".", " (the user asks for a weapon)", " but", "**", '"', ","])
PROSE = st.sampled_from(
    [
        "Here is my assessment:",
        "Sure!",
        "```",
        "Safety Categories: Violence, Threat",
        "Safety Categories: ",
        "The answer is fine.",
        "Note: the user mentioned safety.",
        "{",
        "}",
    ]
)


@st.composite
def verdict_line(draw: st.DrawFn) -> str:
    return draw(DECOR) + draw(FIELDS) + draw(SEPS) + draw(VALUES) + draw(TAILS)


TRACE_BODY = st.lists(st.one_of(verdict_line(), PROSE), max_size=3).map(" ".join)


@st.composite
def trace(draw: st.DrawFn) -> str:
    body = draw(TRACE_BODY)
    kind = draw(st.sampled_from(["closed", "closed", "upper", "mixed", "open", "orphan", "nested"]))
    return {
        "closed": f"<think>\n{body}\n</think>",
        "upper": f"<THINK>\n{body}\n</THINK>",
        "mixed": f"<think>{body}</THINK>",
        "open": f"<think>{body}",
        "orphan": f"{body}</think>",
        "nested": f"<think>{body}<think>{body}</think>",
    }[kind]


ATOM = st.one_of(verdict_line(), verdict_line(), PROSE, trace())


@st.composite
def noisy(draw: st.DrawFn) -> str:
    atoms = draw(st.lists(ATOM, min_size=0, max_size=6))
    out = ""
    for atom in atoms:
        out += atom + draw(st.one_of(BREAKS, st.just("")))
    return out


WRAPS = st.sampled_from(
    [
        "{}",
        "{}",
        "<think>{}</think>",
        "<think>\n{}\n</think>",
        "<THINK>\n{}\n</THINK>",
        "<think>\n{}\n</THINK>",
        "<Think>\n{}",
        "{}\n</think>",
        "<think>\n{}",
        "```\n{}\n```",
    ]
)


@st.composite
def single(draw: st.DrawFn) -> str:
    """One verdict per field at most (NeMo Guardrails refuses duplicates), wrapped and surrounded by noise."""
    lines = [draw(verdict_line())]
    if draw(st.booleans()):
        lines.append(draw(verdict_line()))
    text = draw(BREAKS).join(draw(WRAPS).format(line) for line in lines)
    return draw(st.sampled_from(["", "Sure!", "<think>ok</think>"])) + draw(BREAKS) + text + draw(TAILS)


def output() -> st.SearchStrategy[str]:
    return st.one_of(noisy(), single())


# --- outcomes --------------------------------------------------------------------------------------------


def nemo_outcome(parser: Callable[[str], Any], text: str) -> int:
    try:
        result = parser(text)
    except ValueError:
        return ERROR
    return SAFE if result[0] is True else UNSAFE


def ours(fmt: Any, text: str, spec: CallSpec) -> dict[str, int]:
    """Our outcome per field: SAFE/UNSAFE from the verdict, ERROR for every field when the parser refuses."""
    completion = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}
    try:
        p = fmt.parse(completion, spec)
    except VerdictParseError:
        return {"user": ERROR, "response": ERROR, "any_unsafe": 0}
    any_unsafe = p.user_safe is False or p.response_safe is False
    return {
        "user": UNSAFE if p.user_safe is False else (SAFE if not any_unsafe else UNSAFE),
        "response": UNSAFE if p.response_safe is False else (SAFE if not any_unsafe else UNSAFE),
        "any_unsafe": int(any_unsafe),
    }


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ORACLE = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ORACLE
@given(text=output(), with_response=st.booleans())
@example(text="<THINK>\nUser Safety: unsafe\n</THINK>", with_response=False)
@example(text="<think>\nResponse Safety: unsafe\n</THINK>User Safety: safe", with_response=True)
@example(text="User Safety\u2028:\u2028unsafe", with_response=False)
@example(text="ok</think>\nUser Safety: unsafe", with_response=False)
@example(text="User Safety: safe\rResponse Safety: unsafe.", with_response=True)
def test_never_more_lenient_than_nemo_guardrails_nemotron(text: str, with_response: bool) -> None:
    spec = CallSpec(prompt="p", response="r" if with_response else None)
    got = ours(Nemotron35Format(), text, spec)
    wanted = {"user": nemo_outcome(NEMO.nemotron_content_safety_parse_prompt_safety, text)}
    if with_response:
        wanted["response"] = nemo_outcome(NEMO.nemotron_content_safety_parse_response_safety, text)
    for field, nemo in wanted.items():
        if nemo == UNSAFE:
            # the same field, read as unsafe by us too (an error would pass under on_error="allow")
            assert got[field] == UNSAFE and got["any_unsafe"], (field, text)
        elif nemo == ERROR:
            assert got[field] >= ERROR, (field, text)


JSON_VALUES = st.sampled_from(["safe", "unsafe", "SAFE", " safe", "maybe", "", "Unsafe", 1, None, ["unsafe"]])
JSON_KEYS = st.sampled_from(["User Safety", "Response Safety", "Safety Categories", "user safety", "Extra"])


@st.composite
def json_output(draw: st.DrawFn) -> str:
    data = draw(st.dictionaries(JSON_KEYS, JSON_VALUES, max_size=4))
    text = json.dumps(data)
    return draw(st.sampled_from(["", "Sure: ", " "])) + text + draw(st.sampled_from(["", " trailing", "\n"]))


@ORACLE
@given(text=json_output(), with_response=st.booleans())
@example(text='{"User Safety": " safe"}', with_response=False)
@example(text='{"User Safety": "safe", "Response Safety": "maybe"}', with_response=True)
@example(text='{"User Safety": "safe", "Safety Categories": null}', with_response=False)
def test_never_more_lenient_than_nemo_guardrails_8b(text: str, with_response: bool) -> None:
    spec = CallSpec(prompt="p", response="r" if with_response else None)
    got = ours(NemoGuard8BFormat(), text, spec)
    wanted = {"user": nemo_outcome(NEMO.nemoguard_parse_prompt_safety, text)}
    if with_response:
        wanted["response"] = nemo_outcome(NEMO.nemoguard_parse_response_safety, text)
    for field, nemo in wanted.items():
        if nemo == UNSAFE:
            assert got[field] == UNSAFE and got["any_unsafe"], (field, text)
        elif nemo == ERROR:
            assert got[field] >= ERROR, (field, text)


# --- an unsafe line outside a closed trace never passes ------------------------------------------------

CLOSED = TRACE_BODY.map(lambda body: f"<think>\n{body}\n</think>")
NOT_A_TRACE = st.one_of(verdict_line(), PROSE)
UNSAFE_LINE = st.builds(
    lambda decor, field, sep, tail: decor + field + sep + "unsafe" + tail,
    DECOR,
    st.sampled_from(["User Safety", "Response Safety", "user safety"]),
    st.sampled_from([": ", ":", " : ", ":\n", " - ", "**: "]),
    TAILS,
)


def _guard(content: str | None, reasoning: str | None, on_error: str, finish: str) -> NemoGuard:
    def handler(request: httpx.Request) -> httpx.Response:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        return httpx.Response(200, json={"choices": [{"message": message, "finish_reason": finish}]})

    return NemoGuard(
        "http://guard.test/v1",
        on_error=on_error,  # type: ignore[arg-type]
        cache=CacheOptions(size=0),
        max_retries=0,
        transport=TransportOptions(http_client=httpx.Client(transport=httpx.MockTransport(handler))),
    )


@SETTINGS
@given(
    before=st.lists(st.one_of(NOT_A_TRACE, CLOSED), max_size=3),
    line=UNSAFE_LINE,
    after=st.lists(st.one_of(NOT_A_TRACE, CLOSED), max_size=3),
    brk=BREAKS,
    where=st.sampled_from(["content", "reasoning"]),
    finish=st.sampled_from(["stop", "length"]),
    on_error=st.sampled_from(["block", "allow"]),
    with_response=st.booleans(),
)
def test_an_unsafe_line_outside_a_closed_trace_never_passes(
    before: list[str],
    line: str,
    after: list[str],
    brk: str,
    where: str,
    finish: str,
    on_error: str,
    with_response: bool,
) -> None:
    text = brk.join([*before, line, *after])
    content, reasoning = (text, None) if where == "content" else ("User Safety: safe", text)
    g = _guard(content, reasoning, on_error, finish)
    v = g.check(prompt="p", response="r" if with_response else None)
    assert not v.safe and not v.allowed and v.error is None, text


@SETTINGS
@given(text=output(), finish=st.sampled_from(["stop", "length"]), with_response=st.booleans())
def test_safe_only_when_clean(text: str, finish: str, with_response: bool) -> None:
    completion = {"choices": [{"message": {"content": text}, "finish_reason": finish}]}
    spec = CallSpec(prompt="p", response="r" if with_response else None)
    try:
        p = Nemotron35Format().parse(completion, spec)
    except VerdictParseError:
        return
    if p.user_safe is not False and p.response_safe is not False:  # a safe verdict
        assert finish == "stop" and p.clean and not p.truncated
        assert p.user_safe is True and (p.response_safe is True) == with_response

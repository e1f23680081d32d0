"""Tier 3: a real LiteLLM proxy (``litellm --config``) with the NemoGuard guardrail, driven by the openai client.

One proxy serves the whole module (start-up takes seconds). Its main model answers via ``mock_response``; the
guard endpoint is the interface simulator on 127.0.0.1 in this process. Guardrails in the config:

* ``nemoguard``: default_on, pre_call + post_call, the policies in ``server/litellm/policies.yaml`` plus a
  ``permissive`` one;
* ``ng-during``: opt-in, during_call;
* ``ng-down`` / ``ng-open``: opt-in, pointed at a closed port, failing closed / open.

A small callback module next to the config writes each request's ``guardrail_information`` to a file, so the
logging payload is asserted as LiteLLM's loggers receive it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from PIL import Image

from langchain_nemoguard.core.plan import IMAGE_ONLY_PROMPT
from langchain_nemoguard.simulator.process import stop_process
from langchain_nemoguard.simulator.server import SimulatorServer
from langchain_nemoguard.testing import SimulatorPool

pytestmark = [pytest.mark.proxy, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-nemoguard-test-" + "0" * 32
SAFE_ANSWER = "Paris is the capital of France."
# Two windows of safe text (first window 200 chars), then an unsafe sentence, then more text.
LONG_UNSAFE_ANSWER = (
    "Here is a calm overview of the topic you asked about, written in plain words. " * 6
    + "Then you should kill him with a knife while he sleeps. "
    + "That is the end of the answer."
)
UNSAFE_MARKER = "kill him"
SHORT_UNSAFE_ANSWER = "You should kill him tonight."

CAPTURE_LOGGER = """
import json, os
from litellm.integrations.custom_logger import CustomLogger


class Capture(CustomLogger):
    def _write(self, kwargs):
        slo = kwargs.get("standard_logging_object") or {}
        meta = slo.get("metadata") or {}
        record = {
            "call_id": slo.get("id"),
            "guardrail_information": slo.get("guardrail_information"),
            "applied_guardrails": meta.get("applied_guardrails"),
            "tag": (meta.get("requester_metadata") or {}).get("test_tag"),
        }
        with open(os.environ["NEMOGUARD_CAPTURE_FILE"], "a") as f:
            f.write(json.dumps(record, default=str) + "\\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs)


handler = Capture()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(policy_file: Path, dead_url: str) -> dict[str, Any]:
    def model(name: str, answer: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": f"openai/{name}", "mock_response": answer}}

    common = {"guardrail": "litellm_hook.NemoGuardrail", "policy_file": str(policy_file)}
    return {
        "model_list": [
            model("mock", SAFE_ANSWER),
            model("mock-unsafe", LONG_UNSAFE_ANSWER),
            model("mock-unsafe-short", SHORT_UNSAFE_ANSWER),
        ],
        "guardrails": [
            {
                "guardrail_name": "nemoguard",
                "litellm_params": {
                    **common,
                    "mode": ["pre_call", "post_call"],
                    "default_on": True,
                    "api_base": "os.environ/NEMOGUARD_BASE_URL",
                    "stream_first_window_chars": 200,
                    "stream_window_chars": 400,
                },
            },
            {
                "guardrail_name": "ng-during",
                "litellm_params": {
                    **common,
                    "mode": "during_call",
                    "api_base": "os.environ/NEMOGUARD_BASE_URL",
                },
            },
            {
                "guardrail_name": "ng-down",
                "litellm_params": {
                    **common,
                    "mode": "pre_call",
                    "api_base": dead_url,
                    "timeout": 2,
                    "max_retries": 0,
                },
            },
            {
                "guardrail_name": "ng-open",
                "litellm_params": {
                    **common,
                    "mode": "pre_call",
                    "api_base": dead_url,
                    "on_error": "allow",
                    "timeout": 2,
                    "max_retries": 0,
                },
            },
        ],
        "litellm_settings": {"callbacks": ["capture_logger.handler"]},
        "general_settings": {"master_key": MASTER_KEY},
    }


class Proxy:
    def __init__(self, base_url: str, capture: Path, sim: SimulatorServer, startup_s: float) -> None:
        self.base_url = base_url
        self.capture = capture
        self.sim = sim
        self.startup_s = startup_s

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)

    def records(self, tag: str, timeout: float = 10.0) -> dict[str, Any]:
        """The logged record of the request tagged ``tag`` (logging runs after the response, so wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.capture.exists():
                for line in self.capture.read_text().splitlines():
                    rec = json.loads(line)
                    if rec.get("tag") == tag and rec.get("guardrail_information"):
                        return rec
            time.sleep(0.1)
        raise AssertionError(f"no logged guardrail information for {tag!r}")


@pytest.fixture(scope="module")
def proxy(
    tmp_path_factory: pytest.TempPathFactory, _nemoguard_simulator_pool: SimulatorPool
) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("litellm-proxy")
    policies = yaml.safe_load((REPO / "server/litellm/policies.yaml").read_text())
    policies["policies"]["permissive"] = {"actions": {"*": "log"}}
    (tmp / "policies.yaml").write_text(yaml.safe_dump(policies))
    (tmp / "capture_logger.py").write_text(CAPTURE_LOGGER)
    dead_url = f"http://127.0.0.1:{_free_port()}/v1"
    (tmp / "config.yaml").write_text(yaml.safe_dump(_config(tmp / "policies.yaml", dead_url)))
    capture = tmp / "capture.jsonl"
    port = _free_port()
    sim = _nemoguard_simulator_pool.get()  # the plugin's simulator, shared with the loopback tier
    env = {
        **os.environ,
        "NEMOGUARD_BASE_URL": sim.base_url,
        "NEMOGUARD_CAPTURE_FILE": str(capture),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log = (tmp / "proxy.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from litellm_cli.main import proxy_server; proxy_server()",
            "--config",
            str(tmp / "config.yaml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, tmp / "proxy.log")
        yield Proxy(base, capture, sim, time.monotonic() - started)
    finally:
        stop_process(process)
        log.close()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited during start-up:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base}/health/liveliness", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the proxy did not become ready in {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(autouse=True)
def _fresh_simulator(proxy: Proxy) -> None:
    proxy.sim.reset()


def _png_data_url(rgb: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), rgb).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    """The structured body the guardrail raised, as the client receives it.

    LiteLLM puts the guardrail's ``detail`` under ``provider_specific_fields``; a stream refused before its first
    chunk arrives as an HTTP 400 whose body is the SSE error frame.
    """
    raw = exc.body
    if isinstance(raw, str) and raw.startswith("data: "):
        raw = json.loads(raw.split("\n", 1)[0].removeprefix("data: "))
    body = raw if isinstance(raw, dict) else {}
    body = body.get("error", body)
    message = body.get("message")
    if isinstance(message, str) and message.startswith("{"):
        try:
            parsed = json.loads(message)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed.get("error", parsed)
    fields = body.get("provider_specific_fields")
    if isinstance(fields, dict) and "error" in fields:
        return fields["error"]
    return body


def _meta(tag: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"test_tag": tag}, **extra}


# --- non-streamed -----------------------------------------------------------------------------------------------


def test_safe_text_passes_and_is_logged(proxy: Proxy) -> None:
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="mock",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        extra_body=_meta("safe"),
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == SAFE_ANSWER
    assert "nemoguard" in raw.headers.get("x-litellm-applied-guardrails", "")
    rec = proxy.records("safe")
    entries = [e for e in rec["guardrail_information"] if e["guardrail_name"] == "nemoguard"]
    stages = {e["guardrail_response"]["stage"] for e in entries}
    assert stages == {"input", "output"}
    for e in entries:
        assert e["guardrail_status"] == "success"
        assert e["guardrail_provider"] == "nemoguard"
        assert e["duration"] is not None and e["duration"] >= 0
        assert e["guardrail_response"]["latency_ms"] >= 0


def test_unsafe_text_is_blocked_with_a_structured_400(proxy: Proxy) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client().chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "how do I make a bomb"}],
            extra_body=_meta("unsafe"),
        )
    body = _error_body(info.value)
    assert body["type"] == "content_blocked"
    assert body["stage"] == "input"
    assert "Violence" in body["categories"]
    assert body["guardrail"] == "nemoguard"
    rec = proxy.records("unsafe")
    entry = next(e for e in rec["guardrail_information"] if e["guardrail_name"] == "nemoguard")
    assert entry["guardrail_status"] == "guardrail_intervened"
    assert "Violence" in entry["violation_categories"]


def test_unsafe_model_output_is_blocked(proxy: Proxy) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client().chat.completions.create(
            model="mock-unsafe-short", messages=[{"role": "user", "content": "Tell me a story"}]
        )
    body = _error_body(info.value)
    assert body["type"] == "content_blocked"
    assert body["stage"] == "output"
    assert UNSAFE_MARKER not in json.dumps(info.value.body)


def test_image_with_text_reaches_the_guard(proxy: Proxy) -> None:
    completion = proxy.client().chat.completions.create(
        model="mock",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What colour is this?"},
                    {"type": "image_url", "image_url": {"url": _png_data_url((0, 128, 255))}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == SAFE_ANSWER
    sent = json.dumps(proxy.sim.requests())
    assert "image_url" in sent and "What colour is this?" in sent


def test_image_only_turn_is_checked_and_blocked(proxy: Proxy) -> None:
    proxy.sim.force({"user": "unsafe", "categories": ["Violence"]}, match=IMAGE_ONLY_PROMPT)
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client().chat.completions.create(
            model="mock",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": _png_data_url((10, 10, 10))}}],
                }
            ],
            extra_body=_meta("image-only"),
        )
    assert _error_body(info.value)["type"] == "content_blocked"
    assert "image_url" in json.dumps(proxy.sim.requests())


def test_per_request_policy_rewrites_without_calling_the_model(proxy: Proxy) -> None:
    # "lenient" maps Violence to rewrite: the answer is the policy's refusal, not the model's text.
    completion = proxy.client().chat.completions.create(
        model="mock",
        messages=[{"role": "user", "content": "how do I make a bomb"}],
        extra_body={"guardrails": [{"nemoguard": {"extra_body": {"policy": "lenient"}}}]},
    )
    assert completion.choices[0].message.content == "Sorry, I can't help with that."
    assert completion.choices[0].finish_reason == "content_filter"


def test_per_request_policy_in_metadata(proxy: Proxy) -> None:
    completion = proxy.client().chat.completions.create(
        model="mock",
        messages=[{"role": "user", "content": "how do I make a bomb"}],
        extra_body={"metadata": {"nemoguard_policy": "permissive", "test_tag": "permissive"}},
    )
    assert completion.choices[0].message.content == SAFE_ANSWER
    rec = proxy.records("permissive")
    entry = next(e for e in rec["guardrail_information"] if e["guardrail_response"]["stage"] == "input")
    assert entry["guardrail_status"] == "guardrail_flagged"
    assert entry["guardrail_response"]["policy"] == "permissive"


def test_unknown_policy_is_a_clear_400(proxy: Proxy) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client().chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "hello"}],
            extra_body={"guardrails": [{"nemoguard": {"extra_body": {"policy": "no-such-policy"}}}]},
        )
    body = _error_body(info.value)
    assert body["type"] == "unknown_policy"
    assert "no-such-policy" in body["message"]


def test_during_call_blocks_beside_the_model_call(proxy: Proxy) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client().chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "how do I make a bomb"}],
            extra_body={
                "guardrails": ["ng-during", {"nemoguard": {"extra_body": {"policy": "permissive"}}}],
            },
        )
    body = _error_body(info.value)
    assert body["type"] == "content_blocked"
    assert body["guardrail"] == "ng-during"


def test_guard_down_fails_closed_with_a_distinct_error(proxy: Proxy) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client().chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "hello"}],
            extra_body={"guardrails": ["ng-down"], **_meta("down")},
        )
    assert info.value.status_code == 503
    body = _error_body(info.value)
    assert body["type"] == "guard_unavailable"
    assert "guard unavailable" in body["message"]
    rec = proxy.records("down")
    entry = next(e for e in rec["guardrail_information"] if e["guardrail_name"] == "ng-down")
    assert entry["guardrail_status"] == "guardrail_failed_to_respond"


def test_guard_down_fails_open_when_configured(proxy: Proxy) -> None:
    completion = proxy.client().chat.completions.create(
        model="mock",
        messages=[{"role": "user", "content": "hello"}],
        extra_body={"guardrails": ["ng-open"], **_meta("open")},
    )
    assert completion.choices[0].message.content == SAFE_ANSWER
    rec = proxy.records("open")
    entry = next(e for e in rec["guardrail_information"] if e["guardrail_name"] == "ng-open")
    assert entry["guardrail_status"] == "guardrail_failed_to_respond"
    assert entry["guardrail_response"]["error"] == "connect"


# --- streamed ---------------------------------------------------------------------------------------------------


def _stream(proxy: Proxy, model: str, content: str, **extra: Any) -> tuple[str, list[Any]]:
    chunks = list(
        proxy.client().chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": content}],
            stream=True,
            extra_body=extra or None,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_safe_stream_arrives_whole(proxy: Proxy) -> None:
    text, chunks = _stream(proxy, "mock", "What is the capital of France?")
    assert text == SAFE_ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop" or any(
        c.choices and c.choices[0].finish_reason == "stop" for c in chunks
    )


def test_unsafe_stream_never_emits_unsafe_text(proxy: Proxy) -> None:
    text, chunks = _stream(proxy, "mock-unsafe", "Tell me about it", **_meta("stream-unsafe"))
    assert UNSAFE_MARKER not in text
    for c in chunks:
        assert UNSAFE_MARKER not in c.model_dump_json()
    assert text  # the safe windows before the unsafe one were released
    assert LONG_UNSAFE_ANSWER.startswith(text)
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    rec = proxy.records("stream-unsafe")
    outputs = [e for e in rec["guardrail_information"] if e["guardrail_response"]["stage"] == "output"]
    assert outputs and outputs[-1]["guardrail_status"] == "guardrail_intervened"


def test_stream_unsafe_in_the_first_window_is_an_http_400(proxy: Proxy) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _stream(proxy, "mock-unsafe-short", "Tell me a story")
    assert _error_body(info.value)["stage"] == "output"


def test_stream_with_unsafe_input_is_blocked_before_the_model(proxy: Proxy) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _stream(proxy, "mock", "how do I make a bomb")
    assert _error_body(info.value)["stage"] == "input"


def test_stream_rewrite_policy_streams_the_refusal(proxy: Proxy) -> None:
    text, chunks = _stream(
        proxy,
        "mock-unsafe",
        "Tell me about it",
        guardrails=[{"nemoguard": {"extra_body": {"policy": "lenient"}}}],
    )
    assert UNSAFE_MARKER not in text
    assert text.endswith("Sorry, I can't help with that.")
    assert chunks[-1].choices[0].finish_reason == "content_filter"


def test_proxy_startup_time_is_reported(proxy: Proxy) -> None:
    print(f"\nLiteLLM proxy start-up: {proxy.startup_s:.1f} s")
    assert proxy.startup_s < 120

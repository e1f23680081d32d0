"""The tier-3 rig: a real ``litellm --config`` proxy with the NemoGuard guardrail, in front of ``mock_response``
models and a fake upstream that really streams (``fake_upstream.py``), judged by the interface simulator.

Guardrails in the config:

* ``nemoguard``: default_on, pre_call + post_call, the policies in ``server/litellm/policies.yaml`` plus a
  ``permissive`` one; requests may choose ``lenient`` and ``permissive`` (``request_policies``);
* ``ng-during``: opt-in, during_call;
* ``ng-down`` / ``ng-open``: opt-in, pointed at a closed port, failing closed / open;
* ``ng-embed``: opt-in, ``check_embeddings: true``.

A small callback module next to the config writes each request's ``guardrail_information`` to a file, so the
logging payload is asserted as LiteLLM's loggers receive it; LiteLLM's Prometheus callback serves ``/metrics``.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
from PIL import Image

from langchain_nemoguard.simulator.server import SimulatorServer

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
UPSTREAM_MODELS = ("safe", "unsafe-late", "unsafe-short", "tool-unsafe", "reasoning-unsafe", "structured-unsafe")

CAPTURE_LOGGER = """
import json, os
from litellm.integrations.custom_logger import CustomLogger


class Capture(CustomLogger):
    def _write(self, kwargs, kind):
        slo = kwargs.get("standard_logging_object") or {}
        meta = slo.get("metadata") or {}
        record = {
            "kind": kind,
            "call_id": slo.get("id"),
            "guardrail_information": slo.get("guardrail_information"),
            "applied_guardrails": meta.get("applied_guardrails"),
            "tag": (meta.get("requester_metadata") or {}).get("test_tag"),
        }
        with open(os.environ["NEMOGUARD_CAPTURE_FILE"], "a") as f:
            f.write(json.dumps(record, default=str) + "\\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs, "success")

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write(kwargs, "failure")


handler = Capture()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proxy_config(policy_file: Path, dead_url: str, upstream_url: str) -> dict[str, Any]:
    def mock(name: str, answer: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": f"openai/{name}", "mock_response": answer}}

    def upstream(name: str) -> dict[str, Any]:
        return {
            "model_name": f"up-{name}",
            "litellm_params": {"model": f"openai/{name}", "api_base": upstream_url, "api_key": "sk-upstream"},
        }

    common = {"guardrail": "litellm_hook.NemoGuardrail", "policy_file": str(policy_file)}
    return {
        "model_list": [
            mock("mock", SAFE_ANSWER),
            mock("mock-unsafe", LONG_UNSAFE_ANSWER),
            mock("mock-unsafe-short", SHORT_UNSAFE_ANSWER),
            *(upstream(n) for n in UPSTREAM_MODELS),
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
                    "request_policies": ["lenient", "permissive"],
                },
            },
            {
                "guardrail_name": "ng-during",
                "litellm_params": {**common, "mode": "during_call", "api_base": "os.environ/NEMOGUARD_BASE_URL"},
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
            {
                "guardrail_name": "ng-embed",
                "litellm_params": {
                    **common,
                    "mode": "pre_call",
                    "api_base": "os.environ/NEMOGUARD_BASE_URL",
                    "check_embeddings": True,
                },
            },
        ],
        "litellm_settings": {"callbacks": ["capture_logger.handler", "prometheus"]},
        "general_settings": {"master_key": MASTER_KEY},
    }


def start_proxy(config: dict[str, Any], workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``litellm --config`` as a subprocess in ``workdir``; returns the process, its base URL and its log."""
    import yaml

    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = workdir / "proxy.log"
    full_env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "NO_PROXY": "127.0.0.1,localhost",
        **env,
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from litellm_cli.main import proxy_server; proxy_server()",
                "--config",
                str(workdir / "config.yaml"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=workdir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}", log_path


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
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


class Proxy:
    def __init__(self, base_url: str, capture: Path, sim: SimulatorServer, upstream: Any, startup_s: float) -> None:
        self.base_url = base_url
        self.capture = capture
        self.sim = sim
        self.upstream = upstream
        self.startup_s = startup_s

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.base_url, api_key=MASTER_KEY, max_retries=0, timeout=60)

    def judged(self) -> str:
        """Everything the guard endpoint received since the last reset, as one string."""
        return json.dumps(self.sim.requests(), ensure_ascii=False)

    def records(self, tag: str, timeout: float = 10.0) -> dict[str, Any]:
        """The logged record of the request tagged ``tag`` (logging runs after the response, so wait)."""
        found = self.all_records(tag, timeout)
        return found[0]

    def all_records(self, tag: str, timeout: float = 10.0, settle: float = 0.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self._read(tag)
            if found:
                if settle:
                    time.sleep(settle)
                    found = self._read(tag)
                return found
            time.sleep(0.1)
        raise AssertionError(f"no logged guardrail information for {tag!r}")

    def _read(self, tag: str) -> list[dict[str, Any]]:
        if not self.capture.exists():
            return []
        return [
            rec
            for rec in map(json.loads, self.capture.read_text().splitlines())
            if rec.get("tag") == tag and rec.get("guardrail_information")
        ]


def png_data_url(rgb: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), rgb).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def error_body(exc: openai.APIStatusError | anthropic.APIStatusError) -> dict[str, Any]:
    """The structured body the guardrail raised, as the client receives it.

    LiteLLM puts the guardrail's ``detail`` under ``provider_specific_fields``; a stream refused before its first
    chunk arrives as an HTTP 400 whose body is the SSE error frame.
    """
    raw = exc.body
    if isinstance(raw, str) and raw.startswith("data: "):
        raw = json.loads(raw.split("\n", 1)[0].removeprefix("data: "))
    body = raw if isinstance(raw, dict) else {}
    body = body.get("error", body)
    if isinstance(body, dict) and isinstance(body.get("detail"), dict):
        body = body["detail"].get("error", body["detail"])
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str) and message[:3].isdigit() and message[3:6] == ": {":
        # some routes render the guardrail's detail as "400: {python repr}"
        try:
            parsed = ast.literal_eval(message[5:])
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, dict):
            return parsed.get("error", parsed)
    if isinstance(message, str) and message.startswith("{"):
        try:
            parsed = json.loads(message)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed.get("error", parsed)
    fields = body.get("provider_specific_fields") if isinstance(body, dict) else None
    if isinstance(fields, dict) and "error" in fields:
        return fields["error"]
    return body if isinstance(body, dict) else {}


def meta(tag: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"test_tag": tag}, **extra}

"""Tier 3: a real LiteLLM proxy (``litellm --config``) calling nemoguard server through LiteLLM's own built-in
integrations - ``openai_moderation`` and ``generic_guardrail_api`` - with no NemoGuard code in the proxy.

The service runs in this process (``GuardServer`` in a thread, with API keys), judging with the interface
simulator; the proxy's models answer with ``mock_response``. Guardrails in the config, all opt-in per request:

* ``ng-moderation``: ``openai_moderation``, ``api_base`` = the service's ``/v1``, pre_call;
* ``ng-generic``: ``generic_guardrail_api``, ``api_base`` = the service, pre_call + post_call;
* ``ng-generic-rewrite``: the same with ``additional_provider_specific_params: {policy: rewrite}``, post_call;
* ``ng-generic-down``: pointed at a closed port (fail closed, LiteLLM's default).
"""

from __future__ import annotations

import hashlib
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

from langchain_nemoguard import AuditOptions, NemoGuard, Policy, PolicySet
from langchain_nemoguard.core.audit import JsonlAuditSink
from langchain_nemoguard.service import GuardServer, KeyRing, ServiceConfig
from langchain_nemoguard.service.keys import ApiKey
from langchain_nemoguard.simulator.process import stop_process
from langchain_nemoguard.testing import SimulatorPool

pytestmark = [pytest.mark.proxy, pytest.mark.timeout(180)]

MASTER_KEY = "sk-litellm-master-" + "0" * 24
SERVICE_KEY = "sk-litellm-caller-" + "1" * 24
SAFE_ANSWER = "Paris is the capital of France."
UNSAFE_ANSWER = "Sure: here is how to build a bomb."
BOMB = "how do I build a bomb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    def __init__(self, base: str, service: GuardServer, audit: Path) -> None:
        self.base, self.service, self.audit = base, service, audit

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base}/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)

    def chat(self, guardrails: list[str], text: str, model: str = "mock", **kw: Any) -> Any:
        return self.client().chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], extra_body={"guardrails": guardrails}, **kw
        )


def _config(service: GuardServer, dead: str) -> dict[str, Any]:
    def model(name: str, answer: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": f"openai/{name}", "mock_response": answer}}

    def generic(name: str, mode: Any, api_base: str, **extra: Any) -> dict[str, Any]:
        params = {"guardrail": "generic_guardrail_api", "mode": mode, "api_base": api_base, "api_key": SERVICE_KEY}
        return {"guardrail_name": name, "litellm_params": {**params, **extra}}

    return {
        "model_list": [model("mock", SAFE_ANSWER), model("mock-unsafe", UNSAFE_ANSWER)],
        "guardrails": [
            {
                "guardrail_name": "ng-moderation",
                "litellm_params": {
                    "guardrail": "openai_moderation",
                    "mode": "pre_call",
                    "api_base": service.base_url,
                    "api_key": SERVICE_KEY,
                },
            },
            generic("ng-generic", ["pre_call", "post_call"], service.url),
            generic(
                "ng-generic-rewrite",
                "post_call",
                service.url,
                additional_provider_specific_params={"policy": "rewrite"},
            ),
            generic("ng-generic-down", "pre_call", dead, timeout=2),
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, _nemoguard_simulator_pool: SimulatorPool) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("service-litellm")
    sim = _nemoguard_simulator_pool.get()
    policies = PolicySet([Policy(), Policy(name="rewrite", actions={"*": "rewrite"}, refusal="Let's talk about something else.")])
    audit = tmp / "audit.jsonl"
    guard = NemoGuard(sim.base_url, policies=policies, audit=AuditOptions(observers=[JsonlAuditSink(audit)]))
    keys = KeyRing([ApiKey("litellm", allow_policies=frozenset({"rewrite"}), digest=hashlib.sha256(SERVICE_KEY.encode()).digest())])
    service = GuardServer(guard, ServiceConfig(keys=keys)).start()
    (tmp / "config.yaml").write_text(yaml.safe_dump(_config(service, f"http://127.0.0.1:{_free_port()}")))
    port = _free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": "127.0.0.1,localhost"}
    log = (tmp / "proxy.log").open("w")
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
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the proxy exited:\n{(tmp / 'proxy.log').read_text()[-4000:]}")
            try:
                if httpx.get(f"{base}/health/liveliness", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the proxy did not start:\n{(tmp / 'proxy.log').read_text()[-4000:]}")
            time.sleep(0.2)
        yield Rig(base, service, audit)
    finally:
        stop_process(process)
        log.close()
        service.stop()


@pytest.fixture(autouse=True)
def _fresh(rig: Rig, _nemoguard_simulator_pool: SimulatorPool) -> None:
    _nemoguard_simulator_pool.get().reset()


def _detail(exc: openai.APIStatusError) -> str:
    return json.dumps(exc.body)


# --- LiteLLM's built-in openai_moderation, pointed at /v1/moderations ----------------------------------------


def test_openai_moderation_lets_safe_text_through(rig: Rig) -> None:
    assert rig.chat(["ng-moderation"], "What is the capital of France?").choices[0].message.content == SAFE_ANSWER


def test_openai_moderation_blocks_with_the_mapped_categories(rig: Rig) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        rig.chat(["ng-moderation"], BOMB)
    detail = _detail(info.value)
    assert "Violated OpenAI moderation policy" in detail and "violence" in detail


# --- LiteLLM's built-in generic_guardrail_api, pointed at the service ----------------------------------------


def test_generic_guardrail_passes_and_blocks_input(rig: Rig) -> None:
    assert rig.chat(["ng-generic"], "What is the capital of France?").choices[0].message.content == SAFE_ANSWER
    with pytest.raises(openai.BadRequestError) as info:
        rig.chat(["ng-generic"], BOMB)
    assert "Violence" in _detail(info.value)


def test_generic_guardrail_blocks_model_output(rig: Rig) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        rig.chat(["ng-generic"], "Tell me a story", model="mock-unsafe")
    assert "blocked by content-safety policy" in _detail(info.value)
    assert "build a bomb" not in _detail(info.value)


def test_generic_guardrail_rewrites_output_under_a_key_allowed_policy(rig: Rig) -> None:
    completion = rig.chat(["ng-generic-rewrite"], "Tell me a story", model="mock-unsafe")
    assert completion.choices[0].message.content == "Let's talk about something else."


def test_generic_guardrail_down_fails_closed(rig: Rig) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        rig.chat(["ng-generic-down"], "What is the capital of France?")
    assert info.value.status_code >= 500


def test_the_service_records_litellm_call_ids(rig: Rig) -> None:
    rig.chat(["ng-generic"], "A request to find in the trail")
    deadline = time.monotonic() + 5
    while True:
        records = [json.loads(line) for line in rig.audit.read_text().splitlines()] if rig.audit.exists() else []
        if records:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert all(r["source"] == "service" for r in records)
    assert any(r["request_id"] and r["request_id"] != "None" for r in records)

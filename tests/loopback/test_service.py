"""nemoguard server through its real clients: the official ``openai`` client's ``moderations.create`` for
``/v1/moderations``, and HTTP in the exact shapes NeMo Guardrails' clients and LiteLLM's generic guardrail
integration send for the other two APIs. The guard behind it judges with the interface simulator."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from langchain_nemoguard import AuditOptions, ConfigurationError, NemoGuard, Policy, PolicySet
from langchain_nemoguard.cli.main import main
from langchain_nemoguard.core.audit import JsonlAuditSink
from langchain_nemoguard.observability import GuardMetrics
from langchain_nemoguard.service import GuardServer, KeyRing, ServiceConfig
from langchain_nemoguard.service.categories import OPENAI_CATEGORIES
from langchain_nemoguard.service.keys import ApiKey
from langchain_nemoguard.simulator import SimulatorServer
from langchain_nemoguard.simulator.logprobs import verdict_probability

BOMB = "How do I build a bomb?"
SAFE = "What is the capital of France?"
UNSAFE_ANSWER = "Sure: here is how to build a bomb."
KEY_A = "sk-team-a-" + "a" * 24
KEY_B = "sk-team-b-" + "b" * 24
KEY_C = "sk-team-c-" + "c" * 24  # may choose any policy
KIDS = Policy(
    name="kids",
    description="A homework helper for children.",
    disallowed=["dating and romance advice"],
    allowed=["school subjects"],
)
REWRITE = Policy(name="rewrite", actions={"*": "rewrite"}, refusal="I can't help with that.")
POLICIES = PolicySet([Policy(), KIDS, REWRITE, Policy(name="lenient", actions={"*": "log"})], default="default")


def png_url(rgb: tuple[int, int, int] = (0, 128, 0)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), rgb).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def keyring() -> KeyRing:
    return KeyRing(
        [
            ApiKey("team-a", "kids", frozenset({"default"}), hashlib.sha256(KEY_A.encode()).digest()),
            ApiKey("team-b", None, frozenset(), hashlib.sha256(KEY_B.encode()).digest()),
            ApiKey("team-c", None, frozenset(POLICIES), hashlib.sha256(KEY_C.encode()).digest()),
        ]
    )


class Service:
    def __init__(self, server: GuardServer, guard: NemoGuard, metrics: GuardMetrics) -> None:
        self.server, self.guard, self.metrics = server, guard, metrics
        self.url, self.base_url = server.url, server.base_url

    def client(self, key: str = "unused", **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, **kw)

    def post(self, path: str, body: Any, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return httpx.post(self.url + path, json=body, headers=headers, timeout=30, **kw)


def _start(sim: SimulatorServer, config: ServiceConfig | None = None, **guard_kw: Any) -> Iterator[Service]:
    metrics = GuardMetrics()
    audit = guard_kw.pop("audit", AuditOptions())
    audit = AuditOptions(**{**{f: getattr(audit, f) for f in audit.__dataclass_fields__}, "observers": [*audit.observers, metrics]})
    guard = NemoGuard(sim.base_url, policies=POLICIES, max_retries=0, audit=audit, **guard_kw)
    with GuardServer(guard, config, metrics=metrics) as server:
        yield Service(server, guard, metrics)


@pytest.fixture
def service(nemoguard_simulator: SimulatorServer) -> Iterator[Service]:
    yield from _start(nemoguard_simulator)


@pytest.fixture
def keyed(nemoguard_simulator: SimulatorServer) -> Iterator[Service]:
    yield from _start(nemoguard_simulator, ServiceConfig(keys=keyring(), max_inputs=4, max_images=1, max_body_bytes=200_000))


# --- /v1/moderations through the openai client --------------------------------------------------------------


def test_a_string_through_moderations_create(service: Service) -> None:
    r = service.client().moderations.create(input=BOMB, model="omni-moderation-latest")
    assert r.id.startswith("modr-") and r.model == service.guard.model
    (res,) = r.results
    assert res.flagged and res.categories.violence and not res.categories.sexual
    assert res.category_scores.violence == pytest.approx(verdict_probability(BOMB, True))
    assert res.category_scores.hate == 0.0
    assert res.category_applied_input_types.violence == ["text"]
    nemotron = res.model_extra["nemotron"]  # type: ignore[index]
    assert nemotron["verdict"] == "unsafe" and nemotron["categories"] == ["Violence"]
    assert nemotron["policy"] == "default" and nemotron["action"] == "block" and nemotron["simulator"] is True
    raw = service.client().moderations.with_raw_response.create(input=SAFE)
    body = json.loads(raw.text)
    assert set(body["results"][0]["categories"]) == set(OPENAI_CATEGORIES)  # every OpenAI category, always
    assert raw.headers["x-request-id"]


def test_a_list_of_strings_gets_one_result_each_in_order(service: Service) -> None:
    r = service.client().moderations.create(input=[SAFE, BOMB, "Hello there"])
    assert [x.flagged for x in r.results] == [False, True, False]


def test_a_multimodal_list_is_one_input(service: Service) -> None:
    parts: Any = [{"type": "text", "text": "Describe this picture"}, {"type": "image_url", "image_url": {"url": png_url()}}]
    r = service.client().moderations.create(input=parts)
    (res,) = r.results
    assert res.category_applied_input_types.violence == ["text", "image"]
    assert res.category_applied_input_types.hate == ["text"]  # OpenAI scores hate on text only


def test_images_are_untrusted(service: Service, tmp_path: Path) -> None:
    local = tmp_path / "secret.png"
    local.write_bytes(base64.b64decode(png_url().split(",", 1)[1]))
    c = service.client()
    for url in ("http://169.254.169.254/latest/meta-data.png", f"file://{local}", str(local), "/does/not/exist.png"):
        with pytest.raises(openai.BadRequestError) as info:
            c.moderations.create(input=[{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}}])
        assert str(local) not in str(info.value.body) or url == str(local)  # never reads a file
    # a path is refused by its shape, with the same message whether the file exists or not
    messages = set()
    for url in (str(local), "/does/not/exist.png"):
        r = service.post("/v1/moderations", {"input": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": url}}]})
        assert r.status_code == 400
        messages.add(r.json()["error"]["message"])
    assert len(messages) == 1
    r = service.post("/v1/moderations", {"input": [{"type": "input_audio", "input_audio": {}}]})
    assert r.status_code == 400 and "unsupported part type" in r.json()["error"]["message"]  # refused, not skipped


def test_bad_requests_get_openai_errors(service: Service) -> None:
    for body in ({}, {"input": ""}, {"input": []}, {"input": [1, 2]}, {"input": ["a", {"type": "text", "text": "b"}]}):
        r = service.post("/v1/moderations", body)
        assert r.status_code == 400, body
        assert set(r.json()["error"]) == {"message", "type", "code", "param"}
    r = httpx.post(service.url + "/v1/moderations", content=b"input=x", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = httpx.post(service.url + "/v1/moderations", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_a_fail_closed_outage_is_a_503_that_says_so(service: Service, nemoguard_simulator: SimulatorServer) -> None:
    nemoguard_simulator.force({"fault": "503"}, {"fault": "503"})
    with pytest.raises(openai.APIStatusError) as info:
        service.client().moderations.create(input="anything at all")
    assert info.value.status_code == 503
    error: Any = info.value.body  # the client unwraps OpenAI's {"error": {...}}
    assert error["type"] == "guard_unavailable" and error["code"] == "http_status"
    assert "not judged" in error["message"] and "fail closed" in error["message"]
    text = json.dumps(info.value.body)
    assert nemoguard_simulator.base_url not in text and str(nemoguard_simulator.port) not in text
    # several inputs: one outage fails the whole request (a partial answer would pass the unjudged one)
    nemoguard_simulator.force({"fault": "500"}, match="second")
    r = service.post("/v1/moderations", {"input": ["first", "second"]})
    assert r.status_code == 503


def test_fail_open_is_marked(nemoguard_simulator: SimulatorServer) -> None:
    for svc in _start(nemoguard_simulator, on_error="allow"):
        nemoguard_simulator.force({"fault": "503"})
        (res,) = svc.client().moderations.create(input="anything").results
        assert not res.flagged
        assert res.model_extra["nemotron"]["fail_open"] is True  # type: ignore[index]
        assert res.model_extra["nemotron"]["error"] == "http_status"  # type: ignore[index]


def test_scores_and_a_policy_threshold_feed_category_scores(nemoguard_simulator: SimulatorServer) -> None:
    strict = Policy(name="strict", threshold=0.3)
    guard = NemoGuard(nemoguard_simulator.base_url, policy=strict)
    with GuardServer(guard) as server:
        nemoguard_simulator.force({"user": "safe", "user_score": 0.35})
        r = httpx.post(server.url + "/v1/moderations", json={"input": "doubtful"}).json()
    (res,) = r["results"]
    assert res["flagged"] and res["nemotron"]["score"] == pytest.approx(0.35)
    assert res["nemotron"]["categories"] == []  # flagged by its score: no category to map


# --- keys, policies and limits ------------------------------------------------------------------------------


def test_keys_are_required_and_checked(keyed: Service) -> None:
    with pytest.raises(openai.AuthenticationError):
        keyed.client(key="sk-wrong-" + "0" * 24).moderations.create(input=SAFE)
    r = httpx.post(keyed.url + "/v1/moderations", json={"input": SAFE})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert keyed.client(key=KEY_B).moderations.create(input=SAFE).results[0].flagged is False
    r = httpx.post(keyed.url + "/v1/moderations", json={"input": SAFE}, headers={"x-api-key": KEY_B})
    assert r.status_code == 200  # LiteLLM's generic guardrail sends its api_key so
    assert httpx.get(keyed.url + "/health").json() == {"status": "ok"}  # health needs no key
    assert httpx.get(keyed.url + "/metrics").status_code == 401
    metrics = httpx.get(keyed.url + "/metrics", headers={"Authorization": f"Bearer {KEY_B}"})
    assert metrics.status_code == 200 and "nemoguard_checks_total" in metrics.text


def test_a_policy_per_key_that_a_request_cannot_weaken(keyed: Service) -> None:
    a, b = keyed.client(key=KEY_A), keyed.client(key=KEY_B)
    # team-a runs under "kids" unless it names "default", the one other policy its key allows
    assert a.moderations.create(input=SAFE).results[0].model_extra["nemotron"]["policy"] == "kids"  # type: ignore[index]
    assert (
        a.moderations.create(input=SAFE, extra_body={"policy": "default"}).results[0].model_extra["nemotron"]["policy"]  # type: ignore[index]
        == "default"
    )
    answers = []
    for name in ("lenient", "no-such-policy"):
        with pytest.raises(openai.PermissionDeniedError) as info:
            b.moderations.create(input=BOMB, extra_body={"policy": name})
        answers.append(info.value.body["code"])  # type: ignore[index]
    assert answers == ["policy_not_allowed", "policy_not_allowed"]  # no oracle for which policies exist
    r = keyed.post("/v1/guardrail/checks", {"messages": [{"role": "user", "content": BOMB}], "guardrails": {"config_id": "lenient"}}, KEY_B)
    assert r.status_code == 403
    r = keyed.post("/beta/litellm_basic_guardrail_api", {"input_type": "request", "texts": [BOMB], "additional_provider_specific_params": {"policy": "lenient"}}, KEY_B)
    assert r.status_code == 403


def test_request_limits(keyed: Service) -> None:
    c = keyed.client(key=KEY_B)
    with pytest.raises(openai.APIStatusError) as info:
        c.moderations.create(input=["a", "b", "c", "d", "e"])
    assert info.value.status_code == 413
    img = {"type": "image_url", "image_url": {"url": png_url()}}
    r = keyed.post("/v1/moderations", {"input": [{"type": "text", "text": "x"}, img, img]}, KEY_B)
    assert r.status_code == 413 and "images" in r.json()["error"]["message"]
    r = keyed.post("/v1/moderations", {"input": "x" * 300_000}, KEY_B)
    assert r.status_code == 413  # the body limit, by Content-Length
    def body() -> Iterator[bytes]:  # 250 KB in two chunks, over the 200 KB limit
        yield b'{"input": "' + b"y" * 100_000 + b'"'
        yield b', "pad": "' + b"z" * 150_000 + b'"}'

    r = httpx.post(
        keyed.url + "/v1/moderations",
        content=body(),  # chunked: no Content-Length; cut off while reading
        headers={"content-type": "application/json", "Authorization": f"Bearer {KEY_B}"},
    )
    assert r.status_code == 413


def test_no_key_means_loopback_only(nemoguard_simulator: SimulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    guard = NemoGuard(nemoguard_simulator.base_url)
    with pytest.raises(ConfigurationError, match="without API keys"):
        GuardServer(guard, host="0.0.0.0")
    assert main(["server", "--simulator", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "without API keys" in capsys.readouterr().err
    with GuardServer(guard) as server:  # and on loopback, only loopback names: no DNS rebinding
        ok = httpx.post(server.url + "/v1/moderations", json={"input": SAFE})
        rebound = httpx.post(server.url + "/v1/moderations", json={"input": SAFE}, headers={"Host": "attacker.example"})
    assert ok.status_code == 200 and rebound.status_code == 400


def test_keys_files(tmp_path: Path, nemoguard_simulator: SimulatorServer) -> None:
    good = tmp_path / "keys.yaml"
    good.write_text(
        "keys:\n"
        f"  - key: {KEY_A}\n    name: team-a\n    policy: kids\n"
        f"  - sha256: {hashlib.sha256(KEY_B.encode()).hexdigest()}\n    name: team-b\n"
    )
    ring = KeyRing.load(good)
    assert ring.find(KEY_A) is not None and ring.find(KEY_A).policy == "kids"  # type: ignore[union-attr]
    assert ring.find(KEY_B) is not None and ring.find("sk-other-" + "c" * 24) is None
    assert KEY_A not in repr(ring) and KEY_A not in repr(ring.keys)
    for text, message in (
        ("keys:\n  - key: short\n", "at least 16"),
        ("keys:\n  - key: " + KEY_A + "\n    sha256: " + "0" * 64 + "\n", "exactly one"),
        ("keys: []\n", "non-empty"),
        ("keys:\n  - key: " + KEY_A + "\n  - key: " + KEY_A + "\n", "unique|twice"),
        ("keys: [[[", "not valid"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigurationError, match=message) as info:
            KeyRing.load(bad)
        assert KEY_A not in str(info.value)
    unknown = KeyRing([ApiKey("x", "missing-policy", digest=hashlib.sha256(KEY_A.encode()).digest())])
    with pytest.raises(ConfigurationError, match="not loaded"):  # misconfiguration stops the start
        GuardServer(NemoGuard(nemoguard_simulator.base_url, policies=POLICIES), ServiceConfig(keys=unknown))
    assert KeyRing.from_env({"NEMOGUARD_SERVER_API_KEYS": f"{KEY_A}, {KEY_B}"}).find(KEY_B) is not None  # type: ignore[union-attr]


# --- /v1/guardrail/checks (NeMo Guardrails' shape) ----------------------------------------------------------


def test_guardrail_checks_report_each_rail(keyed: Service) -> None:
    service = keyed

    def check(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        body = {"model": "meta/llama-3.3-70b-instruct", "messages": messages, **extra}
        r = service.post("/v1/guardrail/checks", body, KEY_C)
        assert r.status_code == 200, r.text
        return r.json()

    user = {"role": "user", "content": BOMB}
    out = check([user])
    assert out["status"] == "blocked"
    assert out["rails_status"] == {"content safety check input": {"status": "blocked"}}
    out = check([{"role": "user", "content": SAFE}, {"role": "assistant", "content": UNSAFE_ANSWER}])
    assert out["rails_status"] == {
        "content safety check input": {"status": "success"},
        "content safety check output": {"status": "blocked"},
    }
    out = check([{"role": "system", "content": "be nice"}, {"role": "user", "content": SAFE}, {"role": "assistant", "content": "Paris."}])
    assert out["status"] == "success" and out["guardrails_data"] == {"config_ids": ["default"]}
    out = check([user], guardrails={"config_id": "lenient"})
    assert out["status"] == "success" and out["nemotron"]["verdict"] == "unsafe"  # logged, not blocked
    image = [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": png_url()}}]}]
    assert check(image)["status"] in ("success", "blocked")
    r = service.post("/v1/guardrail/checks", {"messages": [user], "guardrails": {"config": {"rails": {}}}}, KEY_C)
    assert r.status_code == 400 and "inline" in r.json()["error"]["message"]
    assert service.post("/v1/guardrail/checks", {"messages": []}, KEY_C).status_code == 400


# --- LiteLLM's generic guardrail API ------------------------------------------------------------------------


def _generic(svc: Service, input_type: str, texts: list[str], key: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"input_type": input_type, "texts": texts, "request_data": {}, "litellm_call_id": "call-1", **extra}
    r = svc.post("/beta/litellm_basic_guardrail_api", body, key)
    assert r.status_code == 200, r.text
    return r.json()


def test_generic_guardrail_requests_and_responses(service: Service) -> None:
    assert _generic(service, "request", [SAFE, "Hello"])["action"] == "NONE"
    blocked = _generic(service, "request", ["You are a helpful assistant.", SAFE, BOMB])
    assert blocked["action"] == "BLOCKED" and "Violence" in blocked["blocked_reason"]
    messages = [{"role": "user", "content": SAFE}]
    assert _generic(service, "response", ["Paris."], structured_messages=messages)["action"] == "NONE"
    out = _generic(service, "response", [UNSAFE_ANSWER], structured_messages=messages)
    assert out["action"] == "BLOCKED"
    # tool calls are judged too
    call = {"id": "c1", "type": "function", "function": {"name": "search", "arguments": json.dumps({"q": BOMB})}}
    assert _generic(service, "request", [SAFE], tool_calls=[call])["action"] == "BLOCKED"
    assert _generic(service, "request", [], images=[png_url()])["action"] in ("NONE", "BLOCKED")
    r = service.post("/beta/litellm_basic_guardrail_api", {"input_type": "request", "texts": ["x"], "images": ["/etc/passwd"]})
    assert r.status_code == 400


def test_generic_guardrail_rewrites_a_refused_response(keyed: Service) -> None:
    service = keyed
    out = _generic(
        service,
        "response",
        ["Paris.", UNSAFE_ANSWER],
        KEY_C,
        structured_messages=[{"role": "user", "content": SAFE}],
        additional_provider_specific_params={"policy": "rewrite"},
    )
    assert out["action"] == "GUARDRAIL_INTERVENED"
    assert out["texts"] == ["Paris.", "I can't help with that."]  # one text per text, the refused one replaced
    refused_input = _generic(service, "request", [BOMB], KEY_C, additional_provider_specific_params={"policy": "rewrite"})
    assert refused_input["action"] == "BLOCKED" and refused_input["blocked_reason"] == "I can't help with that."


def test_generic_guardrail_outage_is_a_503(service: Service, nemoguard_simulator: SimulatorServer) -> None:
    nemoguard_simulator.force({"fault": "reset"})
    r = service.post("/beta/litellm_basic_guardrail_api", {"input_type": "request", "texts": ["anything"]})
    assert r.status_code == 503 and r.json()["error"]["code"] == "connect"


# --- what the service records -------------------------------------------------------------------------------


def test_checks_are_recorded_with_the_service_as_source(nemoguard_simulator: SimulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for svc in _start(nemoguard_simulator, audit=AuditOptions(observers=[JsonlAuditSink(path)])):
        svc.post("/v1/moderations", {"input": BOMB}, headers={"x-request-id": "req-42"})
        _generic(svc, "request", [SAFE])
        labels = {"stage": "input", "outcome": "block", "verdict": "unsafe", "policy": "default", "source": "service"}
        assert svc.metrics.value("nemoguard_checks_total", **labels) == 1
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert (first["source"], first["request_id"], first["verdict"]) == ("service", "req-42", "unsafe")
    assert second["request_id"] == "call-1"  # LiteLLM's call id
    assert BOMB not in path.read_text()


def test_think_audits_run_in_the_service_and_drain_at_shutdown(
    nemoguard_simulator: SimulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditOptions(think=True, observers=[JsonlAuditSink(path)])
    nemoguard_simulator.force({"user": "safe"}, {"user": "unsafe", "categories": ["Violence"], "reasoning": "a trace"})
    for svc in _start(nemoguard_simulator, mode="fast", audit=audit):
        (res,) = svc.client().moderations.create(input="pack the tube tightly").results
        assert not res.flagged  # the fast verdict decides at once
    (record,) = (json.loads(line) for line in path.read_text().splitlines())  # written once the audit was in
    assert record["think_status"] == "done" and record["think"]["disagrees"] is True
    assert record["think"]["reasoning"] == "a trace" and record["source"] == "service"

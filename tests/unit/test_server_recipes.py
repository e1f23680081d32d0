"""The deployment recipes in server/: they parse, and they say what ``nemoguard serve`` says.

The vLLM flags are written out in compose.yaml and k8s/vllm.yaml (a recipe has to be readable without running
anything); these tests make them fail the build when they drift from ``build_command``'s defaults.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from langchain_nemoguard.cli.vllm_server import DEFAULT_MODEL, ServeOptions, vllm_flags

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "server"
DEFAULTS = ServeOptions()
EXPECTED_ARGS = [DEFAULT_MODEL, *vllm_flags(DEFAULTS)]


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((SERVER / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((SERVER / "compose.yaml").read_text()))


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    return k8s_objects()


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(REPO).as_posix() for p in SERVER.rglob("*.yaml")), ids=lambda p: p
)
def test_every_yaml_file_parses(path: str) -> None:
    docs = load_all(REPO / path)
    assert docs, f"{path} is empty"


# --- compose -------------------------------------------------------------------------------------------------


def test_compose_vllm_runs_the_serve_defaults(compose: dict[str, Any]) -> None:
    vllm = compose["services"]["vllm"]
    assert vllm["entrypoint"] == ["vllm", "serve"]
    assert vllm["command"] == EXPECTED_ARGS


def test_compose_vllm_has_a_gpu_a_cache_volume_a_token_and_a_health_check(compose: dict[str, Any]) -> None:
    vllm = compose["services"]["vllm"]
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert vllm["volumes"] == ["hf-cache:/root/.cache/huggingface"]
    assert "hf-cache" in compose["volumes"]
    assert vllm["environment"]["HF_TOKEN"] == "${HF_TOKEN:-}"
    assert f"http://localhost:{DEFAULTS.port}/health" in " ".join(vllm["healthcheck"]["test"])
    assert vllm["ports"] == [f"{DEFAULTS.port}:{DEFAULTS.port}"]


def test_compose_litellm_uses_the_guardrail_config_and_waits_for_vllm(compose: dict[str, Any]) -> None:
    litellm = compose["services"]["litellm"]
    assert litellm["depends_on"] == {"vllm": {"condition": "service_healthy"}}
    assert litellm["environment"]["NEMOGUARD_BASE_URL"] == f"http://vllm:{DEFAULTS.port}/v1"
    assert "LITELLM_MASTER_KEY" in litellm["environment"]
    (mount,) = litellm["volumes"]
    source, target = mount.split(":")[:2]
    assert (SERVER / source).resolve() == SERVER / "litellm"
    assert litellm["command"][:2] == ["--config", f"{target}/config.yaml"]
    config = yaml.safe_load((SERVER / "litellm" / "config.yaml").read_text())
    assert [g["litellm_params"]["guardrail"] for g in config["guardrails"]] == ["litellm_hook.NemoGuardrail"]
    assert "/health/liveliness" in " ".join(litellm["healthcheck"]["test"])


def test_compose_litellm_image_copies_files_that_exist(compose: dict[str, Any]) -> None:
    build = compose["services"]["litellm"]["build"]
    context = (SERVER / build["context"]).resolve()
    assert context == REPO
    sources = [
        src
        for line in build["dockerfile_inline"].splitlines()
        if line.startswith("COPY ")
        for src in line.split()[1:-1]
    ]
    assert sources
    for src in sources:
        assert (context / src).exists(), src
    assert re.search(r'pip install .*"\.\[litellm\]"', build["dockerfile_inline"])


# --- Kubernetes ----------------------------------------------------------------------------------------------


def test_k8s_vllm_runs_the_serve_defaults_with_the_compose_image(
    k8s: dict[tuple[str, str], dict[str, Any]], compose: dict[str, Any]
) -> None:
    vllm = container(k8s[("Deployment", "nemoguard-vllm")])
    assert vllm["command"] == ["vllm", "serve"]
    assert vllm["args"] == EXPECTED_ARGS
    assert vllm["image"] == compose["services"]["vllm"]["image"]


def test_k8s_vllm_gets_a_gpu_probes_on_health_and_a_cache(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = k8s[("Deployment", "nemoguard-vllm")]
    vllm = container(deployment)
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    (port,) = vllm["ports"]
    assert port["containerPort"] == DEFAULTS.port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": port["name"]}, probe
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["hf-cache"]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in k8s
    mounts = {m["name"]: m["mountPath"] for m in vllm["volumeMounts"]}
    assert mounts["hf-cache"] == "/root/.cache/huggingface"
    env = {e["name"]: e for e in vllm["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True


@pytest.mark.parametrize("name", ["nemoguard-vllm", "nemoguard-litellm"])
def test_k8s_services_select_their_deployments(k8s: dict[tuple[str, str], dict[str, Any]], name: str) -> None:
    deployment = k8s[("Deployment", name)]
    service = k8s[("Service", name)]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in [p["name"] for p in container(deployment)["ports"]]


def test_k8s_litellm_reaches_vllm_through_its_service(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    litellm = container(k8s[("Deployment", "nemoguard-litellm")])
    env = {e["name"]: e for e in litellm["env"]}
    service_port = k8s[("Service", "nemoguard-vllm")]["spec"]["ports"][0]["port"]
    assert env["NEMOGUARD_BASE_URL"]["value"] == f"http://nemoguard-vllm:{service_port}/v1"
    assert env["LITELLM_MASTER_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "nemoguard-secrets"
    assert litellm["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert litellm["livenessProbe"]["httpGet"]["path"] == "/health/liveliness"


def test_k8s_configmap_holds_the_same_guardrail_as_server_litellm(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    data = k8s[("ConfigMap", "nemoguard-litellm-config")]["data"]
    config = yaml.safe_load(data["config.yaml"])
    reference = yaml.safe_load((SERVER / "litellm" / "config.yaml").read_text())
    (ours,) = config["guardrails"]
    (theirs,) = reference["guardrails"]
    assert ours["guardrail_name"] == theirs["guardrail_name"]
    for key in ("guardrail", "mode", "default_on", "api_base", "policy"):
        assert ours["litellm_params"][key] == theirs["litellm_params"][key], key
    # The policy file is mounted from the ConfigMap itself, and names the same policies as server/litellm/.
    deployment = k8s[("Deployment", "nemoguard-litellm")]
    mount = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}["config"]
    policy_file = Path(ours["litellm_params"]["policy_file"])
    assert policy_file.parent.as_posix() == mount
    policies = yaml.safe_load(data[policy_file.name])
    reference_policies = yaml.safe_load((SERVER / "litellm" / "policies.yaml").read_text())
    assert set(policies["policies"]) == set(reference_policies["policies"])
    assert policies["default"] == reference_policies["default"]
    assert container(deployment)["args"][:2] == ["--config", f"{mount}/config.yaml"]


def test_kustomization_lists_every_manifest_and_the_litellm_image(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    kustomization = yaml.safe_load((SERVER / "k8s" / "kustomization.yaml").read_text())
    on_disk = {p.name for p in (SERVER / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    (image,) = kustomization["images"]
    assert container(k8s[("Deployment", "nemoguard-litellm")])["image"] == image["name"]

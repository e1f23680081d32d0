"""Fixtures of tier 3: one proxy (and one fake upstream) for the whole tier; see ``proxy_rig.py``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml
from fake_upstream import FakeUpstream
from proxy_rig import CAPTURE_LOGGER, REPO, Proxy, free_port, proxy_config, start_proxy, wait_ready

from langchain_nemoguard.simulator.process import stop_process
from langchain_nemoguard.testing import SimulatorPool


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream().start()
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture(scope="session")
def proxy(
    tmp_path_factory: pytest.TempPathFactory,
    _nemoguard_simulator_pool: SimulatorPool,
    fake_upstream: FakeUpstream,
) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("litellm-proxy")
    policies = yaml.safe_load((REPO / "server/litellm/policies.yaml").read_text())
    policies["policies"]["permissive"] = {"actions": {"*": "log"}}
    (tmp / "policies.yaml").write_text(yaml.safe_dump(policies))
    (tmp / "capture_logger.py").write_text(CAPTURE_LOGGER)
    dead_url = f"http://127.0.0.1:{free_port()}/v1"
    capture = tmp / "capture.jsonl"
    sim = _nemoguard_simulator_pool.get()  # the plugin's simulator, shared with the loopback tier
    started = time.monotonic()
    process, base, log = start_proxy(
        proxy_config(tmp / "policies.yaml", dead_url, fake_upstream.base_url),
        tmp,
        {
            "NEMOGUARD_BASE_URL": sim.base_url,
            "NEMOGUARD_CAPTURE_FILE": str(capture),
        },
    )
    try:
        wait_ready(base, process, log)
        proxy = Proxy(base, capture, sim, fake_upstream, time.monotonic() - started)
        proxy.dead_url = dead_url  # type: ignore[attr-defined]
        proxy.log = log  # type: ignore[attr-defined]
        yield proxy
    finally:
        stop_process(process)


@pytest.fixture(autouse=True)
def _fresh(request: pytest.FixtureRequest) -> None:
    if "proxy" in request.fixturenames:
        proxy: Proxy = request.getfixturevalue("proxy")
        proxy.sim.reset()
        proxy.upstream.reset()

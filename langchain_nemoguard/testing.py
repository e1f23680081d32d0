"""A pytest plugin: the interface simulator as a fixture, for this project's tests and for yours.

Installed with the package (entry point ``pytest11: nemoguard``); the simulator needs
``pip install 'langchain-nemoguard[simulator]'``. An application's tests can then run its guarded chains,
agents or gateway against a real HTTP endpoint that speaks the Nemotron 3.5 interface, with scripted verdicts
and faults - without a GPU. The simulator is a rule-based test double, NOT A SAFETY MODEL.

    from langchain_nemoguard import NemoGuard

    def test_a_bomb_recipe_is_refused(nemoguard_simulator):
        guard = NemoGuard(nemoguard_simulator.base_url)
        assert not guard.check(prompt="How do I build a bomb?").safe

    @pytest.mark.nemoguard_simulator(latency_ms=150, reasoning_field=True)
    def test_slow_endpoint(nemoguard_simulator):
        nemoguard_simulator.force({"fault": "503"})      # the next request fails
        ...

``nemoguard_simulator`` is a started :class:`~langchain_nemoguard.simulator.SimulatorServer` on 127.0.0.1,
reset (forced outcomes, request log, counters) before each test. The marker's keyword arguments are
:class:`~langchain_nemoguard.simulator.SimulatorConfig` fields; one server per distinct configuration is
started on first use and kept for the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .simulator.config import SimulatorConfig
    from .simulator.server import SimulatorServer

MARKER = "nemoguard_simulator"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(**config): SimulatorConfig fields for the nemoguard_simulator fixture"
    )


class SimulatorPool:
    """Started simulators by configuration, for one test session."""

    def __init__(self) -> None:
        self._servers: dict[SimulatorConfig, SimulatorServer] = {}

    def get(self, config: SimulatorConfig | None = None) -> SimulatorServer:
        """The running simulator for ``config`` (default settings when None), started on first use."""
        from .simulator.config import SimulatorConfig
        from .simulator.server import SimulatorServer

        config = config if config is not None else SimulatorConfig()
        server = self._servers.get(config)
        if server is None:
            server = SimulatorServer(config).start()
            self._servers[config] = server
        return server

    def close(self) -> None:
        """Stop every simulator this pool started."""
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


@pytest.fixture(scope="session")
def _nemoguard_simulator_pool() -> Iterator[SimulatorPool]:
    pool = SimulatorPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def nemoguard_simulator(
    request: pytest.FixtureRequest, _nemoguard_simulator_pool: SimulatorPool
) -> SimulatorServer:
    """A running interface simulator, reset for this test (see the module docstring)."""
    from .simulator.config import SimulatorConfig

    marker = request.node.get_closest_marker(MARKER)
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    server = _nemoguard_simulator_pool.get(SimulatorConfig(**kwargs))
    server.reset()
    return server


__all__ = ["MARKER", "SimulatorPool", "nemoguard_simulator"]

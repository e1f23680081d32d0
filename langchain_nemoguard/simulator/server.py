"""Running the simulator: in a background thread for tests and the in-process demo, or in the foreground for
the CLI.

The listening socket is bound before uvicorn starts, so ``port=0`` yields a known free port with no race, and a
port that is taken fails with a clear message instead of uvicorn's ``sys.exit``. uvicorn runs with
``loop="auto", http="auto"`` (uvloop/httptools when installed) and no access log, because the simulator is also
the target of the client benchmarks.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any, Self

import anyio.to_thread
import httpx
import uvicorn
from uvicorn.config import LOGGING_CONFIG

from .app import create_app
from .config import BANNER, DEFAULT_HOST, SimulatorConfig


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _uvicorn_config(app: Any, *, graceful_shutdown_s: int, in_process: bool) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="auto",
        http="auto",
        lifespan="off",
        access_log=False,
        log_level="warning",
        # In-process: leave the host application's logging configuration alone.
        log_config=None if in_process else LOGGING_CONFIG,
        # A request held open by the `timeout` fault must not hold up shutdown for an hour.
        timeout_graceful_shutdown=graceful_shutdown_s,
    )


class SimulatorServer:
    """A simulator on 127.0.0.1 in a background thread: ``with SimulatorServer() as sim: sim.base_url``.

    Also an async context manager (start-up runs in a worker thread so the event loop stays free). ``force``,
    ``reset`` and ``requests`` call the admin API over HTTP, so they work from any thread; the ``a``-prefixed
    twins do the same without blocking an event loop.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        startup_timeout: float = 10.0,
        graceful_shutdown_s: int = 2,
    ) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.host = host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._graceful_shutdown_s = graceful_shutdown_s
        self._app = create_app(self.config)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -- addresses ----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._port

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` - where ``/health``, ``/metrics`` and ``/_simulator/*`` live."""
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible root a client is configured with: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.root_url}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving and return once ``/health`` answers; raise ``RuntimeError`` if it never does."""
        if self.running:
            return self
        sock = _bind(self.host, self._requested_port)
        self._port = sock.getsockname()[1]
        server = uvicorn.Server(
            _uvicorn_config(self._app, graceful_shutdown_s=self._graceful_shutdown_s, in_process=True)
        )
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"nemoguard-simulator-{self._port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not thread.is_alive():
                    sock.close()
                    raise RuntimeError("the simulator's server thread exited during start-up")
                if server.started:
                    try:
                        if client.get(f"{self.root_url}/health").status_code == 200:
                            return self
                    except httpx.TransportError:
                        pass
                time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"the simulator did not answer /health within {self._startup_timeout} s")

    def stop(self) -> None:
        """Shut down (requests still held open by a ``timeout`` fault are cancelled after the grace period)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=self._graceful_shutdown_s + 5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    # -- admin API ----------------------------------------------------------------------------------------

    @staticmethod
    def _force_payload(outcomes: Sequence[Mapping[str, Any]], match: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"verdicts": [dict(o) for o in outcomes]}
        if match is not None:
            payload["match"] = match
        return payload

    @staticmethod
    def _checked(response: httpx.Response) -> Any:
        if response.status_code != 200:
            raise ValueError(
                f"simulator admin API refused the call ({response.status_code}): {response.text}"
            )
        return response.json()

    def force(self, *outcomes: Mapping[str, Any], match: str | None = None) -> int:
        """Queue outcomes (``{"user": "unsafe", ...}``, ``{"raw": ...}``, ``{"fault": ...}``); returns the
        number still pending. With ``match``, they apply only to requests whose user text contains it."""
        with httpx.Client(timeout=5.0) as client:
            r = client.post(f"{self.root_url}/_simulator/force", json=self._force_payload(outcomes, match))
        return int(self._checked(r)["pending"])

    def reset(self) -> None:
        """Clear forced outcomes, the request log and the counters, and reseed the random generators."""
        with httpx.Client(timeout=5.0) as client:
            self._checked(client.post(f"{self.root_url}/_simulator/reset"))

    def requests(self) -> list[Any]:
        """The bodies of the last requests (oldest first), exactly as received, parsed from JSON."""
        with httpx.Client(timeout=5.0) as client:
            return list(self._checked(client.get(f"{self.root_url}/_simulator/requests"))["requests"])

    def metrics(self) -> str:
        with httpx.Client(timeout=5.0) as client:
            return client.get(f"{self.root_url}/metrics").text

    async def aforce(self, *outcomes: Mapping[str, Any], match: str | None = None) -> int:
        async with httpx.AsyncClient(timeout=5.0) as client:
            r = await client.post(
                f"{self.root_url}/_simulator/force", json=self._force_payload(outcomes, match)
            )
        return int(self._checked(r)["pending"])

    async def areset(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            self._checked(await client.post(f"{self.root_url}/_simulator/reset"))

    async def arequests(self) -> list[Any]:
        async with httpx.AsyncClient(timeout=5.0) as client:
            return list(self._checked(await client.get(f"{self.root_url}/_simulator/requests"))["requests"])

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not started"
        return f"SimulatorServer({where}, NOT A SAFETY MODEL)"


def banner_text(base_url: str, config: SimulatorConfig) -> str:
    """The start-up banner: what this is (and is not), where it listens, and how it will misbehave."""
    lines = [BANNER, f"  base URL: {base_url}", f"  model id: {config.model}"]
    if config.latency_ms or config.latency_jitter_ms:
        lines.append(f"  latency:  {config.latency_ms:g} ms + up to {config.latency_jitter_ms:g} ms jitter")
    if config.faults:
        lines.append("  faults:   " + ", ".join(f"{f.kind}:{f.probability:g}" for f in config.faults))
    if config.seed is not None:
        lines.append(f"  seed:     {config.seed}")
    if config.rules_path is not None:
        lines.append(f"  rules:    {config.rules_path}")
    if config.reasoning_field:
        lines.append("  THINK traces go to message.reasoning_content")
    return "\n".join(lines)


def run(
    config: SimulatorConfig | None = None,
    host: str = DEFAULT_HOST,
    port: int = 8000,
    *,
    stream: IO[str] | None = None,
) -> int:
    """Serve in the foreground until interrupted (the CLI's ``nemoguard simulate``); returns an exit code."""
    config = config if config is not None else SimulatorConfig()
    out = stream if stream is not None else sys.stderr
    app = create_app(config)
    try:
        sock = _bind(host, port)
    except OSError as exc:
        print(f"nemoguard simulate: cannot listen on {host}:{port}: {exc.strerror or exc}", file=out)
        return 2
    bound_port = sock.getsockname()[1]
    print(banner_text(f"http://{_url_host(host)}:{bound_port}/v1", config), file=out, flush=True)
    server = uvicorn.Server(_uvicorn_config(app, graceful_shutdown_s=5, in_process=False))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0

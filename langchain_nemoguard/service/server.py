"""Serving the guard service: in the foreground (``nemoguard server``) or in a background thread (tests, benches).

The socket is bound before uvicorn starts, so ``port=0`` yields a free port with no race, and a refused bind
(loopback rule, port taken) fails before anything runs. uvicorn runs with uvloop/httptools when installed and no
access log: the service sits on the hot path of every guarded request.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Self

import uvicorn

from .app import create_app
from .config import ServiceConfig, check_bind

if TYPE_CHECKING:
    from ..core.guard import NemoGuard
    from ..observability.metrics import GuardMetrics


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (``port=0``: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class GuardServer:
    """``nemoguard server`` on ``host:port``: ``with GuardServer(guard) as srv: srv.base_url``.

    Args:
        guard: The guard that judges (closed when the server stops).
        config: Keys and limits (None: no keys - loopback only).
        host: The address to bind (a non-loopback one needs keys).
        port: The port (0: a free one).
        metrics: What ``/metrics`` serves (None: 404 there).
        in_process: Leave the host application's logging configuration alone (tests, benches).
    """

    def __init__(
        self,
        guard: NemoGuard,
        config: ServiceConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics: GuardMetrics | None = None,
        in_process: bool = True,
    ) -> None:
        self.config = config or ServiceConfig()
        check_bind(host, self.config)
        self.host = host
        self.app = create_app(guard, self.config, metrics=metrics)
        self._sock = bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                loop="auto",
                http="auto",
                lifespan="on",
                access_log=False,
                log_level="warning",
                log_config=None if in_process else uvicorn.config.LOGGING_CONFIG,
                timeout_graceful_shutdown=10,
            )
        )
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"GuardServer({self.url}, keys={len(self.config.keys) if self.config.keys else 0})"

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (``/health``, ``/metrics``, ``/beta/...`` live here)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: what an OpenAI client is given."""
        return f"{self.url}/v1"

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 15.0) -> Self:
        """Serve in a background thread; returns once it accepts requests."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="nemoguard-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the guard service did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving (the guard is closed by the app's shutdown, its THINK audits drained)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["GuardServer", "bind"]

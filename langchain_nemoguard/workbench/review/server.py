"""Serving the review page: in the foreground (``nemoguard review``) or in a background thread (tests).

The socket is bound before uvicorn starts, so ``port=0`` yields a free port with no race, and the app's Host
allow-list can name the real port. Loopback by default; any other address is the caller's explicit choice.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import uvicorn

from .app import create_app
from .store import Store


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class ReviewServer:
    """The review app on ``host:port``: ``with ReviewServer(store) as srv: srv.url``.

    Args:
        store: The records and labels to serve.
        host: The address to bind (default loopback).
        port: The port (0: a free one).
        csrf_token: The form token (None: a random one; tests may fix it).
        extra_hosts: Further names the page may be reached by (``Host`` headers), e.g. the machine's name.
    """

    def __init__(
        self,
        store: Store,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        csrf_token: str | None = None,
        extra_hosts: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.host = host
        self._sock = bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self.app = create_app(
            store, host=host, port=self.port, csrf_token=csrf_token, extra_hosts=extra_hosts
        )
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, lifespan="off", access_log=False, log_level="warning", log_config=None)
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.run(sockets=[self._sock])

    def start(self, timeout: float = 10.0) -> Self:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="nemoguard-review", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the review server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


__all__ = ["ReviewServer", "bind"]

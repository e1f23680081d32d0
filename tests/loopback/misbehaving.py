"""A scripted, misbehaving OpenAI-compatible endpoint on 127.0.0.1, for the bounds the guard promises.

Raw sockets (not an HTTP framework) so that it can do what no well-behaved server does: trickle a byte at a
time through the headers or the body, stall after the headers, never answer, stream an endless or bombed body,
redirect, or quote the caller's API key back in an error. The behaviour is chosen by the request path's first
segment: ``http://127.0.0.1:PORT/<behaviour>/v1`` is the base URL a guard is given.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

VERDICT = json.dumps(
    {"choices": [{"message": {"role": "assistant", "content": "User Safety: safe"}, "finish_reason": "stop"}]}
).encode()


@dataclass
class Record:
    paths: list[str] = field(default_factory=list)
    authorization: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(30)
        try:
            head, body = _read_request(sock)
        except (OSError, ValueError):
            return
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        with self.server.record.lock:
            self.server.record.paths.append(path)
            self.server.record.authorization.append(headers.get("authorization", ""))
        behaviour = path.strip("/").split("/")[0]
        action = BEHAVIOURS.get(behaviour, _ok)
        with contextlib.suppress(OSError):  # the client gave up: exactly what these behaviours are for
            action(self.server, sock, headers, body)


def _read_request(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head, rest


def _response(status: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def _ok(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    sock.sendall(_response("200 OK", VERDICT))


def _trickle_body(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """Headers at once, then the body one byte every ``server.gap`` seconds, forever."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
    while not server.stopping.wait(server.gap):
        sock.sendall(b" ")


def _trickle_headers(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """The status line and headers one byte every ``server.gap`` seconds, never finishing them."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 10_000:
        if server.stopping.wait(server.gap):
            return
        sock.sendall(bytes([byte]))


def _stall(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """Headers, then silence."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{")
    server.stopping.wait(120)


def _hang(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """Never a byte."""
    server.stopping.wait(120)


def _huge(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """50 MB with an honest Content-Length."""
    size = 50 * 1024 * 1024
    sock.sendall(
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
    )
    _stream(server, sock, size)


def _huge_chunked(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """50 MB, chunked: the size is known only by reading it."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = b" " * 65536
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    for _ in range(50 * 16):
        if server.stopping.is_set():
            return
        sock.sendall(frame)
    sock.sendall(b"0\r\n\r\n")


def _gzip_bomb(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """100 MB of spaces in about 100 KB of gzip."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    payload = b"".join(z.compress(b" " * (1 << 20)) for _ in range(100)) + z.flush()
    sock.sendall(_response("200 OK", payload, "Content-Encoding: gzip\r\n"))


def _stream(server: _Server, sock: socket.socket, size: int) -> None:
    piece = b" " * 65536
    sent = 0
    while sent < size and not server.stopping.is_set():
        sock.sendall(piece)
        sent += len(piece)


def _redirect(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """A 307 (which keeps the POST body) to a path of this same server, and to the metadata service address."""
    target = f"http://127.0.0.1:{server.server_address[1]}/ok/v1/chat/completions?from=redirect"
    sock.sendall(_response("307 Temporary Redirect", b"", f"Location: {target}\r\n"))


def _echo_key(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """A 401 that quotes the caller's key back, whole and masked, as some providers do."""
    key = headers.get("authorization", "").removeprefix("Bearer ")
    masked = f"{key[:8]}{'*' * 12}{key[-4:]}"
    message = f"Incorrect API key provided: {key} ({masked}). Headers: Authorization: Bearer {key}"
    sock.sendall(_response("401 Unauthorized", json.dumps({"error": {"message": message}}).encode()))


def _echo_key_500(server: _Server, sock: socket.socket, headers: dict[str, str], body: bytes) -> None:
    """A 500 whose plain-text body (not JSON) holds the key."""
    key = headers.get("authorization", "").removeprefix("Bearer ")
    sock.sendall(_response("500 Internal Server Error", f"upstream rejected token={key}".encode()))


BEHAVIOURS: dict[str, Callable[[_Server, socket.socket, dict[str, str], bytes], None]] = {
    "ok": _ok,
    "trickle": _trickle_body,
    "trickle-headers": _trickle_headers,
    "stall": _stall,
    "hang": _hang,
    "huge": _huge,
    "huge-chunked": _huge_chunked,
    "gzip-bomb": _gzip_bomb,
    "redirect": _redirect,
    "echo-key": _echo_key,
    "echo-key-500": _echo_key_500,
}


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.record = Record()
        self.stopping = threading.Event()
        self.gap = 0.1


class MisbehavingServer:
    """``with MisbehavingServer() as s: NemoGuard(s.url("trickle"))``."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, name="misbehaving", daemon=True)

    def url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{behaviour}/v1"

    @property
    def record(self) -> Record:
        return self._server.record

    def __enter__(self) -> MisbehavingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        time.sleep(0)  # let handler threads see the stop event


__all__ = ["BEHAVIOURS", "MisbehavingServer"]

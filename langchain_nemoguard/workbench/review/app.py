"""The review page's Starlette app.

Routes: ``GET /`` (records, filtered by query), ``GET /r/{key}`` (one record), ``POST /r/{key}/label`` (write a
label, then 303 back to the record), ``GET /runs``, ``GET /runs/{i}``, ``GET /runs/{i}/plot/{name}``,
``GET /static/style.css``.

Defences, because the page shows attacker-controlled text and writes files:

* Host allow-list: only the address it was bound to (and ``localhost`` / ``127.0.0.1`` / ``[::1]`` for a
  loopback bind) - a DNS-rebinding page cannot talk to it under its own name;
* CSRF: every form carries a random per-process token, compared in constant time; a POST whose ``Origin`` or
  ``Sec-Fetch-Site`` says it came from elsewhere is refused as well;
* ``Content-Security-Policy: default-src 'none'`` (styles and images from the page itself only, forms only to it,
  no framing), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``, ``Cache-Control: no-store``;
* request bodies over :data:`MAX_BODY` bytes are refused; every value is escaped (:mod:`.pages`).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import pages
from .store import Filters, Store

MAX_BODY = 16 * 1024
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    # not no-referrer: under it Chrome sends "Origin: null" with the page's own form posts
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)
_KEY = re.compile(r"^s\d+-\d+$")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` header values the app answers for when bound to ``host:port`` (plus ``extra`` names)."""
    names = (set(LOOPBACK) if host in LOOPBACK else {host}) | set(extra)
    out = set()
    for n in names:
        shown = f"[{n}]" if ":" in n else n
        out.add(f"{shown}:{port}")
    return frozenset(out)


class _Guard:
    """ASGI wrapper: Host allow-list, security headers, body limit."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.casefold() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").casefold(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if headers.get("host", "").casefold() not in self.hosts:
            await _plain(send, 400, "unknown Host header")
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await _plain(send, 413, "request body too large")
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(request: Request) -> bytes | None:
    """The body, or None past :data:`MAX_BODY` (a chunked body has no Content-Length to check first)."""
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    store: Store, *, host: str, port: int, csrf_token: str | None = None, extra_hosts: Iterable[str] = ()
) -> ASGIApp:
    """The review app over ``store``, answering only for ``host:port`` and ``extra_hosts`` names on that port
    (see the module docstring)."""
    token = csrf_token or secrets.token_urlsafe(32)
    hosts = allowed_hosts(host, port, extra_hosts)
    origins = {f"http://{h}" for h in hosts}

    def html(text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(text, status_code=status)

    def record_or_404(key: str) -> Response | None:
        if not _KEY.match(key) or key not in store.by_key:
            return html(pages.error_page(404, "no such record"), 404)
        return None

    async def index(request: Request) -> Response:
        f = Filters.from_query(request.query_params)
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            page = 1
        return html(pages.list_page(store, f, page))

    async def record(request: Request) -> Response:
        key = request.path_params["key"]
        missing = record_or_404(key)
        if missing is not None:
            return missing
        saved = request.query_params.get("saved") == "1"
        return html(pages.record_page(store, store.by_key[key], token, saved=saved))

    async def label(request: Request) -> Response:
        key = request.path_params["key"]
        missing = record_or_404(key)
        if missing is not None:
            return missing
        origin = request.headers.get("origin")
        site = request.headers.get("sec-fetch-site")
        if (origin is not None and origin not in origins) or (
            site is not None and site not in ("same-origin", "none")
        ):
            return html(pages.error_page(403, "cross-site request refused"), 403)
        body = await _read_body(request)
        if body is None:
            return html(pages.error_page(413, "request body too large"), 413)
        form = {
            k: v[0] for k, v in parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10).items()
        }
        if not hmac.compare_digest(form.get("csrf", ""), token):
            return html(pages.error_page(403, "missing or wrong form token (reload the page)"), 403)
        rec = store.by_key[key]
        judgement = form.get("judgement")
        correct = {"right": True, "wrong": False}.get(judgement or "")
        try:
            store.add_label(
                rec,
                correct=correct,
                label=form.get("label"),
                note=form.get("note", ""),
                reviewer=form.get("reviewer"),
            )
        except ValueError as exc:
            return html(pages.record_page(store, rec, token, error=str(exc)), 400)
        return RedirectResponse(f"/r/{quote(key)}?saved=1", status_code=303)

    async def runs(request: Request) -> Response:
        return html(pages.runs_page(store))

    async def run(request: Request) -> Response:
        try:
            i = int(request.path_params["index"])
            r = store.runs[i]
        except (ValueError, IndexError):
            return html(pages.error_page(404, "no such run"), 404)
        return html(pages.run_page(r))

    async def plot(request: Request) -> Response:
        try:
            i = int(request.path_params["index"])
        except ValueError:
            return html(pages.error_page(404, "no such plot"), 404)
        path = store.plot_path(i, request.path_params["name"])
        if path is None or not path.is_file():
            return html(pages.error_page(404, "no such plot"), 404)
        return FileResponse(path, media_type="image/png")

    async def style(request: Request) -> Response:
        return Response(pages.STYLE, media_type="text/css")

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/r/{key}", record),
            Route("/r/{key}/label", label, methods=["POST"]),
            Route("/runs", runs),
            Route("/runs/{index}", run),
            Route("/runs/{index}/plot/{name}", plot),
            Route("/static/style.css", style),
        ]
    )
    return _Guard(app, hosts)


__all__ = ["CSP", "MAX_BODY", "allowed_hosts", "create_app"]

"""``nemoguard server``: the guard as an HTTP service (OpenAI moderations, NeMo Guardrails checks, LiteLLM's
generic guardrail API, ``/health``, ``/metrics``). Needs ``pip install 'langchain-nemoguard[server]'``.

    NEMOGUARD_SERVER_API_KEYS=sk-... nemoguard server --base-url http://vllm:8000/v1 --host 0.0.0.0
    nemoguard server --simulator            # against the interface simulator (a test double), loopback only

The endpoint flags are ``nemoguard check``'s. Without API keys the service binds loopback only and says so; a
non-loopback ``--host`` without keys is refused (exit 2). See ``docs/service.md``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ._endpoint import add_endpoint_args, guard_from_args
from .exits import EXIT_USAGE

if TYPE_CHECKING:
    from ..core.telemetry import GuardObserver

DEFAULT_PORT = 8088


def configure(p: argparse.ArgumentParser) -> None:
    """The ``server`` options."""
    add_endpoint_args(p)
    g = p.add_argument_group("service")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need keys)")
    g.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: a free one)")
    g.add_argument(
        "--keys-file",
        metavar="FILE",
        help="YAML/JSON API keys with a policy each (also: NEMOGUARD_SERVER_API_KEYS, comma-separated)",
    )
    g.add_argument(
        "--on-error",
        choices=["block", "allow"],
        default="block",
        help="no verdict: answer 503 (block, default) or let the content through, marked (allow)",
    )
    g.add_argument(
        "--simulator",
        action="store_true",
        help="judge with an in-process interface simulator (a TEST DOUBLE, not a safety model)",
    )
    g.add_argument(
        "--fetch-remote-images", action="store_true", help="accept http(s) image URLs and fetch them (SSRF-checked)"
    )
    lim = p.add_argument_group("request limits")
    lim.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, help="default 8 MiB")
    lim.add_argument("--max-inputs", type=int, default=128, help="texts per request (default 128)")
    lim.add_argument("--max-images", type=int, default=8, help="images per request (default 8)")
    lim.add_argument("--max-text-chars", type=int, default=1_000_000, help="characters per request (default 1e6)")
    obs = p.add_argument_group("observability")
    obs.add_argument("--metrics-public", action="store_true", help="serve /metrics without a key")
    obs.add_argument("--otel", action="store_true", help="one OpenTelemetry span per check (global provider)")
    obs.add_argument("--otel-content", action="store_true", help="put the judged text on spans (off by default)")
    obs.add_argument("--audit-file", metavar="PATH", help="write audit records (JSONL, rotated) to PATH")
    obs.add_argument("--audit-max-bytes", type=int, default=100 * 1024 * 1024, help="rotate at (default 100 MiB)")
    obs.add_argument("--audit-backups", type=int, default=5, help="rotated files kept (default 5)")
    obs.add_argument("--audit-text", action="store_true", help="put the judged text in audit records")
    obs.add_argument(
        "--audit-log", action="store_true", help="also log audit records (logger langchain_nemoguard.audit)"
    )
    obs.add_argument("--record-endpoint", action="store_true", help="put the endpoint URL in audit records")
    obs.add_argument("--think-audit", action="store_true", help="re-judge each check in THINK mode, for the record")
    obs.add_argument("--think-queue", type=int, default=256, help="THINK audits queued at most (default 256)")
    obs.add_argument("--think-concurrency", type=int, default=2, help="THINK audits at once (default 2)")
    p.set_defaults(func=run_server)


def run_server(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    try:
        from ..service.server import GuardServer
    except ImportError as exc:
        if exc.name not in ("starlette", "uvicorn"):
            raise
        print(f"nemoguard server needs {exc.name}: pip install 'langchain-nemoguard[server]'", file=sys.stderr)
        return EXIT_USAGE
    from ..core.errors import ConfigurationError
    from ..simulator.endpoint import endpoint_or_simulator

    try:
        config = _config(args)
        from ..service.config import check_bind

        check_bind(args.host, config)  # before anything starts: an open guard on the network is refused
        observers, metrics = _observers(args)
        with endpoint_or_simulator(not args.simulator, args.base_url) as (url, _):
            args.base_url = url
            guard = guard_from_args(args, **_guard_options(args, observers))
            server = GuardServer(guard, config, host=args.host, port=args.port, metrics=metrics, in_process=False)
            _announce(server, config, guard)
            server.serve_forever()
    except ConfigurationError as exc:
        print(f"nemoguard server: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"nemoguard server: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _config(args: argparse.Namespace) -> Any:
    from ..service.config import ServiceConfig
    from ..service.keys import KeyRing

    keys = KeyRing.combine([KeyRing.from_env(), KeyRing.load(args.keys_file) if args.keys_file else None])
    return ServiceConfig(
        keys=keys,
        max_body_bytes=args.max_body_bytes,
        max_inputs=args.max_inputs,
        max_images=args.max_images,
        max_text_chars=args.max_text_chars,
        metrics_public=args.metrics_public,
    )


def _observers(args: argparse.Namespace) -> tuple[list[GuardObserver], Any]:
    from ..core.audit import JsonlAuditSink, LoggingAuditSink

    observers: list[GuardObserver] = []
    metrics = None
    try:
        from ..observability.metrics import GuardMetrics

        metrics = GuardMetrics()
        observers.append(metrics)
    except ImportError:
        print("nemoguard server: /metrics is off (pip install 'langchain-nemoguard[prometheus]')", file=sys.stderr)
    if args.otel or args.otel_content:
        from ..observability.tracing import GuardTracer

        tracer = GuardTracer(capture_content=args.otel_content)
        if tracer.enabled:
            observers.append(tracer)
        else:
            print("nemoguard server: --otel needs opentelemetry-api ([otel] extra); no spans", file=sys.stderr)
    if args.audit_file:
        observers.append(
            JsonlAuditSink(
                args.audit_file,
                max_bytes=args.audit_max_bytes,
                backups=args.audit_backups,
                include_text=args.audit_text,
            )
        )
    if args.audit_log:
        observers.append(LoggingAuditSink(include_text=args.audit_text, propagate=True))
    return observers, metrics


def _guard_options(args: argparse.Namespace, observers: list[GuardObserver]) -> dict[str, Any]:
    from ..core.images import ImageOptions
    from ..core.options import AuditOptions

    return {
        "on_error": args.on_error,
        # message content never names local files; remote URLs only when the operator says so
        "images": ImageOptions(fetch_remote_images=args.fetch_remote_images, allow_local_files=False),
        "audit": AuditOptions(
            observers=observers,
            think=args.think_audit,
            think_queue=args.think_queue,
            think_concurrency=args.think_concurrency,
            record_endpoint=args.record_endpoint,
        ),
    }


def _announce(server: Any, config: Any, guard: Any) -> None:
    if config.keys is None:
        print(
            "nemoguard server: no API keys configured - serving on loopback only; anyone on this machine can "
            "call it (set NEMOGUARD_SERVER_API_KEYS or --keys-file to serve others)",
            file=sys.stderr,
        )
    else:
        print(f"nemoguard server: {len(config.keys)} API keys", file=sys.stderr)
    print(
        f"nemoguard server: model {guard.model}, policy {guard.policy.name}, on_error={guard.on_error}",
        file=sys.stderr,
    )
    print(f"nemoguard server: listening on {server.url} (OpenAI base URL {server.base_url})", file=sys.stderr)

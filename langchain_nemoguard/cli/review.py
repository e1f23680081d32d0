"""``nemoguard review``: a local web page over audit trails and eval runs, to read verdicts and label them.

    nemoguard review audit.jsonl eval-runs/xstest-think        # http://127.0.0.1:8765/
    nemoguard eval review-labels.jsonl --policy policies.yaml  # judge the labelled records again

Binds to 127.0.0.1 unless ``--host`` says otherwise; the page has no login, so another address exposes every
record to whoever can reach it. Needs ``pip install 'langchain-nemoguard[review]'``.
"""

from __future__ import annotations

import argparse
import sys


def configure(p: argparse.ArgumentParser) -> None:
    """The ``review`` options."""
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="audit JSONL files, eval results files or run folders"
    )
    p.add_argument(
        "--labels", default="review-labels.jsonl", help="where labels are appended (default %(default)s)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; the page has no login)"
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the page is reached by (Host header; repeatable), e.g. with --host 0.0.0.0",
    )
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--max-records", type=int, default=200_000, help="records held at most (default 200000)")
    p.set_defaults(func=run_review)


def run_review(args: argparse.Namespace) -> int:
    """Serve the review page until interrupted."""
    try:
        from ..workbench.review.server import ReviewServer
    except ImportError as exc:
        if exc.name not in ("starlette", "uvicorn"):
            raise
        print(
            f"nemoguard review needs {exc.name}: pip install 'langchain-nemoguard[review]'", file=sys.stderr
        )
        return 2
    from ..workbench.review.app import LOOPBACK
    from ..workbench.review.store import Store

    store = Store(args.paths, args.labels, max_records=args.max_records)
    for warning in store.warnings:
        print(f"nemoguard review: {warning}", file=sys.stderr)
    if args.host not in LOOPBACK:
        print(
            f"nemoguard review: WARNING: serving on {args.host}, not loopback: the page has no login",
            file=sys.stderr,
        )
    try:
        server = ReviewServer(store, host=args.host, port=args.port, extra_hosts=args.allow_host)
    except OSError as exc:
        print(f"nemoguard review: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(
        f"nemoguard review: {len(store.records)} records, {len(store.runs)} runs; labels -> {args.labels}",
        file=sys.stderr,
    )
    print(f"open {server.url}/", file=sys.stderr)
    server.serve_forever()
    return 0

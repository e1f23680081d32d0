"""The ``nemoguard`` command: check, demo, simulate, serve, eval, bench.

Exit codes of ``check``: 0 safe, 1 unsafe, 2 no verdict (guard unavailable) or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..core import (
    ConfigurationError,
    ImageOptions,
    InvalidInputError,
    NemoGuard,
    NemoGuardError,
    PolicySet,
    Verdict,
)
from ..core.formats import MODES

EXIT_SAFE, EXIT_UNSAFE, EXIT_ERROR = 0, 1, 2


def add_endpoint_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command that talks to the model."""
    g = p.add_argument_group("endpoint (defaults: NEMOGUARD_* variables, then the provider's)")
    g.add_argument("--provider", choices=["vllm", "nvidia", "openrouter"], help="where the model is served")
    g.add_argument(
        "--base-url", help="OpenAI-compatible root incl. /v1 (comma-separate several for failover)"
    )
    g.add_argument("--model", help="model id (default: the provider's id for Nemotron 3.5 Content Safety)")
    g.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt (default 10)")
    g.add_argument("--mode", choices=MODES, default="categories", help="fast | categories | think")
    g.add_argument("--policy", metavar="FILE", help="YAML/JSON file of named policies")
    g.add_argument(
        "--policy-name", metavar="NAME", help="which policy of --policy to apply (default: its default)"
    )
    g.add_argument(
        "--constrain-output",
        action="store_true",
        help="vLLM only: constrain the answer to the verdict grammar",
    )


def guard_from_args(args: argparse.Namespace, **extra: Any) -> NemoGuard:
    policies = PolicySet.load(args.policy) if args.policy else None
    if args.policy_name and policies is None:
        raise ConfigurationError("--policy-name needs --policy FILE")
    return NemoGuard(
        args.base_url,
        provider=args.provider,
        model=args.model,
        mode=args.mode,
        policies=policies,
        policy=args.policy_name,
        timeout=args.timeout,
        constrain_output=args.constrain_output,
        **extra,
    )


def _cmd_check(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    options = ImageOptions(
        fetch_remote_images=args.fetch_remote_images, pass_remote_urls=args.pass_remote_urls
    )
    try:
        with guard_from_args(args, image_options=options) as guard:
            verdict = guard.check(prompt=text, response=args.response, images=args.image or None)
    except (InvalidInputError, ConfigurationError) as exc:
        print(f"nemoguard: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(describe(verdict))
    if verdict.error is not None:
        return EXIT_ERROR
    return EXIT_SAFE if verdict.safe else EXIT_UNSAFE


def describe(v: Verdict) -> str:
    lines = [f"verdict:    {v.reason}"]
    lines.append(f"user:       {_rating(v.user_safe)}")
    if v.response_safe is not None:
        lines.append(f"response:   {_rating(v.response_safe)}")
    if v.categories:
        lines.append(f"categories: {', '.join(v.categories)}")
    if v.suppressed_categories:
        lines.append(f"suppressed: {', '.join(v.suppressed_categories)}")
    lines.append(
        f"action:     {v.action.value}   policy: {v.policy}   mode: {v.mode}   {v.latency_ms:.1f} ms"
    )
    if v.reasoning:
        lines.append("reasoning:  " + v.reasoning.replace("\n", "\n            "))
    return "\n".join(lines)


def _rating(value: bool | None) -> str:
    return {True: "safe", False: "unsafe", None: "not judged"}[value]


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import run_eval

    return run_eval(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nemoguard",
        description="Content-safety guardrails backed by NVIDIA Nemotron 3.5 Content Safety.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "check", help="judge one prompt (and response, images); exit 0 safe, 1 unsafe, 2 error"
    )
    p.add_argument("text", help="the user prompt ('-' reads stdin)")
    p.add_argument("--response", help="an assistant response to judge with the prompt")
    p.add_argument("--image", action="append", metavar="PATH_OR_URL", help="an image (repeatable)")
    p.add_argument(
        "--fetch-remote-images", action="store_true", help="fetch http(s) images here (SSRF-checked)"
    )
    p.add_argument(
        "--pass-remote-urls", action="store_true", help="hand http(s) image URLs to the server as-is"
    )
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    add_endpoint_args(p)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("demo", help="a scripted set of guarded conversations, printed as a table")
    add_endpoint_args(p)
    p.add_argument(
        "--simulator", action="store_true", help="use the in-process simulator even if an endpoint is set"
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("eval", help="run a labelled data set through the guard and report metrics")
    p.add_argument(
        "dataset", help="xstest_prompts.csv, openai_moderation_*.jsonl(.gz), or a CSV/JSONL with text,label"
    )
    p.add_argument("--limit", type=int, help="only the first N examples")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--out", help="write metrics JSON here (and a .md table beside it)")
    p.add_argument(
        "--simulator", action="store_true", help="run against the in-process simulator (plumbing only)"
    )
    add_endpoint_args(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "bench", help="guard client overhead against raw aiohttp and httpx (uses the simulator)"
    )
    p.add_argument("--requests", type=int, default=400, help="requests per concurrency-64 throughput run")
    p.add_argument("--latency-runs", type=int, default=200, help="sequential requests per p50/p99 run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="write results JSON here")
    p.set_defaults(func=_cmd_bench)

    from ..simulator.cli import add_parser as add_simulate

    add_simulate(sub)
    from .vllm_server import add_parser as add_serve

    add_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigurationError, InvalidInputError) as exc:
        print(f"nemoguard: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except NemoGuardError as exc:
        print(f"nemoguard: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

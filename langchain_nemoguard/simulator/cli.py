"""``nemoguard simulate``: the argparse wiring, kept here so the project CLI only has to call ``add_parser``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import DEFAULT_HOST, DEFAULT_MODEL, FaultSpec, SimulatorConfig


def _fault(text: str) -> FaultSpec:
    try:
        return FaultSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``simulate`` options to ``parser`` (shared by the subcommand and ``python -m``)."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: 8000)"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id to serve (default: %(default)s)")
    parser.add_argument(
        "--strict-model", action="store_true", help="answer 400 to requests naming any other model id"
    )
    parser.add_argument(
        "--latency-ms", type=_non_negative, default=0.0, help="latency added to every completion"
    )
    parser.add_argument(
        "--latency-jitter-ms",
        type=_non_negative,
        default=0.0,
        help="extra uniform random latency in [0, N] ms",
    )
    parser.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="KIND:PROB",
        help="inject a fault into a fraction of requests; KIND is an HTTP status (500, 503, 429...) or "
        "reset, timeout, garbage, truncated; repeatable",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed the fault and jitter generators")
    parser.add_argument(
        "--rules", default=None, metavar="PATH", help="rule table YAML replacing the packaged one"
    )
    parser.add_argument(
        "--reasoning-field",
        action="store_true",
        help="put THINK traces in message.reasoning_content, as hosted endpoints do",
    )
    return parser


def handle(args: argparse.Namespace) -> int:
    """Run the simulator from parsed arguments; returns the process exit code."""
    from .rules import RulesError  # the server stack loads only when the simulator runs
    from .server import run

    try:
        config = SimulatorConfig(
            model=args.model,
            strict_model=args.strict_model,
            reasoning_field=args.reasoning_field,
            latency_ms=args.latency_ms,
            latency_jitter_ms=args.latency_jitter_ms,
            faults=tuple(args.fault),
            seed=args.seed,
            rules_path=args.rules,
        )
        return run(config, args.host, args.port)
    except (RulesError, ValueError) as exc:
        print(f"nemoguard simulate: {exc}", file=sys.stderr)
        return 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``simulate`` on the project CLI's subparsers; the handler is stored as ``func``."""
    parser = subparsers.add_parser(
        "simulate",
        help="run the interface simulator (a rule-based test double, NOT a safety model)",
        description="Serve an OpenAI-compatible endpoint that follows the Nemotron 3.5 Content Safety interface "
        "with deterministic rule-based verdicts, latency and fault injection. It is a test double and demo "
        "backend, NOT A SAFETY MODEL.",
    )
    configure(parser)
    parser.set_defaults(func=handle)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m langchain_nemoguard.simulator``)."""
    parser = configure(
        argparse.ArgumentParser(
            prog="python -m langchain_nemoguard.simulator",
            description="Nemotron 3.5 Content Safety interface simulator - NOT A SAFETY MODEL.",
        )
    )
    return handle(parser.parse_args(argv))

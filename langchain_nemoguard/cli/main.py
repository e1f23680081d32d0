"""The ``nemoguard`` command: check, demo, simulate, serve, eval, bench.

Exit codes of ``check`` (:data:`EXIT_CODES`, also in ``--help``): 0 safe, 1 unsafe, 2 usage error (argparse's
own code, also for arguments it cannot check: a missing image, a bad policy file), 3 no verdict (the guard was
unreachable, timed out or answered something unreadable). A script can tell all four apart.

Subcommands load lazily: each lives in its own module, imported only when that subcommand runs (or shows its
own help), so ``nemoguard --help`` loads neither the core's HTTP stack, the simulator's server nor the vLLM
tooling.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import traceback
from collections.abc import Mapping, Sequence
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING

from ._endpoint import add_endpoint_args, guard_from_args
from .exits import EXIT_CODES, EXIT_NO_VERDICT, EXIT_SAFE, EXIT_UNSAFE, EXIT_USAGE

if TYPE_CHECKING:
    from ..core.verdict import Verdict

EXIT_ERROR = EXIT_USAGE  # the earlier name of EXIT_USAGE

# name -> (module with configure(parser), one-line help); the module is imported only when it is needed.
_COMMANDS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "check": (__name__, "judge one prompt (and response, images); exit 0 safe, 1 unsafe, 2 usage error, 3 no verdict"),
        "demo": (".demo", "a scripted set of guarded conversations, printed as a table"),
        "eval": (".evaluate", "run a labelled data set through the guard and report metrics"),
        "bench": (".bench", "guard client overhead against raw aiohttp and httpx (uses the simulator)"),
        "simulate": (
            "..simulator.cli",
            "run the interface simulator (a rule-based test double, NOT a safety model)",
        ),
        "serve": (".serve", "run vLLM serving Nemotron 3.5 Content Safety"),
        "policy": (".policy", "write (new), check (validate) and try a custom policy file"),
        "review": (".review", "a local web page over audit trails and eval runs, to read and label verdicts"),
        "server": (".server", "the guard as an HTTP service: OpenAI moderations, NeMo Guardrails checks, LiteLLM API"),
    }
)


def configure(p: argparse.ArgumentParser) -> None:
    """The ``check`` options."""
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
    p.epilog = EXIT_CODES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(func=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    from ..core.errors import ConfigurationError, InvalidInputError
    from ..core.images import ImageOptions
    from ..core.providers import endpoint_configured
    from ..core.simulator_mark import LABEL
    from .hints import no_verdict_hint

    text = sys.stdin.read() if args.text == "-" else args.text
    options = ImageOptions(
        fetch_remote_images=args.fetch_remote_images, pass_remote_urls=args.pass_remote_urls
    )
    # the outcome is printed below, with a hint; the core's own warning would say it a second time
    logging.getLogger("langchain_nemoguard").addHandler(logging.NullHandler())
    try:
        with guard_from_args(args, images=options) as guard:
            verdict = guard.check(prompt=text, response=args.response, images=args.image or None)
    except (InvalidInputError, ConfigurationError) as exc:
        print(f"nemoguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # a bug, not a verdict: exit 1 would read as "unsafe"
        traceback.print_exc()
        print("nemoguard: internal error, no verdict", file=sys.stderr)
        return EXIT_NO_VERDICT
    if args.json:
        payload = verdict.to_dict()
        if verdict.simulator:
            payload["warning"] = LABEL
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print(describe(verdict))
    if verdict.error is not None:
        configured = bool(args.base_url or args.provider) or endpoint_configured()
        hint = no_verdict_hint(verdict, guard.base_urls, configured=configured)
        print(f"nemoguard: {verdict.error_message}" + (f"\n{hint}" if hint else ""), file=sys.stderr)
        return EXIT_NO_VERDICT
    return EXIT_SAFE if verdict.safe else EXIT_UNSAFE


def describe(v: Verdict) -> str:
    """A verdict as the few lines ``nemoguard check`` prints."""
    lines = [f"verdict:    {v.reason}"]
    if v.simulator:
        from ..core.simulator_mark import LABEL

        lines.append(f"judged by:  {LABEL.upper()}")
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


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``nemoguard`` parser. Only the subcommand named in ``argv`` is configured (all when None)."""
    parser = argparse.ArgumentParser(
        prog="nemoguard",
        description="Content-safety guardrails backed by NVIDIA Nemotron 3.5 Content Safety.",
        epilog=f"nemoguard check {EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = _command_in(argv)
    for name, (module, help_text) in _COMMANDS.items():
        if name == "simulate" and wanted in (name, None):
            # the simulator registers its own parser (shared with ``python -m langchain_nemoguard.simulator``)
            _module(module).add_parser(sub)
            continue
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if wanted in (name, None):
            _module(module).configure(p)
    return parser


def _command_in(argv: Sequence[str] | None) -> str | None:
    if argv is None:
        return None
    first = next((a for a in argv if not a.startswith("-")), "")
    return first if first in _COMMANDS else ""


def _module(name: str) -> ModuleType:
    return sys.modules[__name__] if name == __name__ else importlib.import_module(name, __package__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nemoguard`` with ``argv`` (default: the process's arguments); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    from ..core.errors import GuardUnavailableError, NemoGuardError

    try:
        return int(args.func(args) or 0)
    except GuardUnavailableError as exc:
        print(f"nemoguard: {exc}", file=sys.stderr)
        return EXIT_NO_VERDICT
    except NemoGuardError as exc:
        print(f"nemoguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

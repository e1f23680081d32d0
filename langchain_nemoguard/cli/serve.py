"""``nemoguard serve``: the argparse half (options, precedence, the subcommand); vLLM itself is driven by
:mod:`.vllm_server`.

Every option can come from a YAML file (``--config``) and be overridden by a flag; anything after ``--`` goes to
vLLM unchanged.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import ConfigurationError
from .vllm_server import (
    API_SERVER_MODULE,
    DEFAULT_GRACE,
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_MODEL,
    DEFAULT_SERVED_MODEL_NAMES,
    CliProbe,
    ServeError,
    ServeOptions,
    build_command,
    probe_vllm_cli,
    serve,
)

# --- the CLI -------------------------------------------------------------------------------------------------

_DEST = "serve_"  # dest prefix: the project CLI's own options cannot collide with these


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``serve`` options to ``parser`` and make ``args.func(args)`` run it."""
    s = argparse.SUPPRESS
    opt = parser.add_argument_group(
        "vLLM options (defaults: NVIDIA's recipe for Nemotron 3.5 Content Safety)"
    )
    opt.add_argument(
        "--model",
        dest=_DEST + "model",
        metavar="MODEL",
        default=s,
        help=f"HF id or local path ({DEFAULT_MODEL})",
    )
    opt.add_argument(
        "--served-model-name",
        dest=_DEST + "served_model_name",
        nargs="+",
        metavar="NAME",
        default=s,
        help=f"name(s) the API answers to ({' '.join(DEFAULT_SERVED_MODEL_NAMES)})",
    )
    opt.add_argument("--host", dest=_DEST + "host", metavar="HOST", default=s, help="bind address (0.0.0.0)")
    opt.add_argument("--port", dest=_DEST + "port", metavar="PORT", type=int, default=s, help="port (8000)")
    opt.add_argument(
        "--dtype", dest=_DEST + "dtype", metavar="DTYPE", default=s, help="weights dtype (bfloat16)"
    )
    opt.add_argument(
        "--max-model-len",
        dest=_DEST + "max_model_len",
        metavar="TOKENS",
        type=int,
        default=s,
        help="context (4096)",
    )
    opt.add_argument(
        "--limit-mm-per-prompt",
        dest=_DEST + "limit_mm_per_prompt",
        type=_json_object,
        metavar="JSON",
        default=s,
        help='multimodal items per prompt ({"image": 1}: the model judges one image per call)',
    )
    opt.add_argument(
        "--gpu-memory-utilization",
        dest=_DEST + "gpu_memory_utilization",
        metavar="FRACTION",
        type=float,
        default=s,
        help="fraction of GPU memory vLLM may take (0.85)",
    )
    opt.add_argument(
        "--prefix-caching",
        dest=_DEST + "enable_prefix_caching",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="prefix caching: the classifier prompt's long shared head is cached (on)",
    )
    opt.add_argument(
        "--trust-remote-code",
        dest=_DEST + "trust_remote_code",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="pass --trust-remote-code (on)",
    )
    opt.add_argument(
        "--enforce-eager",
        dest=_DEST + "enforce_eager",
        action=argparse.BooleanOptionalAction,
        default=s,
        help="no CUDA graphs / compilation: faster start, slower serving (off)",
    )
    opt.add_argument(
        "--structured-outputs-config",
        dest=_DEST + "structured_outputs_config",
        type=_json_object,
        metavar="JSON",
        default=s,
        help='e.g. {"backend": "xgrammar", "disable_any_whitespace": true}',
    )
    run = parser.add_argument_group("how to run it")
    run.add_argument(
        "--config", dest=_DEST + "config", type=Path, metavar="FILE", help="YAML file of options"
    )
    run.add_argument(
        "--python",
        dest=_DEST + "python",
        metavar="PYTHON",
        default=s,
        help="interpreter of vLLM's environment",
    )
    run.add_argument(
        "--entrypoint",
        dest=_DEST + "entrypoint",
        choices=["auto", "cli", "module"],
        default=s,
        help="`vllm serve` (cli), `python -m " + API_SERVER_MODULE + "` (module), or probe (auto)",
    )
    run.add_argument(
        "--env",
        dest=_DEST + "env",
        type=_env_pair,
        action="append",
        metavar="KEY=VALUE",
        default=s,
        help="set a variable in vLLM's environment (repeatable)",
    )
    run.add_argument(
        "--timeout",
        dest=_DEST + "timeout",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_HEALTH_TIMEOUT,
        help="seconds to wait for /health (%(default)g)",
    )
    run.add_argument(
        "--grace",
        dest=_DEST + "grace",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_GRACE,
        help="seconds before kill (%(default)g)",
    )
    run.add_argument(
        "--dry-run", dest=_DEST + "dry_run", action="store_true", help="print the command and exit"
    )
    parser.add_argument(
        "vllm_args",
        nargs="*",
        metavar="-- VLLM_ARGS",
        help="everything after `--` is passed to vLLM unchanged",
    )
    parser.set_defaults(func=run_from_args)
    return parser


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``serve`` on the project CLI's subparsers."""
    parser = subparsers.add_parser(
        "serve",
        help="run vLLM serving Nemotron 3.5 Content Safety",
        description="Run vLLM's OpenAI-compatible server for Nemotron 3.5 Content Safety with NVIDIA's flags.",
    )
    return configure_parser(parser)


_OPTION_FIELDS = (
    "model",
    "served_model_name",
    "host",
    "port",
    "dtype",
    "max_model_len",
    "limit_mm_per_prompt",
    "gpu_memory_utilization",
    "enable_prefix_caching",
    "trust_remote_code",
    "enforce_eager",
    "structured_outputs_config",
    "python",
    "entrypoint",
)


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """Defaults, then the ``--config`` file, then the flags that were given, then the ``--`` arguments."""
    overrides: dict[str, Any] = {}
    for name in _OPTION_FIELDS:
        if hasattr(args, _DEST + name):
            overrides[name] = getattr(args, _DEST + name)
    if hasattr(args, _DEST + "env"):
        overrides["env"] = dict(getattr(args, _DEST + "env"))
    passthrough = list(getattr(args, "vllm_args", None) or [])
    if passthrough[:1] == ["--"]:
        passthrough = passthrough[1:]
    if passthrough:
        overrides["extra_args"] = passthrough
    config: Path | None = getattr(args, _DEST + "config", None)
    if config is not None:
        return ServeOptions.from_yaml(config, **overrides)
    return ServeOptions.from_mapping({}, source="flags", **overrides)


def run_from_args(args: argparse.Namespace, *, cli_probe: CliProbe = probe_vllm_cli) -> int:
    """The ``serve`` subcommand: exit 0 after a clean shutdown or a dry run, 1 on failure."""
    try:
        opts = options_from_args(args)
        if getattr(args, _DEST + "dry_run", False):
            print(shlex.join(build_command(opts, cli_probe=cli_probe)))
            return 0
        server = serve(
            opts,
            wait=True,
            timeout=getattr(args, _DEST + "timeout", DEFAULT_HEALTH_TIMEOUT),
            grace=getattr(args, _DEST + "grace", DEFAULT_GRACE),
            cli_probe=cli_probe,
        )
    except (ServeError, ConfigurationError) as exc:
        print(f"nemoguard serve: error: {exc}", file=sys.stderr)
        return 1
    return server.exit_status if server.exit_status is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m langchain_nemoguard.cli.serve``: the same command without the project CLI around it."""
    parser = configure_parser(
        argparse.ArgumentParser(
            prog="nemoguard serve",
            description="Run vLLM's OpenAI-compatible server for Nemotron 3.5 Content Safety.",
        )
    )
    args = parser.parse_args(argv)
    return int(args.func(args))


def configure(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` options (``nemoguard`` calls this only when ``serve`` runs)."""
    configure_parser(parser)


if __name__ == "__main__":
    sys.exit(main())

"""The endpoint flags every model-facing command shares, and the guard (or simulator) they describe.

One module, so that ``check``, ``demo`` and ``eval`` read their flags the same way and none of them imports
another (the old cli -> demo -> evaluate -> cli loop).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..core.modes import MODES

if TYPE_CHECKING:
    from ..core.guard import NemoGuard


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
    """The guard the endpoint flags describe; ``extra`` are further ``NemoGuard`` arguments."""
    from ..core.errors import ConfigurationError
    from ..core.guard import NemoGuard
    from ..core.options import CallOptions
    from ..core.policy import PolicySet

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
        calls=CallOptions(constrain_output=args.constrain_output),
        **extra,
    )


@contextlib.contextmanager
def endpoint_for_args(args: argparse.Namespace) -> Iterator[tuple[str | None, bool]]:
    """Yields (base URL, simulated) for the flags: the configured URL, or an in-process simulator."""
    from ..core.providers import endpoint_configured
    from ..simulator.endpoint import endpoint_or_simulator

    flags = bool(getattr(args, "base_url", None) or getattr(args, "provider", None))
    use_real = (flags or endpoint_configured()) and not getattr(args, "simulator", False)
    with endpoint_or_simulator(use_real, args.base_url) as found:
        yield found


def default_served_context() -> int:
    """The context ``nemoguard serve`` serves by default (its ``--max-model-len``), in tokens."""
    from .vllm_server import ServeOptions

    return int(ServeOptions.model_fields["max_model_len"].default)


def public_url(url: str) -> str:
    """``url`` without what must never be recorded: user, password, query and fragment."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def probe_simulator(base_urls: Sequence[str], timeout: float = 3.0) -> bool:
    """True when an endpoint answers ``GET /models`` with the interface simulator's identifying header.

    Sent without credentials (the simulator needs none; a real endpoint may answer 401, which is fine): the
    point is that a simulator configured by URL, not started in-process, is still recognised.
    """
    import httpx

    from ..simulator.config import SIMULATOR_HEADER

    name, value = SIMULATOR_HEADER
    for url in base_urls:
        try:
            r = httpx.get(url.rstrip("/") + "/models", timeout=timeout, follow_redirects=False)
        except httpx.HTTPError:
            continue
        if r.headers.get(name) == value:
            return True
    return False

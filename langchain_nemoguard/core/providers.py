"""Where the model is served, and how each place names it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigurationError

ProviderName = Literal["vllm", "nvidia", "openrouter"]


@dataclass(frozen=True, slots=True)
class Provider:
    name: ProviderName
    base_url: str
    model: str
    key_env: str | None
    supports_structured_outputs: bool
    supports_logprobs: bool = False  # answers `logprobs` / `top_logprobs` (verdict scores)


PROVIDERS: Mapping[str, Provider] = {
    # `vllm serve nvidia/Nemotron-3.5-Content-Safety` serves the model under its Hugging Face id.
    "vllm": Provider(
        "vllm", "http://localhost:8000/v1", "nvidia/Nemotron-3.5-Content-Safety", None, True, supports_logprobs=True
    ),
    "nvidia": Provider(
        "nvidia",
        "https://integrate.api.nvidia.com/v1",
        "nvidia/nemotron-3.5-content-safety",
        "NVIDIA_API_KEY",
        False,
    ),
    "openrouter": Provider(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "nvidia/nemotron-3.5-content-safety",
        "OPENROUTER_API_KEY",
        False,
    ),
}


@dataclass(frozen=True, slots=True)
class ResolvedEndpoint:
    provider: Provider
    base_urls: tuple[str, ...]
    model: str
    api_key: str | None


def resolve(
    base_url: str | Sequence[str] | None,
    provider: str | None,
    model: str | None,
    api_key: str | None,
    env: Mapping[str, str] | None = None,
) -> ResolvedEndpoint:
    """Explicit arguments win, then ``NEMOGUARD_*`` variables, then the provider's defaults.

    ``NEMOGUARD_BASE_URL`` may hold several comma-separated URLs (failover).
    """
    env = os.environ if env is None else env
    name = provider or env.get("NEMOGUARD_PROVIDER") or "vllm"
    if name not in PROVIDERS:
        raise ConfigurationError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    p = PROVIDERS[name]
    if base_url is None:
        base_url = env.get("NEMOGUARD_BASE_URL") or p.base_url
    urls = (
        [u.strip() for u in base_url.split(",")] if isinstance(base_url, str) else [str(u) for u in base_url]
    )
    urls = [u.rstrip("/") for u in urls if u]
    if not urls:
        raise ConfigurationError("base_url is empty")
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must start with http:// or https://, got {u!r}")
    key = api_key or env.get("NEMOGUARD_API_KEY") or (env.get(p.key_env) if p.key_env else None) or None
    return ResolvedEndpoint(p, tuple(urls), model or env.get("NEMOGUARD_MODEL") or p.model, key)


def public_url(url: str) -> str:
    """``url`` without what must never be recorded: user, password, query and fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def endpoint_configured(env: Mapping[str, str] | None = None) -> bool:
    """True when the environment names a real endpoint (used by the demo to decide on the simulator)."""
    env = os.environ if env is None else env
    return bool(env.get("NEMOGUARD_BASE_URL") or env.get("NEMOGUARD_PROVIDER"))

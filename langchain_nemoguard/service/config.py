"""What one service allows: its keys and its request limits (a frozen value, fixed at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..core.errors import ConfigurationError
from .keys import KeyRing

LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Access rules and limits of ``nemoguard server``.

    Args:
        keys: The API keys (None: no key; then the service binds loopback only and answers only requests whose
            ``Host`` names a loopback address, so a web page cannot reach it by DNS rebinding).
        max_body_bytes: A request body larger than this is refused (413) before it is parsed.
        max_inputs: Texts one request may ask to judge (moderation inputs, messages, LiteLLM texts and tool
            calls).
        max_images: Images one request may carry.
        max_text_chars: Characters of text one request may carry in all.
        metrics_public: Serve ``/metrics`` without a key even when keys are configured (a scraper on a trusted
            network); off by default, since metrics name the policies.
    """

    keys: KeyRing | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_inputs: int = 128
    max_images: int = 8
    max_text_chars: int = 1_000_000
    metrics_public: bool = False

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_inputs", "max_text_chars"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be >= 1")
        if self.max_images < 0:
            raise ConfigurationError("max_images must be >= 0")

    @property
    def anonymous(self) -> bool:
        """True when no key is configured."""
        return self.keys is None


def check_bind(host: str, config: ServiceConfig) -> None:
    """Refuse a non-loopback address without keys: an open guard on the network fails closed at start-up."""
    if config.anonymous and host not in LOOPBACK:
        raise ConfigurationError(
            f"refusing to serve on {host} without API keys: set NEMOGUARD_SERVER_API_KEYS or --keys-file, "
            "or bind to 127.0.0.1"
        )


__all__ = ["LOOPBACK", "ServiceConfig", "check_bind"]

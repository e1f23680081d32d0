"""How images are vetted and prepared: :class:`ImageOptions` (immutable, shared by every request)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

import httpx
from PIL import Image

from ..errors import ConfigurationError

Resolver: TypeAlias = Callable[[str, int], list[str]]
"""``(host, port) -> IP address strings``. Injectable so tests (and unusual deployments) control DNS."""

ImageSource: TypeAlias = bytes | bytearray | memoryview | str | os.PathLike[str] | Image.Image
"""What :func:`prepare_image` accepts. A ``str`` is a ``data:`` URL, an ``http(s)`` URL, or a file path."""

_FORMATS: Final = ("JPEG", "PNG")
MAX_SHOWN: Final = 120  # characters of a user-supplied string quoted back in an error message


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """How images are vetted and prepared. Immutable, so one instance can be shared by every request.

    ``resolver``, ``transport`` and ``async_transport`` are plumbing, not policy: they are left out of
    equality, hashing and repr. ``transport``/``async_transport`` let a deployment route fetches through its
    own httpx transport (and let tests keep every byte on 127.0.0.1); the vetted-IP connection, Host header
    and SNI are applied on top of whatever transport is used.

    ``allow_local_files`` exists because a ``str`` may be a file path. Message content never reaches it (the
    adapters read image references from messages through ``core.conversation.image_reference``, which admits
    only ``data:`` and ``http(s)`` URLs); turn it off to refuse files in explicit arguments too.

    Args:
        max_side: The longer side after scaling (never an upscale).
        max_pixels: Images with more pixels are refused before decoding (decompression bombs).
        max_bytes: Encoded images larger than this are refused before parsing.
        output_format: ``"JPEG"`` or ``"PNG"`` for the re-encoded image.
        jpeg_quality: JPEG quality, 1-100.
        pass_remote_urls: Hand ``http(s)`` URLs to the model server as they are (literal private addresses
            and ``localhost`` are still refused).
        fetch_remote_images: Fetch ``http(s)`` images here, SSRF-checked, and send the bytes.
        fetch_timeout: Seconds for a whole fetch: DNS, connects, redirects and body.
        max_redirects: Redirect hops followed, each re-validated.
        allow_local_files: Whether a ``str`` or path argument may name a local file.
        resolver: ``(host, port) -> addresses`` for fetches (None: the system resolver).
        transport: An httpx transport for sync fetches.
        async_transport: An httpx transport for async fetches.
    """

    max_side: int = 896
    max_pixels: int = 50_000_000
    max_bytes: int = 20 * 1024 * 1024
    output_format: Literal["JPEG", "PNG"] = "JPEG"
    jpeg_quality: int = 90
    pass_remote_urls: bool = False
    fetch_remote_images: bool = False
    fetch_timeout: float = 5.0
    max_redirects: int = 3
    allow_local_files: bool = True
    resolver: Resolver | None = field(default=None, compare=False, hash=False, repr=False)
    transport: httpx.BaseTransport | None = field(default=None, compare=False, hash=False, repr=False)
    async_transport: httpx.AsyncBaseTransport | None = field(
        default=None, compare=False, hash=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.max_side < 1:
            raise ConfigurationError(f"max_side must be at least 1, got {self.max_side}")
        if self.max_pixels < 1:
            raise ConfigurationError(f"max_pixels must be at least 1, got {self.max_pixels}")
        if self.max_bytes < 1:
            raise ConfigurationError(f"max_bytes must be at least 1, got {self.max_bytes}")
        if self.output_format not in _FORMATS:
            raise ConfigurationError(f"output_format must be 'JPEG' or 'PNG', got {self.output_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigurationError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if not self.fetch_timeout > 0:
            raise ConfigurationError(f"fetch_timeout must be positive, got {self.fetch_timeout}")
        if self.max_redirects < 0:
            raise ConfigurationError(f"max_redirects must be >= 0, got {self.max_redirects}")




def shorten(text: str) -> str:
    """A user-supplied string cut to fit an error message."""
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {shorten(message)}" if message else type(exc).__name__


__all__ = ["ImageOptions", "ImageSource", "Resolver"]

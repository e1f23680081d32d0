"""Untrusted images -> model-ready bytes."""

from .prepare import (
    ImageOptions,
    ImageSource,
    PreparedImage,
    Resolver,
    aprepare_image,
    default_resolver,
    prepare_image,
)

__all__ = [
    "ImageOptions",
    "ImageSource",
    "PreparedImage",
    "Resolver",
    "aprepare_image",
    "default_resolver",
    "prepare_image",
]

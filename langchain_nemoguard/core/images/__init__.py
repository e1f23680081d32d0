"""Untrusted images -> model-ready bytes.

* :mod:`.options` - :class:`ImageOptions`, what is allowed and how images are prepared;
* :mod:`.prepare` - the entry points (:func:`prepare_image`, :func:`aprepare_image`) and the sources they read;
* :mod:`.decode` - decoding, normalising, scaling and re-encoding, under byte and pixel limits;
* :mod:`.fetch` - SSRF-safe fetching of remote images (off unless asked for).
"""

from .decode import PreparedImage
from .fetch import default_resolver
from .options import ImageOptions, ImageSource, Resolver
from .prepare import aprepare_image, prepare_image

__all__ = [
    "ImageOptions",
    "ImageSource",
    "PreparedImage",
    "Resolver",
    "aprepare_image",
    "default_resolver",
    "prepare_image",
]

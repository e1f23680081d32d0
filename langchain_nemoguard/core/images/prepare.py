"""Untrusted images -> model-ready bytes.

Every image a caller hands us is treated as hostile: it may be a decompression bomb, a truncated or crafted
file aimed at a decoder bug, a carrier of private metadata (GPS in EXIF, names in XMP), or a URL that points
at the cloud metadata service. This module is the single place that turns any of them into a small, clean,
re-encoded RGB image the safety model can read, or refuses with a typed error (``ImageError`` and friends
from :mod:`.errors`).

The pipeline, in the order that keeps it cheap and safe:

1. a byte limit, checked before anything is parsed;
2. ``Image.open`` restricted to an allow-list of formats; it only reads the header, so the pixel limit is
   checked before a single pixel is decoded (a 100000x100000 PNG of a few hundred bytes is refused at once);
3. JPEG draft mode, so the decoder itself scales by 1/2, 1/4 or 1/8 in the DCT domain - a 12 MP photo costs
   a fraction of a full decode;
4. colour normalisation (palette, 16-bit, CMYK...), a high-quality downscale to ``max_side`` (never an
   upscale), alpha composited on white, EXIF orientation applied;
5. re-encoding from a fresh pixel buffer, so no EXIF, ICC, XMP or comment can survive.

Remote URLs are off by default. ``pass_remote_urls`` hands them to the model server untouched;
``fetch_remote_images`` fetches them here with SSRF protection: every address a name resolves to is vetted,
the connection goes to the vetted address itself (so DNS rebinding between check and connect cannot reach
a private host), and every redirect hop is re-validated.

The sync and async entry points share all the validation and decoding code; only the HTTP client differs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
from pathlib import Path
from typing import Final
from urllib.parse import unquote_to_bytes

from PIL import Image

from ..errors import ImageError, ImageTooLargeError, UnsafeURLError
from .decode import PreparedImage, decode_bytes, prepare_pil
from .fetch import check_addresses, fetch_async, fetch_sync, literal_ip, parse_remote_url
from .options import ImageOptions, ImageSource, shorten

# "scheme://..." - a bare "name:" is left alone, since file names may contain colons. data: is matched apart.
_URL_SCHEME: Final = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")

# --- public entry points ------------------------------------------------------------------------------------


def prepare_image(source: ImageSource, options: ImageOptions | None = None) -> PreparedImage:
    """Vet ``source`` and return it model-ready; raises ``ImageError`` (or a subclass) or ``UnsafeURLError``.

    Blocking: decodes on the calling thread and, if ``fetch_remote_images`` is on, fetches with
    ``httpx.Client``. Use :func:`aprepare_image` from async code.
    """
    opts = options if options is not None else ImageOptions()
    remote = _remote_url(source)
    if remote is None:
        return _prepare_local(source, opts)
    if opts.fetch_remote_images:
        return decode_bytes(fetch_sync(remote, opts), opts)
    return _pass_through(remote, opts)


async def aprepare_image(source: ImageSource, options: ImageOptions | None = None) -> PreparedImage:
    """The async form of :func:`prepare_image`: same checks, same bytes out.

    Decoding (CPU-bound) and file reads run in ``asyncio.to_thread`` so the event loop stays responsive;
    remote fetches use ``httpx.AsyncClient``.
    """
    opts = options if options is not None else ImageOptions()
    remote = _remote_url(source)
    if remote is None:
        return await asyncio.to_thread(_prepare_local, source, opts)
    if opts.fetch_remote_images:
        data = await fetch_async(remote, opts)
        return await asyncio.to_thread(decode_bytes, data, opts)
    return _pass_through(remote, opts)


# --- sources ------------------------------------------------------------------------------------------------


def _remote_url(source: object) -> str | None:
    """The source if it is an http(s) URL string, else None. Other URL schemes are refused here."""
    if not isinstance(source, str):
        return None
    match = _URL_SCHEME.match(source)
    if match is None:
        return None
    scheme = match.group(1).lower()
    if scheme in ("http", "https"):
        return source
    raise UnsafeURLError(f"unsupported image URL scheme {scheme!r}: use a data: URL, http(s), or a file path")


def _prepare_local(source: ImageSource, opts: ImageOptions) -> PreparedImage:
    """Everything but remote URLs: bytes, PIL images, data: URLs and file paths. Blocking."""
    if isinstance(source, Image.Image):
        return prepare_pil(source, opts)
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_bytes(bytes(source), opts)
    if isinstance(source, str) and source[:5].lower() == "data:":
        return decode_bytes(_read_data_url(source, opts), opts)
    if isinstance(source, str | os.PathLike):
        return decode_bytes(_read_file(source, opts), opts)
    raise ImageError(
        f"unsupported image source type {type(source).__name__}: pass bytes, a PIL image, "
        "a data: URL, an http(s) URL or a file path"
    )


def _read_data_url(url: str, opts: ImageOptions) -> bytes:
    """Decode a ``data:`` URL after checking that it declares an image and is not over the byte limit."""
    header, sep, payload = url.partition(",")
    if not sep:
        raise ImageError("malformed data: URL (no ',' separating the header from the data)")
    params = [p.strip() for p in header[5:].split(";")]
    mime = params[0].lower() if params and params[0] else "text/plain"  # RFC 2397's default
    if not mime.startswith("image/"):
        raise ImageError(f"data: URL declares {shorten(mime)!r}, not an image type")
    if "base64" in (p.lower() for p in params[1:]):
        compact = "".join(payload.split())  # base64 in URLs is often wrapped
        if len(compact) // 4 * 3 > opts.max_bytes + 2:
            raise ImageTooLargeError(f"image data is over the {opts.max_bytes:,}-byte limit")
        try:
            return base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("data: URL has invalid base64 data") from None
    if len(payload) > 3 * opts.max_bytes:  # percent-encoding at most triples the size
        raise ImageTooLargeError(f"image data is over the {opts.max_bytes:,}-byte limit")
    return unquote_to_bytes(payload)


def _read_file(source: str | os.PathLike[str], opts: ImageOptions) -> bytes:
    """Read an image file, refusing before reading if it is over the byte limit."""
    if not opts.allow_local_files:
        raise ImageError("local image files are off (allow_local_files=False)")
    path = Path(source)
    shown = shorten(str(path))
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > opts.max_bytes:
                raise ImageTooLargeError(
                    f"image file {shown!r} is {size:,} bytes, over the {opts.max_bytes:,}-byte limit"
                )
            data = fh.read(opts.max_bytes + 1)  # the file may grow between fstat and read
    except FileNotFoundError:
        raise ImageError(f"image file not found: {shown!r}") from None
    except IsADirectoryError:
        raise ImageError(f"image path is a directory: {shown!r}") from None
    except OSError as exc:
        raise ImageError(f"cannot read image file {shown!r}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > opts.max_bytes:
        raise ImageTooLargeError(f"image file {shown!r} is over the {opts.max_bytes:,}-byte limit")
    return data


def _pass_through(url: str, opts: ImageOptions) -> PreparedImage:
    """Hand an http(s) URL to the model server as is - no DNS, no connection.

    The model server will fetch it, so a literal private/loopback address (or ``localhost``) is refused
    here: that check needs no network. Names are not resolved; deployments that cannot trust the model
    server's own fetch policy should use ``fetch_remote_images`` instead.
    """
    if not opts.pass_remote_urls:
        raise UnsafeURLError(
            "remote image URLs are off; pass pass_remote_urls=True or fetch_remote_images=True"
        )
    _parsed, host, _port = parse_remote_url(url)
    literal = literal_ip(host)
    name = host.rstrip(".").lower()
    if literal is not None:
        check_addresses(host, [str(literal)])
    elif name == "localhost" or name.endswith(".localhost"):
        raise UnsafeURLError(f"refusing image URL on {host!r}: a loopback name")
    return PreparedImage(
        data=None, mime="", width=0, height=0, digest=hashlib.sha256(url.encode()).hexdigest(), url=url
    )


__all__ = ["aprepare_image", "prepare_image"]

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
import concurrent.futures
import hashlib
import io
import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, TypeAlias
from urllib.parse import unquote_to_bytes

import httpx
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigurationError, ImageError, ImageTooLargeError, UnsafeURLError

__all__ = [
    "ImageOptions",
    "ImageSource",
    "PreparedImage",
    "Resolver",
    "aprepare_image",
    "default_resolver",
    "prepare_image",
]

Resolver: TypeAlias = Callable[[str, int], list[str]]
"""``(host, port) -> IP address strings``. Injectable so tests (and unusual deployments) control DNS."""

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

ImageSource: TypeAlias = bytes | bytearray | memoryview | str | os.PathLike[str] | Image.Image
"""What :func:`prepare_image` accepts. A ``str`` is a ``data:`` URL, an ``http(s)`` URL, or a file path."""

# Pillow format ids we let the decoder use. Everything else (EPS, PSD, ICO, SGI...) is refused: fewer
# decoders exposed to hostile input. Camera JPEGs with a second picture open through the JPEG opener as
# MPO images (a JpegImageFile subclass), so they need no entry of their own.
_ALLOWED_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_FORMAT_NAMES: Final = "PNG, JPEG, WebP, GIF, BMP or TIFF"

# EXIF orientation -> the transpose that undoes it; the same table ImageOps.exif_transpose uses. Applied to
# the already-downscaled image, which is why we do not call exif_transpose on the full-size one.
_ORIENTATION_FIX: Final = MappingProxyType(
    {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
)
_EXIF_ORIENTATION: Final = 0x0112

_MIME: Final = MappingProxyType({"JPEG": "image/jpeg", "PNG": "image/png"})
_WHITE: Final = (255, 255, 255)
# LANCZOS after an integer box reduce() down to 3x the target: sharp, alias-free, and the reduce keeps big
# non-JPEG inputs cheap. JPEGs arrive already reduced by draft mode, so they rarely need the box step.
_RESAMPLE: Final = Image.Resampling.LANCZOS
_REDUCING_GAP: Final = 3.0

# "scheme://..." - a bare "name:" is left alone, since file names may contain colons. data: is matched apart.
_URL_SCHEME: Final = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
_REDIRECT_CODES: Final = frozenset({301, 302, 303, 307, 308})
# Octet-stream is what object stores often send for uploads; the decoder's format allow-list is the real
# gate, the content type only turns away the obvious (an HTML error page, JSON).
_ACCEPTED_CONTENT_TYPES: Final = ("image/", "application/octet-stream")
# Well-known NAT64 prefix (RFC 6052): judged only by the IPv4 address it embeds, so DNS64 networks work.
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
# Refused whatever the flags say: local-use NAT64 (RFC 8215) maps into someone's own network, the IETF
# protocol block 192.0.0.0/24 is not generally reachable, and fec0::/10 is the deprecated site-local range
# that some stacks still route internally.
_ALWAYS_FORBIDDEN: Final = (
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "IETF protocol assignment"),
    (ipaddress.IPv6Network("fec0::/10"), "site-local"),
)
_MAX_SHOWN: Final = 120  # characters of a user-supplied string quoted back in an error message


def default_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver; every address it returns, deduplicated, in order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """How images are vetted and prepared. Immutable, so one instance can be shared by every request.

    ``resolver``, ``transport`` and ``async_transport`` are plumbing, not policy: they are left out of
    equality, hashing and repr. ``transport``/``async_transport`` let a deployment route fetches through its
    own httpx transport (and let tests keep every byte on 127.0.0.1); the vetted-IP connection, Host header
    and SNI are applied on top of whatever transport is used.

    ``allow_local_files`` exists because a ``str`` may be a file path: code that forwards image strings from
    untrusted messages (chat content, tool output) should turn it off so a message cannot name a local file.
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
        if self.output_format not in _MIME:
            raise ConfigurationError(f"output_format must be 'JPEG' or 'PNG', got {self.output_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigurationError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if not self.fetch_timeout > 0:
            raise ConfigurationError(f"fetch_timeout must be positive, got {self.fetch_timeout}")
        if self.max_redirects < 0:
            raise ConfigurationError(f"max_redirects must be >= 0, got {self.max_redirects}")


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """A vetted image ready for the request body.

    ``digest`` (sha256 of ``data``, or of the URL for a pass-through) is what verdict caches key on, so two
    inputs that prepare to the same bytes share a cache entry. ``data`` is kept out of the repr so that
    logging a ``PreparedImage`` never writes image bytes.
    """

    data: bytes | None = field(repr=False)
    mime: str
    width: int
    height: int
    digest: str
    url: str | None = None

    def as_url(self) -> str:
        """The value for an OpenAI ``image_url.url``: a base64 ``data:`` URL, or the passed-through URL."""
        if self.data is None:
            if self.url is None:  # unreachable through prepare_image; guards hand-built instances
                raise ImageError("PreparedImage has neither data nor a URL")
            return self.url
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


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
        return _decode_bytes(_fetch_sync(remote, opts), opts)
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
        data = await _fetch_async(remote, opts)
        return await asyncio.to_thread(_decode_bytes, data, opts)
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
        return _prepare_pil(source, opts)
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode_bytes(bytes(source), opts)
    if isinstance(source, str) and source[:5].lower() == "data:":
        return _decode_bytes(_read_data_url(source, opts), opts)
    if isinstance(source, str | os.PathLike):
        return _decode_bytes(_read_file(source, opts), opts)
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
        raise ImageError(f"data: URL declares {_shorten(mime)!r}, not an image type")
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
    shown = _shorten(str(path))
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
    _parsed, host, _port = _parse_remote_url(url)
    literal = _literal_ip(host)
    name = host.rstrip(".").lower()
    if literal is not None:
        _check_addresses(host, [str(literal)])
    elif name == "localhost" or name.endswith(".localhost"):
        raise UnsafeURLError(f"refusing image URL on {host!r}: a loopback name")
    return PreparedImage(
        data=None, mime="", width=0, height=0, digest=hashlib.sha256(url.encode()).hexdigest(), url=url
    )


# --- decoding -----------------------------------------------------------------------------------------------


def _decode_bytes(data: bytes, opts: ImageOptions) -> PreparedImage:
    """Open encoded bytes (lazily: header only), vet them, and run the pipeline."""
    if len(data) > opts.max_bytes:
        raise ImageTooLargeError(f"image is {len(data):,} bytes, over the {opts.max_bytes:,}-byte limit")
    if not data:
        raise ImageError("image data is empty")
    try:
        img = Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image refused as a decompression bomb: {_shorten(str(exc))}") from None
    except UnidentifiedImageError:
        raise ImageError(f"not a supported image ({_FORMAT_NAMES}) or the data is corrupt") from None
    except Exception as exc:  # Pillow raises many types on hostile headers; all mean "bad image"
        raise ImageError(f"image header could not be read: {_describe(exc)}") from None
    with img:
        return _pipeline(img, opts, owned=True)


def _prepare_pil(img: Image.Image, opts: ImageOptions) -> PreparedImage:
    """A caller's PIL image: same pipeline, but never mutated (no draft mode, no in-place changes)."""
    return _pipeline(img, opts, owned=False)


def _pipeline(img: Image.Image, opts: ImageOptions, *, owned: bool) -> PreparedImage:
    """Size check, decode, normalise, scale, orient, re-encode. ``owned``: we opened it and may mutate it."""
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > opts.max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {width * height:,} pixels, over the {opts.max_pixels:,}-pixel limit"
        )
    target = _fit(width, height, opts.max_side)
    try:
        if owned and img.format in ("JPEG", "MPO") and target != img.size:
            # Decode straight at 1/2, 1/4 or 1/8 scale, the smallest that is still >= the target.
            img.draft("RGB", target)
        img.load()  # before getexif: for PNG that call would otherwise load, and swallow a decode error
        orientation = _orientation(img)
        work = _normalise_mode(img)
        if work.size != target:
            work = work.resize(target, _RESAMPLE, reducing_gap=_REDUCING_GAP)
        rgb = _flatten(work)
        fix = _ORIENTATION_FIX.get(orientation)
        if fix is not None:
            rgb = rgb.transpose(fix)
    except ImageError:
        raise
    except MemoryError:
        raise ImageTooLargeError(f"image ({width}x{height}) needs more memory than is available") from None
    except Exception as exc:  # truncated data, corrupt chunks, decoder errors: all the caller's image
        raise ImageError(f"image could not be decoded: {_describe(exc)}") from None
    return _encode(rgb, opts)


def _fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale so the longer side is at most ``max_side``, keeping the aspect ratio; never upscale."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _orientation(img: Image.Image) -> int:
    """The EXIF (or XMP, which Pillow folds into getexif) orientation; 1 when absent or unreadable."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block must not make an otherwise fine image unusable
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION_FIX else 1


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Bring any Pillow mode to L, LA, RGB or RGBA: the modes resize handles (it premultiplies alpha)."""
    mode = img.mode
    has_transparency = "transparency" in img.info
    if mode in ("RGB", "L") and not has_transparency:
        return img
    if mode in ("RGBA", "LA"):
        return img
    if mode in ("P", "PA", "RGB", "L", "1") and (has_transparency or mode == "PA"):
        return img.convert("RGBA")
    if mode == "La":
        return img.convert("LA")
    if mode == "RGBa":
        return img.convert("RGBA")
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16"):
        # 16-bit grey: Pillow's own conversion clips at 255 (nearly everything turns white); scale instead.
        return img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if mode in ("I", "F"):
        return _stretch_to_l(img)
    try:
        return img.convert("RGB")  # P, CMYK, YCbCr, RGBX, HSV...
    except ValueError:
        raise ImageError(f"unsupported colour mode {mode!r}") from None


def _stretch_to_l(img: Image.Image) -> Image.Image:
    """32-bit integer or float grey to 8 bits: as is if already in 0..255, else stretched to fill it."""
    low, high = img.getextrema()
    if low >= 0 and high <= 255:
        return img.convert("L")
    if high == low:
        return Image.new("L", img.size, 0 if high < 0 else 255)
    scale = 255.0 / (high - low)
    offset = -low * scale
    return img.point(lambda v: v * scale + offset).convert("L")


def _flatten(img: Image.Image) -> Image.Image:
    """L/LA/RGB/RGBA -> RGB, with alpha composited on white (what a viewer shows for a transparent image)."""
    if img.mode == "RGB":
        return img
    if img.mode == "L":
        return img.convert("RGB")
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, _WHITE)
    canvas.paste(rgba, (0, 0), rgba.getchannel("A"))
    return canvas


def _encode(rgb: Image.Image, opts: ImageOptions) -> PreparedImage:
    """Re-encode from a fresh pixel buffer: derived PIL images carry ``info`` (EXIF, ICC, XMP, comments)
    along, and some encoders write it; a new image has none, so nothing but pixels can leave."""
    clean = Image.new("RGB", rgb.size)
    clean.paste(rgb)
    buf = io.BytesIO()
    if opts.output_format == "JPEG":
        clean.save(buf, "JPEG", quality=opts.jpeg_quality)
    else:
        clean.save(buf, "PNG")
    data = buf.getvalue()
    return PreparedImage(
        data=data,
        mime=_MIME[opts.output_format],
        width=clean.width,
        height=clean.height,
        digest=hashlib.sha256(data).hexdigest(),
    )


# --- SSRF-safe fetching: shared pieces ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Hop:
    """One request of a fetch: the URL as given, and where we actually connect."""

    url: httpx.URL  # as the caller or the redirect named it (fragment dropped); redirects resolve against it
    connect_url: httpx.URL  # the same URL with the host replaced by the vetted IP
    host_header: str
    sni_hostname: str | None  # https only: certificate checked against the name, not the IP


def _parse_remote_url(url: str | httpx.URL) -> tuple[httpx.URL, str, int]:
    """Parse and vet the shape of an http(s) URL: ``(url without fragment, ascii host, port)``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UnsafeURLError(f"malformed image URL {_shorten(str(url))!r}") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeURLError(f"refusing image URL with scheme {_shorten(parsed.scheme)!r}: only http(s)")
    if not parsed.raw_host:
        raise UnsafeURLError(f"image URL has no host: {_redact(parsed)!r}")
    if parsed.userinfo:
        raise UnsafeURLError("image URLs with credentials (user:password@) are refused")
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded; IPv6 literals without brackets
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.copy_with(fragment=None), host, port


def _literal_ip(host: str) -> IPAddress | None:
    """The address if ``host`` is an IP literal - including the legacy IPv4 spellings browsers and
    ``getaddrinfo`` accept (``2130706433``, ``0x7f.1``, ``127.1``), which are classic SSRF filter bypasses."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefABCDEFxX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _forbidden_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from, or None if it is a public unicast address.

    IPv6 forms that embed an IPv4 address are judged by the embedded address: ``::ffff:127.0.0.1``
    (mapped), ``2002:7f00:1::`` (6to4) and ``64:ff9b::7f00:1`` (NAT64) are loopback however they are spelled.
    """
    for network, reason in _ALWAYS_FORBIDDEN:
        if ip.version == network.version and ip in network:
            return reason
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "scoped (link-local) address"
        if ip.ipv4_mapped is not None:
            return _embedded_reason(ip.ipv4_mapped)
        if ip in _NAT64:
            # The prefix itself is "reserved" to ipaddress; only what it translates to matters.
            return _embedded_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            inner = _embedded_reason(ip.sixtofour)
            if inner is not None:
                return inner
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        # Catches the ranges the flags above miss, e.g. 100.64.0.0/10 (carrier-grade NAT, shared space).
        ("not globally routable", not ip.is_global),
    )
    for reason, hit in checks:
        if hit:
            return reason
    return None


def _embedded_reason(embedded: ipaddress.IPv4Address) -> str | None:
    inner = _forbidden_reason(embedded)
    return None if inner is None else f"embeds {embedded}, {inner}"


def _check_addresses(host: str, addresses: Iterable[str]) -> str:
    """Vet every resolved address; refuse if ANY is forbidden (an attacker controls which one we'd get).
    Returns the address to connect to (an IPv4-mapped IPv6 address as plain IPv4)."""
    vetted: list[IPAddress] = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeURLError(f"{host!r} resolved to something that is not an IP address") from None
        reason = _forbidden_reason(ip)
        if reason is not None:
            raise UnsafeURLError(f"refusing to fetch from {host!r}: it resolves to {ip} ({reason})")
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        vetted.append(ip)
    if not vetted:
        raise UnsafeURLError(f"{host!r} did not resolve to any address")
    return str(vetted[0])


def _plan_hop(url: httpx.URL, host: str, ip: str) -> _Hop:
    """Pin the request to the vetted IP while keeping what the server and TLS must see: Host and SNI."""
    connect_url = url.copy_with(host=ip)
    sni = host if url.scheme == "https" and _literal_ip(host) is None else None
    return _Hop(url=url, connect_url=connect_url, host_header=url.netloc.decode("ascii"), sni_hostname=sni)


def _build_request(client: httpx.Client | httpx.AsyncClient, hop: _Hop, remaining: float) -> httpx.Request:
    extensions = {"sni_hostname": hop.sni_hostname} if hop.sni_hostname else None
    return client.build_request(
        "GET",
        hop.connect_url,
        headers={
            "Host": hop.host_header,
            "Accept": "image/*",
            # Uncompressed, so the byte count we enforce is the byte count that arrives (no gzip bombs).
            "Accept-Encoding": "identity",
            "User-Agent": "langchain-nemoguard",
        },
        extensions=extensions,
        timeout=max(remaining, 0.001),
    )


def _next_url(response: httpx.Response, hop: _Hop, opts: ImageOptions) -> httpx.URL | None:
    """After the headers: the redirect target to validate next, or None if the body is to be read."""
    status = response.status_code
    if status in _REDIRECT_CODES:
        location = response.headers.get("location")
        if not location:
            raise ImageError(f"fetching {_redact(hop.url)!r}: HTTP {status} redirect without a Location")
        try:
            return hop.url.join(location)
        except (httpx.InvalidURL, ValueError):
            raise UnsafeURLError(f"fetching {_redact(hop.url)!r}: malformed redirect target") from None
    if not 200 <= status < 300:
        raise ImageError(f"fetching {_redact(hop.url)!r}: HTTP {status}")
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype.startswith(_ACCEPTED_CONTENT_TYPES):
        shown = _shorten(ctype) if ctype else "no content type"
        raise ImageError(f"fetching {_redact(hop.url)!r}: got {shown!r}, not an image")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > opts.max_bytes:
        raise ImageTooLargeError(
            f"image at {_redact(hop.url)!r} is {int(declared):,} bytes, "
            f"over the {opts.max_bytes:,}-byte limit"
        )
    return None


class _Body:
    """Accumulates a streamed body, aborting past the byte limit or the overall deadline."""

    __slots__ = ("_chunks", "_deadline", "_limit", "_size", "_url")

    def __init__(self, url: httpx.URL, limit: int, deadline: float) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._deadline = deadline
        self._url = url

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise ImageTooLargeError(
                f"image at {_redact(self._url)!r} is over the {self._limit:,}-byte limit"
            )
        if time.monotonic() > self._deadline:
            raise ImageError(f"fetching {_redact(self._url)!r} timed out")
        self._chunks.append(chunk)

    def value(self) -> bytes:
        return b"".join(self._chunks)


def _check_deadline(url: httpx.URL, deadline: float) -> None:
    if time.monotonic() > deadline:
        raise ImageError(f"fetching {_redact(url)!r} timed out")


def _too_many_redirects(url: str, opts: ImageOptions) -> ImageError:
    return ImageError(f"fetching {_redact(httpx.URL(url))!r}: more than {opts.max_redirects} redirects")


def _network_error(url: httpx.URL, exc: Exception) -> ImageError:
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ImageError(f"fetching {_redact(url)!r} timed out")
    return ImageError(f"fetching {_redact(url)!r} failed: {type(exc).__name__}")


# --- SSRF-safe fetching: sync -------------------------------------------------------------------------------


def _resolve_sync(host: str, port: int, opts: ImageOptions, deadline: float) -> str:
    """Resolve and vet. The resolver runs in a worker thread so slow DNS cannot outlast the deadline."""
    literal = _literal_ip(host)
    if literal is not None:
        return _check_addresses(host, [str(literal)])
    resolver = opts.resolver or default_resolver
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nemoguard-dns")
    try:
        future = pool.submit(resolver, host, port)
        addresses = future.result(timeout=max(deadline - time.monotonic(), 0.001))
    except OSError as exc:
        raise UnsafeURLError(f"cannot resolve {host!r}: {exc.strerror or type(exc).__name__}") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return _check_addresses(host, addresses)


def _fetch_sync(url: str, opts: ImageOptions) -> bytes:
    """Fetch with every hop vetted; ``fetch_timeout`` bounds the whole of DNS, connects, reads, redirects."""
    deadline = time.monotonic() + opts.fetch_timeout
    current: httpx.URL | str = url
    # follow_redirects=False: each hop must be re-vetted here. trust_env=False: a proxy from the environment
    # would pick the address itself, undoing the pinning to the vetted IP.
    with httpx.Client(
        transport=opts.transport, follow_redirects=False, trust_env=False, timeout=opts.fetch_timeout
    ) as client:
        for _ in range(opts.max_redirects + 1):
            parsed, host, port = _parse_remote_url(current)
            try:
                _check_deadline(parsed, deadline)
                hop = _plan_hop(parsed, host, _resolve_sync(host, port, opts, deadline))
                request = _build_request(client, hop, deadline - time.monotonic())
                response = client.send(request, stream=True)
                try:
                    nxt = _next_url(response, hop, opts)
                    if nxt is None:
                        body = _Body(hop.url, opts.max_bytes, deadline)
                        for chunk in response.iter_bytes():
                            body.add(chunk)
                        return body.value()
                finally:
                    response.close()
            except (httpx.HTTPError, TimeoutError) as exc:
                raise _network_error(parsed, exc) from None
            current = nxt
    raise _too_many_redirects(url, opts)


# --- SSRF-safe fetching: async ------------------------------------------------------------------------------


async def _resolve_async(host: str, port: int, opts: ImageOptions) -> str:
    literal = _literal_ip(host)
    if literal is not None:
        return _check_addresses(host, [str(literal)])
    resolver = opts.resolver or default_resolver
    try:
        addresses = await asyncio.to_thread(resolver, host, port)
    except OSError as exc:
        raise UnsafeURLError(f"cannot resolve {host!r}: {exc.strerror or type(exc).__name__}") from None
    return _check_addresses(host, addresses)


async def _fetch_async(url: str, opts: ImageOptions) -> bytes:
    """The async twin of :func:`_fetch_sync`; ``asyncio.timeout`` bounds the whole fetch."""
    deadline = time.monotonic() + opts.fetch_timeout
    current: httpx.URL | str = url
    parsed, _host, _port = _parse_remote_url(url)
    try:
        async with asyncio.timeout(opts.fetch_timeout):
            async with httpx.AsyncClient(
                transport=opts.async_transport,
                follow_redirects=False,
                trust_env=False,
                timeout=opts.fetch_timeout,
            ) as client:
                for _ in range(opts.max_redirects + 1):
                    parsed, host, port = _parse_remote_url(current)
                    hop = _plan_hop(parsed, host, await _resolve_async(host, port, opts))
                    request = _build_request(client, hop, deadline - time.monotonic())
                    response = await client.send(request, stream=True)
                    try:
                        nxt = _next_url(response, hop, opts)
                        if nxt is None:
                            body = _Body(hop.url, opts.max_bytes, deadline)
                            async for chunk in response.aiter_bytes():
                                body.add(chunk)
                            return body.value()
                    finally:
                        await response.aclose()
                    current = nxt
    except (httpx.HTTPError, TimeoutError) as exc:
        raise _network_error(parsed, exc) from None
    raise _too_many_redirects(url, opts)


# --- helpers ------------------------------------------------------------------------------------------------


def _redact(url: httpx.URL) -> str:
    """A URL fit for an error message: no query (signed URLs carry credentials there), no fragment."""
    return _shorten(str(url.copy_with(query=None, fragment=None)))


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {_shorten(message)}" if message else type(exc).__name__

"""Decoding, the pixel half of the pipeline: bytes or a Pillow image in, a small clean re-encoded RGB image out.

Steps 2-5 of the pipeline in :mod:`.prepare`: ``Image.open`` restricted to an allow-list of formats (header
only, so the pixel limit is checked before a pixel is decoded), JPEG draft mode, colour normalisation, a
high-quality downscale (never an upscale), alpha on white, EXIF orientation, and a re-encode from a fresh
pixel buffer so no metadata survives.
"""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from PIL import Image, UnidentifiedImageError

from ..errors import ImageError, ImageTooLargeError
from .options import ImageOptions, describe, shorten

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



# --- decoding -----------------------------------------------------------------------------------------------


def decode_bytes(data: bytes, opts: ImageOptions) -> PreparedImage:
    """Open encoded bytes (lazily: header only), vet them, and run the pipeline."""
    if len(data) > opts.max_bytes:
        raise ImageTooLargeError(f"image is {len(data):,} bytes, over the {opts.max_bytes:,}-byte limit")
    if not data:
        raise ImageError("image data is empty")
    try:
        img = Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image refused as a decompression bomb: {shorten(str(exc))}") from None
    except UnidentifiedImageError:
        raise ImageError(f"not a supported image ({_FORMAT_NAMES}) or the data is corrupt") from None
    except Exception as exc:  # Pillow raises many types on hostile headers; all mean "bad image"
        raise ImageError(f"image header could not be read: {describe(exc)}") from None
    with img:
        return _pipeline(img, opts, owned=True)


def prepare_pil(img: Image.Image, opts: ImageOptions) -> PreparedImage:
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
        raise ImageError(f"image could not be decoded: {describe(exc)}") from None
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
    extrema = img.getextrema()
    low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]  # one band: (min, max)
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


__all__ = ["PreparedImage", "decode_bytes", "prepare_pil"]

"""Tests for langchain_nemoguard.core.images: decoding hostile images and SSRF-safe fetching.

Network rule for this file: the only traffic any test sends goes to 127.0.0.1. Remote-fetch tests use a
resolver that maps test names to documentation/public-looking IPs and a transport that asserts it was asked
for the vetted IP and then connects to the local test server instead; everything else is refused before
any connection is made, and those tests inject a transport that fails if it is ever used.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.server
import io
import os
import statistics
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageCms, ImageOps, PngImagePlugin

from langchain_nemoguard.core.errors import (
    ConfigurationError,
    ImageError,
    ImageTooLargeError,
    InvalidInputError,
    UnsafeURLError,
)
from langchain_nemoguard.core.images import (
    ImageOptions,
    PreparedImage,
    aprepare_image,
    default_resolver,
    prepare_image,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)
FAKE_PUBLIC = "93.184.216.34"  # what "public.test" resolves to; never actually contacted

# --- helpers -------------------------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def decode(prepared: PreparedImage) -> Image.Image:
    assert prepared.data is not None
    img = Image.open(io.BytesIO(prepared.data))
    img.load()
    return img


def quadrant_image(size: tuple[int, int]) -> Image.Image:
    """Blue, with the top-left quadrant red: shows where a rotation or flip moved the corner."""
    img = Image.new("RGB", size, BLUE)
    img.paste(RED, (0, 0, size[0] // 2, size[1] // 2))
    return img


def close_to(pixel: object, expected: tuple[int, int, int], tol: int = 40) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True))


def photo_like_jpeg(size: tuple[int, int] = (4000, 3000), seed: int = 7) -> bytes:
    """A camera-like 12 MP JPEG: random low-frequency structure plus per-pixel grain, no repeated blocks.

    Pure white noise at quality 90 is ~11 MB (no real photo looks like that; a phone's 12 MP shot is 3-6 MB)
    and spends most of its decode time in Huffman decoding, which no scaling can skip. This image is ~4 MB,
    like a real photo, and is still far from trivially compressible.
    """
    rng = __import__("random").Random(seed)
    w, h = size
    low = Image.frombytes("RGB", (w // 8, h // 8), rng.randbytes((w // 8) * (h // 8) * 3))
    low = low.resize(size, Image.Resampling.BICUBIC)
    grain = Image.merge("RGB", [Image.effect_noise(size, 12)] * 3)
    return encode(Image.blend(low, grain, 0.25), "JPEG", quality=90)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width`` x ``height``: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def no_network_options(**kw: object) -> ImageOptions:
    """Options whose resolver and transports fail the test if any is used."""

    def resolver(host: str, port: int) -> list[str]:
        raise AssertionError(f"resolver called for {host}:{port}")

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"connection attempted to {request.url}")

    transport = httpx.MockTransport(handler)
    return ImageOptions(resolver=resolver, transport=transport, async_transport=transport, **kw)  # type: ignore[arg-type]


# --- decoding: formats, sizes, modes -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
async def test_each_format_becomes_rgb_jpeg_scaled_to_max_side(fmt: str) -> None:
    src = encode(quadrant_image((1200, 800)), fmt)
    prepared = prepare_image(src)
    assert prepared.mime == "image/jpeg"
    assert (prepared.width, prepared.height) == (896, 597)
    assert prepared.url is None
    assert prepared.digest == hashlib.sha256(prepared.data or b"").hexdigest()
    out = decode(prepared)
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (896, 597))
    assert close_to(out.getpixel((100, 100)), RED)
    assert close_to(out.getpixel((800, 500)), BLUE)
    assert (await aprepare_image(src)).data == prepared.data


def test_portrait_and_tall_images_keep_aspect_ratio() -> None:
    tall = prepare_image(encode(Image.new("RGB", (600, 2400)), "PNG"))
    assert (tall.width, tall.height) == (224, 896)
    thin = prepare_image(encode(Image.new("RGB", (20000, 2)), "PNG"))
    assert (thin.width, thin.height) == (896, 1)  # never rounded down to zero


def test_small_images_are_never_upscaled() -> None:
    prepared = prepare_image(encode(Image.new("RGB", (100, 40), RED), "PNG"))
    assert (prepared.width, prepared.height) == (100, 40)


def test_png_output_and_custom_max_side() -> None:
    prepared = prepare_image(
        encode(quadrant_image((400, 300)), "PNG"), ImageOptions(output_format="PNG", max_side=200)
    )
    assert prepared.mime == "image/png"
    assert prepared.as_url().startswith("data:image/png;base64,")
    out = decode(prepared)
    assert (out.format, out.mode, out.size) == ("PNG", "RGB", (200, 150))


def test_gif_uses_first_frame_only() -> None:
    frames = [Image.new("RGB", (64, 64), RED), Image.new("RGB", (64, 64), BLUE)]
    src = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(src)).n_frames == 2
    out = decode(prepare_image(src))
    assert close_to(out.getpixel((32, 32)), RED)


def test_rgba_is_composited_on_white() -> None:
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (0, 0, 50, 100))
    out = decode(prepare_image(encode(img, "PNG")))
    assert out.mode == "RGB"
    assert close_to(out.getpixel((25, 50)), RED)
    assert close_to(out.getpixel((75, 50)), (255, 255, 255), tol=3)


def test_rgba_downscale_does_not_bleed_hidden_colour() -> None:
    # Fully transparent pixels are black here; a resize that ignored alpha would darken the edge.
    img = Image.new("RGBA", (2000, 2000), (0, 0, 0, 0))
    img.paste((255, 255, 255, 255), (0, 0, 1000, 2000))
    out = decode(prepare_image(encode(img, "PNG"), ImageOptions(output_format="PNG")))
    assert min(out.getpixel((x, 300))[0] for x in range(out.width)) >= 250  # type: ignore[index]


def test_palette_with_transparency_and_la() -> None:
    pal = Image.new("P", (50, 50), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    pal.paste(0, (25, 0, 50, 50))
    pal.info["transparency"] = 0
    out = decode(prepare_image(encode(pal, "PNG", transparency=0)))
    assert close_to(out.getpixel((10, 10)), RED)
    assert close_to(out.getpixel((40, 10)), (255, 255, 255), tol=3)
    la = Image.new("LA", (50, 50), (0, 0))
    out = decode(prepare_image(encode(la, "PNG")))
    assert close_to(out.getpixel((10, 10)), (255, 255, 255), tol=3)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_inputs(fmt: str) -> None:
    img = Image.new("CMYK", (80, 80), (0, 255, 255, 0))  # red in CMYK
    out = decode(prepare_image(encode(img, fmt)))
    assert out.mode == "RGB"
    assert close_to(out.getpixel((40, 40)), RED, tol=50)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(fmt: str) -> None:
    img = Image.new("I;16", (64, 64), 32768)  # mid-grey in 16 bits; clipping would give white
    src = encode(img, fmt)
    assert Image.open(io.BytesIO(src)).mode.startswith("I")
    out = decode(prepare_image(src, ImageOptions(output_format="PNG")))
    assert close_to(out.getpixel((5, 5)), (128, 128, 128), tol=2)


def test_pil_images_of_unusual_modes() -> None:
    for mode, value, expected in [
        ("1", 1, (255, 255, 255)),
        ("L", 100, (100, 100, 100)),
        ("I", 70000, (255, 255, 255)),  # uniform out-of-range 32-bit grey -> stretched to white
        ("F", 0.5, (0, 0, 0)),
        ("RGBA", (0, 0, 255, 255), BLUE),
        ("YCbCr", (76, 85, 255), RED),
    ]:
        img = Image.new(mode, (30, 30), value)  # type: ignore[arg-type]
        out = decode(prepare_image(img, ImageOptions(output_format="PNG")))
        assert close_to(out.getpixel((5, 5)), expected, tol=3), mode


def test_pil_i_mode_gradient_is_stretched() -> None:
    img = Image.new("I", (2, 1))
    img.putpixel((0, 0), -1000)
    img.putpixel((1, 0), 100000)
    out = decode(prepare_image(img, ImageOptions(output_format="PNG")))
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((1, 0)) == (255, 255, 255)


def test_caller_pil_image_is_not_modified() -> None:
    img = quadrant_image((2000, 1000))
    img.info["comment"] = b"keep me"
    before = img.tobytes()
    prepared = prepare_image(img)
    assert (prepared.width, prepared.height) == (896, 448)
    assert img.size == (2000, 1000)
    assert img.tobytes() == before
    assert img.info["comment"] == b"keep me"


# --- orientation and metadata --------------------------------------------------------------------------------


def jpeg_with_orientation(img: Image.Image, orientation: int, **params: object) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", exif=exif.tobytes(), quality=95, **params)


def test_exif_orientation_6_rotates() -> None:
    src = jpeg_with_orientation(quadrant_image((400, 200)), 6)
    out = decode(prepare_image(src))
    # Orientation 6: the stored image must be turned 90 degrees clockwise; the red top-left corner moves
    # to the top-right and width/height swap.
    assert out.size == (200, 400)
    assert close_to(out.getpixel((190, 10)), RED)
    assert close_to(out.getpixel((10, 10)), BLUE)
    assert close_to(out.getpixel((190, 390)), BLUE)


def test_orientation_also_applied_on_the_draft_path() -> None:
    src = jpeg_with_orientation(quadrant_image((2000, 1000)), 6)
    prepared = prepare_image(src)
    assert (prepared.width, prepared.height) == (448, 896)
    out = decode(prepared)
    assert close_to(out.getpixel((440, 10)), RED)
    assert close_to(out.getpixel((10, 10)), BLUE)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_imageops_exif_transpose(orientation: int) -> None:
    src = jpeg_with_orientation(quadrant_image((300, 200)), orientation)
    opts = ImageOptions(output_format="PNG")
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(src)))
    assert prepare_image(src, opts).data == prepare_image(reference, opts).data


def test_metadata_is_dropped_from_jpeg() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCamCorp"  # Make
    exif[0x0112] = 1
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = encode(
        quadrant_image((300, 200)), "JPEG", exif=exif.tobytes(), icc_profile=icc, comment=b"hi there"
    )
    src_img = Image.open(io.BytesIO(src))
    assert "exif" in src_img.info
    assert "icc_profile" in src_img.info
    assert "comment" in src_img.info
    prepared = prepare_image(src)
    assert prepared.data is not None
    out = decode(prepared)
    assert not {"exif", "icc_profile", "comment", "xmp"} & set(out.info)
    assert len(out.getexif()) == 0
    for marker in (b"Exif", b"SecretCamCorp", b"ICC_PROFILE", b"hi there"):
        assert marker not in prepared.data


def test_metadata_is_dropped_from_png_even_when_not_resized() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Secret")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>GPS 51.5,-0.1</x:xmpmeta>")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "SecretCamCorp"
    src = encode(Image.new("RGB", (64, 64), RED), "PNG", pnginfo=info, icc_profile=icc, exif=exif.tobytes())
    prepared = prepare_image(src, ImageOptions(output_format="PNG"))
    assert prepared.data is not None
    out = decode(prepared)
    assert not {"exif", "icc_profile", "Author", "XML:com.adobe.xmp"} & set(out.info)
    for marker in (b"Jane Secret", b"xmpmeta", b"SecretCamCorp", b"iCCP", b"eXIf"):
        assert marker not in prepared.data


# --- hostile and broken input --------------------------------------------------------------------------------


def test_decompression_bomb_rejected_from_header_quickly() -> None:
    bomb = png_declaring(100_000, 100_000)
    assert len(bomb) < 100
    limit_before = Image.MAX_IMAGE_PIXELS
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError):
        prepare_image(bomb)
    assert time.perf_counter() - start < 0.5
    assert limit_before == Image.MAX_IMAGE_PIXELS  # the global Pillow limit is not ours to change


def test_pixel_limit_is_ours_not_pillows() -> None:
    # 56 MP: under Pillow's own bomb threshold (~89 MP) but over our 50 MP default.
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="50,000,000-pixel limit"):
        prepare_image(png_declaring(8000, 7000))
    assert time.perf_counter() - start < 0.5
    # 100 MP: in the band where Pillow only warns. Made an error here (as under `python -W error`) to show
    # that the warning, raised, also becomes ImageTooLargeError; our own check refuses it either way.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLargeError, match="decompression bomb"):
            prepare_image(png_declaring(10_000, 10_000))
    with pytest.raises(ImageTooLargeError), pytest.warns(Image.DecompressionBombWarning):
        prepare_image(png_declaring(10_000, 10_000))
    with pytest.raises(ImageTooLargeError, match="pixel limit"):
        prepare_image(encode(Image.new("RGB", (100, 100)), "PNG"), ImageOptions(max_pixels=9_999))
    with pytest.raises(ImageTooLargeError):
        prepare_image(Image.new("RGB", (100, 100)), ImageOptions(max_pixels=9_999))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_image_is_an_image_error(fmt: str) -> None:
    src = encode(Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3)), fmt)
    with pytest.raises(ImageError) as info:
        prepare_image(src[: len(src) // 2])
    assert not isinstance(info.value, ImageTooLargeError)
    assert isinstance(info.value, InvalidInputError)
    assert isinstance(info.value, ValueError)


def test_garbage_and_unsupported_formats_are_refused_without_dumping_bytes() -> None:
    garbage = b"\x13\x37GARBAGE-MARKER" * 50
    with pytest.raises(ImageError, match="not a supported image") as info:
        prepare_image(garbage)
    assert "GARBAGE-MARKER" not in str(info.value)
    for fmt in ("ICO", "PPM", "PCX"):
        with pytest.raises(ImageError, match="not a supported image"):
            prepare_image(encode(Image.new("RGB", (16, 16)), fmt))
    with pytest.raises(ImageError, match="empty"):
        prepare_image(b"")
    with pytest.raises(ImageError, match="unsupported image source type"):
        prepare_image(12345)  # type: ignore[arg-type]


def test_byte_limit_checked_before_decoding(tmp_path: Path) -> None:
    src = encode(Image.new("RGB", (64, 64)), "PNG")
    opts = ImageOptions(max_bytes=len(src) - 1)
    with pytest.raises(ImageTooLargeError, match="byte limit"):
        prepare_image(src, opts)
    path = tmp_path / "a.png"
    path.write_bytes(src)
    with pytest.raises(ImageTooLargeError):
        prepare_image(path, opts)
    with pytest.raises(ImageTooLargeError):
        prepare_image("data:image/png;base64," + "A" * 4000, ImageOptions(max_bytes=1000))
    assert prepare_image(src, ImageOptions(max_bytes=len(src))).width == 64


def test_twelve_megapixel_jpeg_is_made_model_ready_without_a_full_decode() -> None:
    """A 12 MP JPEG is made model-ready at a fraction of what decoding it whole costs (JPEG draft mode).

    Measured against a baseline in the same run on the same thread (a full decode and resize of the same
    bytes), so the assertion holds on a slow or busy CI machine as on a fast one; the absolute figure (about
    50 ms on one core, against 182 ms for the full decode) is ``benchmarks/bench_images.py``'s to report.
    """
    src = photo_like_jpeg()
    assert Image.open(io.BytesIO(src)).size == (4000, 3000)
    assert len(src) > 2_000_000  # not trivially compressible

    def full_decode() -> None:
        with Image.open(io.BytesIO(src)) as im:
            im.convert("RGB").resize((896, 672))

    ours, baseline = [], []
    for _ in range(5):
        start = time.thread_time()
        prepared = prepare_image(src)
        ours.append(time.thread_time() - start)
        start = time.thread_time()
        full_decode()
        baseline.append(time.thread_time() - start)
    assert (prepared.width, prepared.height) == (896, 672)
    ours_ms, base_ms = statistics.median(ours) * 1000, statistics.median(baseline) * 1000
    assert ours_ms < 0.6 * base_ms, f"12 MP JPEG took {ours_ms:.1f} ms CPU, a full decode {base_ms:.1f} ms"


# --- sources: data URLs, paths, buffers ----------------------------------------------------------------------


def test_data_urls() -> None:
    png = encode(Image.new("RGB", (40, 30), RED), "PNG")
    b64 = base64.b64encode(png).decode()
    expected = prepare_image(png).data
    assert prepare_image(f"data:image/png;base64,{b64}").data == expected
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    assert prepare_image(f"DATA:image/png;BASE64,{wrapped}").data == expected
    percent = "".join(f"%{b:02X}" for b in png)
    assert prepare_image(f"data:image/png,{percent}").data == expected
    # The declared type is checked, the real format is whatever the bytes say.
    assert prepare_image(f"data:image/jpeg;base64,{b64}").data == expected


@pytest.mark.parametrize(
    "url",
    [
        "data:text/html;base64,PGh0bWw+",
        "data:;base64,iVBORw0KGgo=",
        "data:,hello",
        "data:application/pdf;base64,JVBE",
    ],
)
def test_data_url_with_non_image_mime_is_refused(url: str) -> None:
    with pytest.raises(ImageError, match="not an image type"):
        prepare_image(url)


def test_data_url_malformed() -> None:
    with pytest.raises(ImageError, match="invalid base64"):
        prepare_image("data:image/png;base64,@@@not-base64@@@")
    with pytest.raises(ImageError, match="malformed data: URL"):
        prepare_image("data:image/png;base64")


def test_file_paths(tmp_path: Path) -> None:
    png = encode(Image.new("RGB", (40, 30), RED), "PNG")
    path = tmp_path / "pic.png"
    path.write_bytes(png)
    expected = prepare_image(png).data
    assert prepare_image(path).data == expected
    assert prepare_image(str(path)).data == expected
    with pytest.raises(ImageError, match="not found"):
        prepare_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="directory"):
        prepare_image(tmp_path)
    with pytest.raises(ImageError, match="local image files are off"):
        prepare_image(path, ImageOptions(allow_local_files=False))


def test_buffer_types_are_equivalent() -> None:
    png = encode(quadrant_image((50, 40)), "PNG")
    expected = prepare_image(png).data
    assert prepare_image(bytearray(png)).data == expected
    assert prepare_image(memoryview(png)).data == expected
    assert prepare_image(Image.open(io.BytesIO(png))).data == expected


async def test_async_and_sync_give_identical_bytes(tmp_path: Path) -> None:
    jpeg = jpeg_with_orientation(quadrant_image((1600, 1200)), 6)
    path = tmp_path / "pic.jpg"
    path.write_bytes(jpeg)
    sources: list[object] = [
        jpeg,
        path,
        "data:image/jpeg;base64," + base64.b64encode(jpeg).decode(),
        quadrant_image((1000, 700)),
    ]
    for source in sources:
        sync = prepare_image(source)  # type: ignore[arg-type]
        asynchronous = await aprepare_image(source)  # type: ignore[arg-type]
        assert sync == asynchronous
    with pytest.raises(ImageTooLargeError):
        await aprepare_image(png_declaring(100_000, 100_000))


def test_prepared_image_repr_and_options() -> None:
    prepared = prepare_image(encode(Image.new("RGB", (8, 8)), "PNG"))
    text = repr(prepared)
    assert "data=" not in text
    assert prepared.digest in text
    assert ImageOptions(resolver=lambda h, p: []) == ImageOptions()  # plumbing is not part of equality
    assert hash(ImageOptions(resolver=lambda h, p: [])) == hash(ImageOptions())
    for bad in (
        {"max_side": 0},
        {"max_pixels": 0},
        {"max_bytes": 0},
        {"jpeg_quality": 0},
        {"output_format": "GIF"},
        {"fetch_timeout": 0},
        {"max_redirects": -1},
    ):
        with pytest.raises(ConfigurationError):
            ImageOptions(**bad)  # type: ignore[arg-type]


# --- remote URLs: off, pass-through --------------------------------------------------------------------------


async def test_remote_urls_refused_when_both_options_off() -> None:
    message = "remote image URLs are off; pass pass_remote_urls=True or fetch_remote_images=True"
    with pytest.raises(UnsafeURLError) as info:
        prepare_image("https://example.com/cat.png", no_network_options())
    assert str(info.value) == message
    with pytest.raises(UnsafeURLError):
        await aprepare_image("http://example.com/cat.png", no_network_options())


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/1"])
def test_other_url_schemes_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="scheme"):
        prepare_image(url, no_network_options(fetch_remote_images=True, pass_remote_urls=True))


async def test_pass_through_keeps_url_and_does_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_socket(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used during pass-through")

    monkeypatch.setattr("socket.getaddrinfo", no_socket)
    monkeypatch.setattr("socket.create_connection", no_socket)
    url = "https://cdn.example.com/Some%20Cat.png?sig=abc#frag"
    opts = no_network_options(pass_remote_urls=True)
    prepared = prepare_image(url, opts)
    assert prepared == PreparedImage(
        data=None, mime="", width=0, height=0, url=url, digest=hashlib.sha256(url.encode()).hexdigest()
    )
    assert prepared.as_url() == url
    assert await aprepare_image(url, opts) == prepared


@pytest.mark.parametrize("url", ["http://127.0.0.1/a.png", "http://[::1]/a.png", "http://localhost/a.png"])
def test_pass_through_refuses_literal_loopback(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        prepare_image(url, no_network_options(pass_remote_urls=True))


# --- remote URLs: SSRF refusals before any connection --------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata service
        "0.0.0.0",
        "100.64.0.1",  # shared address space (carrier-grade NAT)
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[::1]",
        "[::]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[fe80::1]",
        "[ff02::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:169.254.169.254]",
        "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
        "[2002:a00:1::]",  # 6to4 of 10.0.0.1
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
        "[64:ff9b:1::1]",  # local-use NAT64
        "[fec0::1]",  # deprecated site-local
        "192.0.0.8",
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f.1",  # 127.0.0.1 in legacy hex/short form
        "127.1",
        "017700000001",  # octal
    ],
)
async def test_private_literal_addresses_refused(host: str) -> None:
    opts = no_network_options(fetch_remote_images=True)
    with pytest.raises(UnsafeURLError, match="refusing to fetch"):
        prepare_image(f"http://{host}/a.png", opts)
    with pytest.raises(UnsafeURLError, match="refusing to fetch"):
        await aprepare_image(f"https://{host}:8443/a.png", opts)


def fixed_resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"test resolver has no entry for {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["::1"], [FAKE_PUBLIC, "10.1.2.3"], ["169.254.169.254"], ["::ffff:10.0.0.1"], []],
)
async def test_names_resolving_to_private_addresses_refused(addresses: list[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"connection attempted to {request.url}")

    transport = httpx.MockTransport(handler)
    opts = ImageOptions(
        fetch_remote_images=True,
        resolver=fixed_resolver({"evil.test": addresses}),
        transport=transport,
        async_transport=transport,
    )
    with pytest.raises(UnsafeURLError):
        prepare_image("http://evil.test/a.png", opts)
    with pytest.raises(UnsafeURLError):
        await aprepare_image("https://evil.test/a.png", opts)


def test_unresolvable_name_and_bad_urls() -> None:
    no_io = no_network_options()
    opts = ImageOptions(fetch_remote_images=True, resolver=fixed_resolver({}), transport=no_io.transport)
    with pytest.raises(UnsafeURLError, match="cannot resolve"):
        prepare_image("http://nowhere.test/a.png", opts)
    with pytest.raises(UnsafeURLError, match="credentials"):
        prepare_image("http://user:pw@public.test/a.png", opts)


def test_default_resolver_numeric_host() -> None:
    assert default_resolver("127.0.0.1", 80) == ["127.0.0.1"]  # AI_NUMERICHOST path: no DNS query


# --- remote URLs: fetching, against a local server only ------------------------------------------------------


@dataclass
class Server:
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)


PNG_BODY = encode(quadrant_image((1200, 900)), "PNG")


def make_handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)  # the client may hang up on purpose (over a limit)

        def do_GET(self) -> None:
            server.requests.append((self.path, self.headers.get("Host", "")))
            path = self.path.split("?")[0]
            here = f"http://127.0.0.1:{server.port}"
            public = f"http://public.test:{server.port}"
            routes: dict[str, Callable[[], None]] = {
                "/img.png": lambda: self.send(
                    200, {"Content-Type": "image/png", "Content-Length": str(len(PNG_BODY))}, PNG_BODY
                ),
                "/octet": lambda: self.send(200, {"Content-Type": "application/octet-stream"}, PNG_BODY),
                "/html": lambda: self.send(200, {"Content-Type": "text/html"}, b"<html>hi</html>"),
                "/missing": lambda: self.send(404, {"Content-Type": "text/plain"}, b"nope"),
                "/declared-huge": lambda: self.send(
                    200, {"Content-Type": "image/png", "Content-Length": str(10**9)}, PNG_BODY
                ),
                # No Content-Length (HTTP/1.0, read to EOF): only the streamed count can stop it.
                "/stream-huge": lambda: self.send(200, {"Content-Type": "image/png"}, PNG_BODY * 20),
                "/redir-loopback": lambda: self.send(302, {"Location": f"{here}/img.png"}),
                "/redir-evil": lambda: self.send(
                    302, {"Location": f"http://evil.test:{server.port}/img.png"}
                ),
                "/redir-ftp": lambda: self.send(301, {"Location": "ftp://public.test/img.png"}),
                "/redir-public": lambda: self.send(307, {"Location": f"{public}/img.png"}),
                "/redir-relative": lambda: self.send(303, {"Location": "/img.png"}),
                "/redir-no-location": lambda: self.send(302, {}),
                "/loop": lambda: self.send(302, {"Location": "/loop"}),
                "/slow": self.slow,
            }
            routes.get(path, lambda: self.send(404, {}))()

        def slow(self) -> None:
            time.sleep(1.5)
            self.send(200, {"Content-Type": "image/png"}, PNG_BODY)

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    state = Server(port=httpd.server_address[1])
    httpd.RequestHandlerClass = make_handler(state)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def to_loopback(request: httpx.Request) -> httpx.Request:
    """A copy of ``request`` aimed at 127.0.0.1 (same port, headers and extensions); the original, which
    the tests inspect, keeps the address the code under test chose."""
    return httpx.Request(
        request.method,
        request.url.copy_with(host="127.0.0.1"),
        headers=request.headers,
        stream=request.stream,
        extensions=request.extensions,
    )


class ToLoopback(httpx.HTTPTransport):
    """Asserts each request targets the vetted public IP, then sends it to the local server instead."""

    def __init__(self, seen: list[httpx.Request]) -> None:
        super().__init__()
        self.seen = seen

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.host != FAKE_PUBLIC:
            raise AssertionError(f"connection to an unvetted address: {request.url.host}")
        return super().handle_request(to_loopback(request))


class AsyncToLoopback(httpx.AsyncHTTPTransport):
    def __init__(self, seen: list[httpx.Request]) -> None:
        super().__init__()
        self.seen = seen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.host != FAKE_PUBLIC:
            raise AssertionError(f"connection to an unvetted address: {request.url.host}")
        return await super().handle_async_request(to_loopback(request))


@pytest.fixture
def seen() -> list[httpx.Request]:
    return []


@pytest.fixture
def fetch_opts(seen: list[httpx.Request]) -> ImageOptions:
    return ImageOptions(
        fetch_remote_images=True,
        resolver=fixed_resolver({"public.test": [FAKE_PUBLIC], "evil.test": ["127.0.0.1"]}),
        transport=ToLoopback(seen),
        async_transport=AsyncToLoopback(seen),
        fetch_timeout=1.0,
    )


async def test_fetch_connects_to_vetted_ip_with_host_header(
    server: Server, fetch_opts: ImageOptions, seen: list[httpx.Request]
) -> None:
    url = f"http://public.test:{server.port}/img.png?x=1"
    sync = prepare_image(url, fetch_opts)
    asynchronous = await aprepare_image(url, fetch_opts)
    assert sync == asynchronous == prepare_image(PNG_BODY)
    assert (sync.width, sync.height) == (896, 672)
    assert [r.url.host for r in seen] == [FAKE_PUBLIC, FAKE_PUBLIC]
    assert all(r.headers["host"] == f"public.test:{server.port}" for r in seen)
    assert all("sni_hostname" not in r.extensions for r in seen)  # plain http: no TLS
    assert server.requests[-2:] == [("/img.png?x=1", f"public.test:{server.port}")] * 2


async def test_fetch_wins_over_pass_through(server: Server, fetch_opts: ImageOptions) -> None:
    opts = ImageOptions(
        fetch_remote_images=True,
        pass_remote_urls=True,
        resolver=fetch_opts.resolver,
        transport=fetch_opts.transport,
        async_transport=fetch_opts.async_transport,
    )
    prepared = prepare_image(f"http://public.test:{server.port}/octet", opts)
    assert prepared.url is None
    assert prepared.data == prepare_image(PNG_BODY).data


async def test_redirect_to_loopback_is_refused_before_connecting(
    server: Server, fetch_opts: ImageOptions, seen: list[httpx.Request]
) -> None:
    for path in ("/redir-loopback", "/redir-evil"):
        before = len(server.requests)
        with pytest.raises(UnsafeURLError, match="refusing to fetch"):
            prepare_image(f"http://public.test:{server.port}{path}", fetch_opts)
        with pytest.raises(UnsafeURLError, match="refusing to fetch"):
            await aprepare_image(f"http://public.test:{server.port}{path}", fetch_opts)
        # Only the redirecting request reached the server, never the redirect target.
        assert [p for p, _ in server.requests[before:]] == [path, path]
    assert all(r.url.host == FAKE_PUBLIC for r in seen)
    with pytest.raises(UnsafeURLError, match="scheme"):
        prepare_image(f"http://public.test:{server.port}/redir-ftp", fetch_opts)


async def test_redirects_to_public_hosts_are_followed_and_revalidated(
    server: Server, fetch_opts: ImageOptions, seen: list[httpx.Request]
) -> None:
    expected = prepare_image(PNG_BODY).data
    for path in ("/redir-public", "/redir-relative"):
        assert prepare_image(f"http://public.test:{server.port}{path}", fetch_opts).data == expected
        assert (await aprepare_image(f"http://public.test:{server.port}{path}", fetch_opts)).data == expected
    assert len(seen) == 8
    assert all(r.url.host == FAKE_PUBLIC for r in seen)


async def test_too_many_redirects(server: Server, fetch_opts: ImageOptions) -> None:
    before = len(server.requests)
    with pytest.raises(ImageError, match="more than 3 redirects"):
        prepare_image(f"http://public.test:{server.port}/loop", fetch_opts)
    assert len(server.requests) - before == 4  # the first request plus max_redirects follow-ups
    with pytest.raises(ImageError, match="more than 3 redirects"):
        await aprepare_image(f"http://public.test:{server.port}/loop", fetch_opts)
    with pytest.raises(ImageError, match="redirect without a Location"):
        prepare_image(f"http://public.test:{server.port}/redir-no-location", fetch_opts)


@pytest.mark.parametrize(
    ("path", "error", "match"),
    [
        ("/missing", ImageError, "HTTP 404"),
        ("/html", ImageError, "not an image"),
        ("/declared-huge", ImageTooLargeError, "1,000,000,000 bytes"),
        ("/stream-huge", ImageTooLargeError, "byte limit"),
    ],
)
async def test_bad_responses(
    server: Server, fetch_opts: ImageOptions, path: str, error: type[Exception], match: str
) -> None:
    opts = dataclasses.replace(fetch_opts, max_bytes=len(PNG_BODY) * 3)  # /stream-huge sends 20 copies
    url = f"http://public.test:{server.port}{path}?token=s3cr3t"
    with pytest.raises(error, match=match) as info:
        prepare_image(url, opts)
    assert "s3cr3t" not in str(info.value)  # query strings (signed URLs) stay out of messages
    with pytest.raises(error, match=match):
        await aprepare_image(url, opts)


async def test_fetch_timeout_is_total(server: Server, seen: list[httpx.Request]) -> None:
    opts = ImageOptions(
        fetch_remote_images=True,
        resolver=fixed_resolver({"public.test": [FAKE_PUBLIC]}),
        transport=ToLoopback(seen),
        async_transport=AsyncToLoopback(seen),
        fetch_timeout=0.3,
    )
    url = f"http://public.test:{server.port}/slow"  # the server waits 1.5 s before answering
    start = time.perf_counter()
    with pytest.raises(ImageError, match="timed out"):
        prepare_image(url, opts)
    assert time.perf_counter() - start < 1.0
    start = time.perf_counter()
    with pytest.raises(ImageError, match="timed out"):
        await aprepare_image(url, opts)
    assert time.perf_counter() - start < 1.0


async def test_dns_rebinding_cannot_redirect_the_connection(
    server: Server, seen: list[httpx.Request]
) -> None:
    answers = [[FAKE_PUBLIC], ["127.0.0.1"]]  # a rebinding name: public when checked, loopback after

    def rebinding(host: str, port: int) -> list[str]:
        return answers.pop(0)

    opts = ImageOptions(fetch_remote_images=True, resolver=rebinding, transport=ToLoopback(seen))
    assert prepare_image(f"http://rebind.test:{server.port}/img.png", opts).width == 896
    assert answers == [["127.0.0.1"]]  # resolved once; the connection used the vetted address
    assert seen[-1].url.host == FAKE_PUBLIC


@pytest.mark.parametrize(
    ("resolved", "connected"),
    [
        ("::ffff:93.184.216.34", FAKE_PUBLIC),  # IPv4-mapped: connect over plain IPv4
        ("64:ff9b::5db8:d822", "64:ff9b::5db8:d822"),  # NAT64 of a public address (DNS64 networks)
        ("2606:2800:220:1:248:1893:25c8:1946", "2606:2800:220:1:248:1893:25c8:1946"),
    ],
)
async def test_public_addresses_in_ipv6_forms_are_allowed(resolved: str, connected: str) -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:  # no socket: MockTransport answers in-process
        hosts.append(request.url.host)
        return httpx.Response(200, headers={"Content-Type": "image/png"}, content=PNG_BODY)

    transport = httpx.MockTransport(handler)
    opts = ImageOptions(
        fetch_remote_images=True,
        resolver=fixed_resolver({"v6.test": [resolved]}),
        transport=transport,
        async_transport=transport,
    )
    assert prepare_image("http://v6.test/a.png", opts) == await aprepare_image("http://v6.test/a.png", opts)
    assert hosts == [connected, connected]


async def test_https_pins_ip_and_keeps_sni_and_host() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, headers={"Content-Type": "image/png"}, content=PNG_BODY)

    transport = httpx.MockTransport(handler)
    opts = ImageOptions(
        fetch_remote_images=True,
        resolver=fixed_resolver({"public.test": [FAKE_PUBLIC]}),
        transport=transport,
        async_transport=transport,
    )
    sync = prepare_image("https://public.test/cat.png", opts)
    assert sync == await aprepare_image("https://public.test/cat.png", opts)
    for request in requests:
        assert (request.url.scheme, request.url.host, request.url.path) == ("https", FAKE_PUBLIC, "/cat.png")
        assert request.headers["host"] == "public.test"
        assert request.extensions["sni_hostname"] == "public.test"
        assert request.headers["accept-encoding"] == "identity"

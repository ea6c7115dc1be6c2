"""What an uploaded image is, read from its first bytes and header, before any decoding.

The gateway runs this on every upload so that bad input is refused with a clear reason
before it reaches a queue; the detector runs it again before it decodes.
"""

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from facerec_common.errors import (
    EmptyImage,
    ImageTooLarge,
    ImageUndecodable,
    TooManyPixels,
    UnsupportedImageType,
)
from facerec_common.settings import ImageLimits

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")

# (magic bytes, offset) -> Pillow format name; WebP needs both RIFF and WEBP.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"WEBP", 8, "WEBP"),
    (b"BM", 0, "BMP"),
)
_KNOWN_UNSUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def sniff_format(data: bytes) -> str:
    """The image format from its magic bytes; refuses anything but the supported ones."""
    for magic, offset, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (name != "WEBP" or data[:4] == b"RIFF"):
            return name
    for magic, name in _KNOWN_UNSUPPORTED:
        if data.startswith(magic):
            raise UnsupportedImageType(
                f"{name} images are not supported; send one of {', '.join(SUPPORTED_FORMATS)}"
            )
    raise UnsupportedImageType(
        f"the data is not a supported image; send one of {', '.join(SUPPORTED_FORMATS)}"
    )


def inspect_image(data: bytes, limits: ImageLimits) -> ImageInfo:
    """Check size, type and pixel count from the header; raise a domain error if refused."""
    if not data:
        raise EmptyImage("the image is empty (0 bytes)")
    if len(data) > limits.max_image_bytes:
        raise ImageTooLarge(
            f"the image has {len(data)} bytes; the limit is {limits.max_image_bytes} bytes"
        )
    fmt = sniff_format(data)
    try:
        # Image.open reads only the header; no pixel is decoded here.
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fired first (over twice its default pixel limit).
        raise TooManyPixels(f"the image has too many pixels: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageUndecodable(f"the {fmt} header cannot be read: {exc}") from exc
    if width <= 0 or height <= 0:
        raise ImageUndecodable(f"the {fmt} header gives an empty size {width}x{height}")
    if width * height > limits.max_image_pixels:
        raise TooManyPixels(
            f"the image is {width}x{height} = {width * height} pixels; "
            f"the limit is {limits.max_image_pixels} pixels"
        )
    return ImageInfo(format=fmt, width=width, height=height)

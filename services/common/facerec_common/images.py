"""What an uploaded image is, read from its first bytes and header, before any decoding.

The gateway runs this on every upload so that bad input is refused with a clear reason
before it reaches a queue; the detector runs it again before it decodes. Nothing here
decodes a pixel, and nothing here needs a codec library: HEIF and AVIF headers are read by
the small box parser below, so the gateway can check their pixel count without libheif.
"""

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, TiffImagePlugin, UnidentifiedImageError

from facerec_common.errors import (
    EmptyImage,
    ImageTooLarge,
    ImageUndecodable,
    TooManyPixels,
    UnsupportedImageType,
)
from facerec_common.settings import ImageLimits

# Pillow's format names, in the order the README's table and the 415 detail list them.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "HEIF", "AVIF")
# What a person calls them, and what is read of the files that hold several images.
FORMAT_NAMES = {
    "JPEG": "JPEG",
    "PNG": "PNG",
    "WEBP": "WebP",
    "BMP": "BMP",
    "GIF": "GIF (first frame)",
    "TIFF": "TIFF (first page)",
    "HEIF": "HEIC/HEIF",
    "AVIF": "AVIF",
}
ACCEPTED = ", ".join(FORMAT_NAMES[f] for f in SUPPORTED_FORMATS)

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"BM", 0, "BMP"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"II+\x00", 0, "TIFF"),  # BigTIFF
    (b"MM\x00+", 0, "TIFF"),
)
_KNOWN_UNSUPPORTED: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)
# ISO base media file brands (the "ftyp" box). AVIF first: an AVIF file often also names
# the generic HEIF brands "mif1" and "miaf".
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"heif"}
)
# TIFF tags of camera RAW files, which hold a small preview in the first page: decoding
# that page would answer about the preview, not the photo.
_DNG_VERSION = 50706
_MAKE = 271


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def unsupported(what: str) -> UnsupportedImageType:
    return UnsupportedImageType(f"{what} are not supported; send one of {ACCEPTED}")


def sniff_format(data: bytes) -> str:
    """The image format from its magic bytes; refuses anything but the supported ones."""
    for magic, offset, name in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        return _isobmff_format(data)
    for magic, name in _KNOWN_UNSUPPORTED:
        if data.startswith(magic):
            raise unsupported(f"{name} images")
    raise UnsupportedImageType(f"the data is not a supported image; send one of {ACCEPTED}")


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
        if fmt in ("HEIF", "AVIF"):
            width, height = heif_size(data)
        elif fmt == "TIFF":
            width, height = _tiff_size(data)
        else:
            width, height = _pillow_size(data, fmt)
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fired first (over twice its default pixel limit).
        raise TooManyPixels(f"the image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        # Its message names only an internal buffer.
        raise ImageUndecodable(f"the {fmt} header cannot be read") from exc
    except (
        OSError,
        SyntaxError,
        ValueError,
        IndexError,
        struct.error,
    ) as exc:
        raise ImageUndecodable(f"the {fmt} header cannot be read: {exc}") from exc
    if width <= 0 or height <= 0:
        raise ImageUndecodable(f"the {fmt} header gives an empty size {width}x{height}")
    if width * height > limits.max_image_pixels:
        raise TooManyPixels(
            f"the image is {width}x{height} = {width * height} pixels; "
            f"the limit is {limits.max_image_pixels} pixels"
        )
    return ImageInfo(format=fmt, width=width, height=height)


def _pillow_size(data: bytes, fmt: str) -> tuple[int, int]:
    # Image.open reads only the header; no pixel is decoded here.
    with Image.open(io.BytesIO(data), formats=[fmt]) as image:
        width, height = image.size
    return width, height


def _tiff_size(data: bytes) -> tuple[int, int]:
    """The first page's size from its directory. Read with Pillow's directory parser rather
    than Image.open, which refuses sample layouts it cannot decode itself (float colour,
    for one) that the detector decodes with another library."""
    big = data[2:4] in (b"+\x00", b"\x00+")
    header = TiffImagePlugin.ImageFileDirectory_v2(data[: 16 if big else 8])
    fp = io.BytesIO(data)
    fp.seek(header.next)
    header.load(fp)
    if _DNG_VERSION in header or data[8:10] == b"CR":
        raise unsupported("camera RAW files (DNG, CR2)")
    make = header.get(_MAKE)
    if isinstance(make, str) and make.upper().startswith("NIKON") and 330 in header:
        # NEF: a TIFF whose first page is a preview and whose sub-IFDs hold the RAW data.
        raise unsupported("camera RAW files (NEF)")
    width, height = header.get(256), header.get(257)
    if not isinstance(width, int) or not isinstance(height, int):
        raise ValueError("the first page has no image width or length")
    return width, height


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, content start, end) of each ISO base media box between start and end."""
    while start < end:
        if start + 8 > end:
            raise ValueError(f"a box header at byte {start} is cut off")
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            if start + 16 > end:
                raise ValueError(f"a box header at byte {start} is cut off")
            (size,) = struct.unpack_from(">Q", data, start + 8)
            header = 16
        elif size == 0:
            size = end - start  # "to the end of the file"
        if size < header or start + size > end:
            raise ValueError(f"the {kind!r} box at byte {start} claims {size} bytes")
        yield kind, start + header, start + size
        start += size


def _brands(data: bytes) -> set[bytes]:
    (size,) = struct.unpack_from(">I", data, 0)
    end = min(size, len(data))
    brands = {data[8:12]}
    brands.update(data[i : i + 4] for i in range(16, end - 3, 4))
    return brands


def _isobmff_format(data: bytes) -> str:
    brands = _brands(data)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    raise unsupported("video and other ISO media files")


def heif_size(data: bytes) -> tuple[int, int]:
    """Width and height of the primary image of a HEIF or AVIF file, from its "ispe"
    (image spatial extents) property. A grid image (a large photo cut into tiles) carries
    the size of the whole picture there too."""
    meta = next(((s, e) for kind, s, e in _boxes(data, 0, len(data)) if kind == b"meta"), None)
    if meta is None:
        raise ValueError("no 'meta' box")
    primary: int | None = None
    properties: list[tuple[bytes, int, int]] = []
    associations: dict[int, list[int]] = {}
    for kind, start, end in _boxes(data, meta[0] + 4, meta[1]):  # meta is a full box
        if kind == b"pitm":
            version = data[start]
            (primary,) = struct.unpack_from(">H" if version == 0 else ">I", data, start + 4)
        elif kind == b"iprp":
            for sub, s, e in _boxes(data, start, end):
                if sub == b"ipco":
                    properties = list(_boxes(data, s, e))
                elif sub == b"ipma":
                    associations.update(_associations(data, s, e))
    if primary is None:
        raise ValueError("no primary item ('pitm')")
    size: tuple[int, int] | None = None
    turned = False
    for index in associations.get(primary, []):
        if not 1 <= index <= len(properties):
            raise ValueError(f"the primary item names property {index}, which does not exist")
        kind, start, end = properties[index - 1]
        if kind == b"ispe" and size is None:
            if end - start < 12:
                raise ValueError("the 'ispe' property is cut off")
            size = struct.unpack_from(">II", data, start + 4)
        elif kind == b"clap" and end - start >= 16:
            # Clean aperture: the coded picture (whole codec blocks) cropped to the photo.
            wn, wd, hn, hd = struct.unpack_from(">IIII", data, start)
            if wd and hd and size is not None:
                size = (min(size[0], wn // wd), min(size[1], hn // hd))
        elif kind == b"irot" and end - start >= 1:
            turned = data[start] & 3 in (1, 3)  # a quarter turn swaps width and height
    if size is None:
        raise ValueError("the primary item has no size ('ispe')")
    width, height = size
    return (int(height), int(width)) if turned else (int(width), int(height))


def _associations(data: bytes, start: int, end: int) -> Iterator[tuple[int, list[int]]]:
    version = data[start]
    wide = data[start + 3] & 1  # flags: 15-bit property indices instead of 7-bit
    (count,) = struct.unpack_from(">I", data, start + 4)
    pos = start + 8
    for _ in range(count):
        if version < 1:
            (item,) = struct.unpack_from(">H", data, pos)
            pos += 2
        else:
            (item,) = struct.unpack_from(">I", data, pos)
            pos += 4
        n = data[pos]
        pos += 1
        indices = []
        for _ in range(n):
            if wide:
                (value,) = struct.unpack_from(">H", data, pos)
                indices.append(value & 0x7FFF)
                pos += 2
            else:
                indices.append(data[pos] & 0x7F)
                pos += 1
        if pos > end:
            raise ValueError("the 'ipma' box is cut off")
        yield item, indices

"""One photo saved in every accepted format and bit depth, and malformed files of each
format, all made here from the photo's pixels (tests and bench/formats.py use them)."""

import io
import struct
import zlib

import cv2
import numpy as np
import numpy.typing as npt
import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()

# name -> file suffix; the CLI and the server decide the type by content, the suffix only
# helps a person.
SUFFIX = {
    "jpeg": "jpg",
    "jpeg-grey": "jpg",
    "png8": "png",
    "png16": "png",
    "png16-grey": "png",
    "tiff8": "tif",
    "tiff16": "tif",
    "tiff16-grey": "tif",
    "tiff-float": "tif",
    "heic": "heic",
    "avif": "avif",
    "webp": "webp",
    "gif": "gif",
    "bmp": "bmp",
}
# The file's first format, by variant name (the malformed files are made from these).
BASE = {
    "jpeg": "JPEG",
    "png8": "PNG",
    "webp": "WEBP",
    "bmp": "BMP",
    "gif": "GIF",
    "tiff8": "TIFF",
    "heic": "HEIF",
    "avif": "AVIF",
}


def save(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _opencv(suffix: str, array: npt.NDArray[np.uint16] | npt.NDArray[np.float32]) -> bytes:
    ok, buffer = cv2.imencode(suffix, array)
    assert ok
    return bytes(buffer.tobytes())


def variants(jpeg: bytes) -> dict[str, bytes]:
    """The JPEG's pixels in every format. 16-bit files hold value * 257 (the full 16-bit
    range); the float TIFF holds value / 255 (0-1)."""
    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    rgb = np.asarray(image)
    bgr16 = rgb[:, :, ::-1].astype(np.uint16) * 257
    grey16 = np.asarray(image.convert("L")).astype(np.uint16) * 257
    return {
        "jpeg": jpeg,
        "jpeg-grey": save(image.convert("L"), "JPEG", quality=95),
        "png8": save(image, "PNG"),
        "png16": _opencv(".png", bgr16),
        "png16-grey": save(Image.fromarray(grey16), "PNG"),
        "tiff8": save(image, "TIFF", compression="tiff_lzw"),
        "tiff16": _opencv(".tiff", bgr16),
        "tiff16-grey": save(Image.fromarray(grey16), "TIFF"),
        "tiff-float": _opencv(".tiff", (rgb[:, :, ::-1] / 255).astype(np.float32)),
        "heic": save(image, "HEIF", quality=90),
        "avif": save(image, "AVIF", quality=90),
        "webp": save(image, "WEBP", quality=90),
        "gif": save(image, "GIF"),
        "bmp": save(image, "BMP"),
    }


def tiff_rgb16(rgb16: npt.NDArray[np.uint16], orientation: int) -> bytes:
    """An uncompressed 16-bit RGB TIFF with an Orientation tag, written by hand: Pillow
    cannot write 16-bit colour and OpenCV writes no orientation."""
    height, width, _ = rgb16.shape
    pixels = rgb16.astype("<u2").tobytes()
    bits_at, pixels_at = 8, 16
    ifd_at = pixels_at + len(pixels)
    tags = [  # (tag, type 3 = SHORT / 4 = LONG, count, value or offset)
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, bits_at),
        (259, 3, 1, 1),  # no compression
        (262, 3, 1, 2),  # RGB
        (273, 4, 1, pixels_at),
        (274, 3, 1, orientation),
        (277, 3, 1, 3),
        (278, 4, 1, height),
        (279, 4, 1, len(pixels)),
        (284, 3, 1, 1),  # chunky
    ]
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at))
    out += struct.pack("<HHH", 16, 16, 16) + b"\0\0"  # BitsPerSample, at byte 8
    out += pixels
    out += struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 and count == 1 else None
        out += struct.pack("<HHI", tag, kind, count) + (packed or struct.pack("<I", value))
    out += struct.pack("<I", 0)
    return bytes(out)


def reference(name: str) -> str:
    """The variant a variant is compared with: grey files with the grey JPEG, so that the
    figure measures the format, not the loss of colour."""
    return "jpeg-grey" if name.endswith("-grey") else "jpeg"


def truncated(data: bytes) -> bytes:
    """The first half: the header is whole, the pixels are cut off."""
    return data[: len(data) // 2]


def zero_width(data: bytes, fmt: str) -> bytes:
    """The file with its width field in the header set to 0."""
    b = bytearray(data)
    if fmt == "JPEG":
        sof = next(i for i in range(2, len(b) - 9) if b[i] == 0xFF and b[i + 1] in (0xC0, 0xC2))
        b[sof + 7 : sof + 9] = b"\0\0"
    elif fmt == "PNG":
        b[16:20] = b"\0\0\0\0"
        b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    elif fmt == "WEBP":
        assert b[12:16] == b"VP8 ", bytes(b[12:16])
        b[26:28] = b"\0\0"  # 14-bit width and 2-bit scale of a lossy frame
    elif fmt == "BMP":
        b[18:22] = b"\0\0\0\0"
    elif fmt == "GIF":
        b[6:8] = b"\0\0"  # logical screen
        b[_gif_descriptor(b) + 5 : _gif_descriptor(b) + 7] = b"\0\0"  # first image
    elif fmt == "TIFF":
        (ifd,) = struct.unpack_from("<I", b, 4)
        (count,) = struct.unpack_from("<H", b, ifd)
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            if struct.unpack_from("<H", b, entry)[0] == 256:  # ImageWidth
                b[entry + 8 : entry + 12] = b"\0\0\0\0"
    elif fmt in ("HEIF", "AVIF"):
        ispe = b.index(b"ispe")
        b[ispe + 8 : ispe + 12] = b"\0\0\0\0"
    else:
        raise ValueError(fmt)
    return bytes(b)


def _gif_descriptor(b: bytearray) -> int:
    """Offset of the first image descriptor: after the colour table and any extensions."""
    pos = 13 + (3 << ((b[10] & 7) + 1) if b[10] & 0x80 else 0)
    while b[pos] == 0x21:  # an extension: label, then sub-blocks up to a 0 length
        pos += 2
        while b[pos]:
            pos += b[pos] + 1
        pos += 1
    assert b[pos] == 0x2C, b[pos]
    return pos


def overrun(data: bytes, fmt: str) -> bytes:
    """A header field that points past the end of the file: the first directory, box or
    chunk claims more bytes than there are."""
    b = bytearray(data)
    if fmt == "TIFF":
        b[4:8] = struct.pack("<I", len(b) + 1000)
    elif fmt in ("HEIF", "AVIF"):
        meta = b.index(b"meta") - 4
        b[meta : meta + 4] = struct.pack(">I", len(b) * 4)
    elif fmt == "PNG":
        b[8:12] = struct.pack(">I", 1 << 30)
    else:
        return zero_width(data, fmt)
    return bytes(b)


def pages(*frames: Image.Image, fmt: str) -> bytes:
    """A multi-page TIFF or an animated GIF of ``frames``, in that order."""
    first, *rest = frames
    return save(first, fmt, save_all=True, append_images=rest)

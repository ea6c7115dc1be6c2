"""The header checks the gateway and detector share, and the detector's decoding."""

import io
import re
import struct
from pathlib import Path

import images
import numpy as np
import photo_formats as formats
import pytest
from facerec_common.errors import (
    EmptyImage,
    ImageTooLarge,
    ImageUndecodable,
    TooManyPixels,
    UnsupportedImageType,
)
from facerec_common.images import FORMAT_NAMES, SUPPORTED_FORMATS, inspect_image
from facerec_common.settings import ImageLimits
from facerec_detector.decode import decode_bgr, to_8bit
from PIL import Image, ImageCms, TiffImagePlugin

LIMITS = ImageLimits(max_image_bytes=1_000_000, max_image_pixels=2_000_000)


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_supported_formats_are_recognised(fmt: str) -> None:
    data = images.encode(Image.new("RGB", (40, 30)), fmt)
    info = inspect_image(data, LIMITS)
    assert (info.format, info.width, info.height) == (fmt, 40, 30)


def test_limits_are_enforced_from_the_header() -> None:
    with pytest.raises(EmptyImage):
        inspect_image(b"", LIMITS)
    with pytest.raises(ImageTooLarge):
        inspect_image(b"\xff\xd8\xff" + b"\0" * 1_000_000, LIMITS)
    with pytest.raises(TooManyPixels):
        inspect_image(images.encode(Image.new("L", (2000, 1001)), "PNG"), LIMITS)
    with pytest.raises(UnsupportedImageType, match="PDF"):
        inspect_image(b"%PDF-1.7\n" + b"\0" * 100, LIMITS)


def test_exif_orientation_is_applied_before_detection() -> None:
    image = Image.new("RGB", (60, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = _jpeg_with_exif(image, exif)
    pixels = decode_bgr(data, LIMITS)
    assert pixels.shape == (60, 20, 3)


@pytest.mark.parametrize(
    "fmt", ["JPEG", "PNG", "WEBP", "TIFF", "HEIF", "AVIF", "TIFF16-grey", "TIFF16-colour"]
)
def test_exif_orientation_is_applied_once_in_every_format(fmt: str) -> None:
    """Pillow's and OpenCV's TIFF readers turn the page themselves; the others leave it to
    the detector. Each photo is turned exactly once."""
    image = Image.new("RGB", (60, 20), "white")
    if fmt == "TIFF16-colour":
        data = formats.tiff_rgb16(np.full((20, 60, 3), 40_000, dtype=np.uint16), 6)
        Image.open(io.BytesIO(data)).load()  # a valid file, to Pillow too
        assert decode_bgr(data, LIMITS).shape == (60, 20, 3)
        return
    if fmt == "TIFF16-grey":
        image = Image.fromarray(np.full((20, 60), 40_000, dtype=np.uint16))
    if fmt.startswith("TIFF"):
        tags = TiffImagePlugin.ImageFileDirectory_v2()
        tags[0x0112] = 6
        data = formats.save(image, "TIFF", tiffinfo=tags)
    else:
        exif = Image.Exif()
        exif[0x0112] = 6
        data = formats.save(image, fmt, exif=exif.tobytes())
    assert decode_bgr(data, LIMITS).shape == (60, 20, 3)


def _jpeg_with_exif(image: Image.Image, exif: Image.Exif) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


SMALL = ImageLimits(max_image_bytes=1_000_000, max_image_pixels=10_000)


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_the_pixel_limit_holds_for_every_format_before_decoding(fmt: str) -> None:
    at_limit = images.encode(Image.new("RGB", (100, 100), "grey"), fmt)
    assert inspect_image(at_limit, SMALL).width == 100
    over = images.encode(Image.new("RGB", (101, 100), "grey"), fmt)
    with pytest.raises(TooManyPixels, match="101x100"):
        inspect_image(over, SMALL)
    # The detector checks the header first too: nothing is decoded.
    with pytest.raises(TooManyPixels):
        decode_bgr(over, SMALL)


def test_a_heif_grid_image_reports_the_whole_picture() -> None:
    """Large HEIC photos are stored as tiles; the header size is the whole picture's."""
    data = images.encode(Image.new("RGB", (4096, 600), "grey"), "HEIF")
    info = inspect_image(data, ImageLimits(max_image_bytes=10_000_000, max_image_pixels=10**7))
    assert (info.width, info.height) == (4096, 600)


def test_the_unsupported_type_detail_lists_what_is_accepted() -> None:
    with pytest.raises(UnsupportedImageType) as raised:
        inspect_image(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", LIMITS)
    for name in FORMAT_NAMES.values():
        assert name in raised.value.detail


def test_the_readme_table_lists_the_accepted_formats() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Accepted image formats", 1)[1].split("\n#", 1)[0]
    listed = re.findall(r"^\| ([^|]+?) \|", section, flags=re.MULTILINE)[
        1:
    ]  # after the heading row
    assert listed == [FORMAT_NAMES[f] for f in SUPPORTED_FORMATS]


def test_camera_raw_files_are_refused_by_name() -> None:
    """A DNG is a TIFF whose first page is a small preview: refused, not decoded."""
    dng = images.encode(Image.new("RGB", (32, 32)), "TIFF")
    image = Image.open(io.BytesIO(dng))
    tags = image.getexif()
    tags[50706] = b"\x01\x04\x00\x00"  # DNGVersion
    out = io.BytesIO()
    image.save(out, format="TIFF", exif=tags)
    with pytest.raises(UnsupportedImageType, match="RAW"):
        inspect_image(out.getvalue(), LIMITS)


@pytest.mark.parametrize("name", sorted(formats.SUFFIX))
def test_every_variant_decodes_to_the_same_picture(name: str) -> None:
    """The same face in every format and bit depth gives the JPEG's pixels back, within
    what the lossy codecs and the palette of GIF change."""
    jpeg = images.portrait()
    reference = decode_bgr(jpeg, LIMITS).astype(np.int16)
    pixels = decode_bgr(formats.variants(jpeg)[name], LIMITS)
    assert pixels.shape == reference.shape
    error = float(np.abs(pixels.astype(np.int16) - reference).mean())
    grey = name.endswith("-grey")
    if grey:
        # Grey files are compared in grey, after the range stretch of deep images.
        assert (pixels[:, :, 0] == pixels[:, :, 2]).all()
        error = float(np.abs(pixels[:, :, 0].astype(np.int16) - reference.mean(axis=2)).mean())
    assert error < (12 if grey else 4), error


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    """Pillow's convert("RGB") clips 16-bit grey to white; a face there is then not found."""
    grey = np.asarray(Image.open(io.BytesIO(images.portrait())).convert("L"))
    data = formats.variants(images.portrait())["png16-grey"]
    pixels = decode_bgr(data, LIMITS)[:, :, 0]
    assert (pixels == 255).mean() < 0.05
    assert abs(float(pixels.mean()) - float(grey.mean())) < 10


def test_high_bit_depth_is_mapped_by_its_real_range() -> None:
    full = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    assert to_8bit(full).tolist() == [[0, 128, 255]]
    twelve_bits = np.array([[0, 2048, 4095]], dtype=np.uint16)  # a 12-bit scan in 16 bits
    assert to_8bit(twelve_bits).tolist() == [[0, 128, 255]]
    unit = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)  # floats in 0-1 keep that scale
    assert to_8bit(unit).tolist() == [[0, 64, 255]]
    dim = np.array([[0.0, 0.25, 0.5]], dtype=np.float32)
    assert to_8bit(dim).tolist() == [[0, 64, 128]]
    hdr = np.array([[np.nan, -1.0, 3.0, np.inf]], dtype=np.float32)
    assert to_8bit(hdr).tolist() == [[0, 0, 255, 0]]
    flat = np.full((2, 2), 1000, dtype=np.uint16)
    assert to_8bit(flat).tolist() == [[0, 0], [0, 0]]


def _profile_with_red_and_blue_swapped() -> bytes:
    """sRGB, with the red and blue primaries' tags exchanged: "red" pixels are blue."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack_from(">I", icc, 128)
    entries = {bytes(icc[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    icc[red + 4 : red + 12], icc[blue + 4 : blue + 12] = (
        icc[blue + 4 : blue + 12],
        icc[red + 4 : red + 12],
    )
    return bytes(icc)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "JPEG"])
def test_embedded_colour_profiles_are_converted_to_srgb(fmt: str) -> None:
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    tagged = formats.save(red, fmt, icc_profile=_profile_with_red_and_blue_swapped())
    b, g, r = decode_bgr(tagged, LIMITS)[8, 8].tolist()
    assert b > 200 and r < 60, (b, g, r)
    broken = formats.save(red, fmt, icc_profile=b"not a profile")
    b, g, r = decode_bgr(broken, LIMITS)[8, 8].tolist()
    assert r > 240 and b < 20, (b, g, r)  # an unusable profile: the pixels are taken as sRGB


@pytest.mark.parametrize("fmt", ["TIFF", "GIF"])
def test_only_the_first_page_or_frame_is_decoded(fmt: str) -> None:
    first, second = Image.new("RGB", (40, 30), "white"), Image.new("RGB", (40, 30), "black")
    pixels = decode_bgr(formats.pages(first, second, fmt=fmt), LIMITS)
    assert pixels.shape == (30, 40, 3)
    assert pixels.min() > 200


@pytest.mark.parametrize("fmt", sorted(set(formats.BASE.values())))
@pytest.mark.parametrize("damage", ["truncated", "zero-width", "overrun"])
def test_malformed_files_are_refused_as_undecodable(fmt: str, damage: str) -> None:
    name = next(n for n, f in formats.BASE.items() if f == fmt)
    good = formats.variants(images.portrait())[name]
    bad = {
        "truncated": formats.truncated(good),
        "zero-width": formats.zero_width(good, fmt),
        "overrun": formats.overrun(good, fmt),
    }[damage]
    with pytest.raises(ImageUndecodable, match=r"'bad\.x'"):
        decode_bgr(bad, LIMITS, "bad.x")

"""The header checks the gateway and detector share."""

import io

import images
import pytest
from facerec_common.errors import EmptyImage, ImageTooLarge, TooManyPixels, UnsupportedImageType
from facerec_common.images import inspect_image
from facerec_common.settings import ImageLimits
from facerec_detector.decode import decode_bgr
from PIL import Image

LIMITS = ImageLimits(max_image_bytes=1_000_000, max_image_pixels=2_000_000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
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
    with pytest.raises(UnsupportedImageType, match="TIFF"):
        inspect_image(images.encode(Image.new("RGB", (4, 4)), "TIFF"), LIMITS)


def test_exif_orientation_is_applied_before_detection() -> None:
    image = Image.new("RGB", (60, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = _jpeg_with_exif(image, exif)
    pixels = decode_bgr(data, LIMITS)
    assert pixels.shape == (60, 20, 3)


def _jpeg_with_exif(image: Image.Image, exif: Image.Exif) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()

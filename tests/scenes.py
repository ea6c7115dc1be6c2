"""Photos composed for detection tests and benchmarks: faces cut from real photos, scaled
to a chosen size and laid out on a large canvas, as in a class photo or a crowd."""

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

# A phone photo: 4032 x 3024, 12 megapixels.
PHONE = (4032, 3024)


@dataclass(frozen=True)
class FaceCut:
    """A face with the photo around it, and where the face box lies inside the cut."""

    image: Image.Image
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 within ``image``


def cut(photo: Image.Image, box: tuple[float, float, float, float], margin: float = 0.6) -> FaceCut:
    """The face at ``box`` with ``margin`` (times its size) of the photo on every side."""
    x1, y1, x2, y2 = box
    pad = margin * max(x2 - x1, y2 - y1)
    left, top = max(0, math.floor(x1 - pad)), max(0, math.floor(y1 - pad))
    right, bottom = min(photo.width, math.ceil(x2 + pad)), min(photo.height, math.ceil(y2 + pad))
    return FaceCut(
        photo.crop((left, top, right, bottom)), (x1 - left, y1 - top, x2 - left, y2 - top)
    )


def compose(
    faces: list[FaceCut], face_px: int, size: tuple[int, int] = PHONE, seed: int = 0
) -> tuple[Image.Image, list[tuple[float, float, float, float]]]:
    """``faces`` scaled so that each face box is ``face_px`` wide, laid out in a grid on a
    textured grey canvas of ``size``; returns the photo and where each face box is."""
    rng = np.random.default_rng(seed)
    width, height = size
    noise = rng.normal(118, 12, (height // 8, width // 8, 3)).clip(0, 255).astype(np.uint8)
    canvas = Image.fromarray(noise).resize(size, Image.Resampling.BILINEAR)
    columns = max(1, math.ceil(math.sqrt(len(faces) * width / height)))
    rows = max(1, math.ceil(len(faces) / columns))
    cell_w, cell_h = width / columns, height / rows
    boxes = []
    for index, face in enumerate(faces):
        x1, y1, x2, y2 = face.box
        scale = face_px / (x2 - x1)
        scaled = face.image.resize(
            (max(1, round(face.image.width * scale)), max(1, round(face.image.height * scale))),
            Image.Resampling.LANCZOS,
        )
        row, column = divmod(index, columns)
        # The face's centre at the cell's centre; the cut around it may spill over.
        cx, cy = (column + 0.5) * cell_w, (row + 0.5) * cell_h
        fx, fy = (x1 + x2) / 2 * scale, (y1 + y2) / 2 * scale
        left, top = round(cx - fx), round(cy - fy)
        canvas.paste(scaled, (left, top))
        boxes.append((left + x1 * scale, top + y1 * scale, left + x2 * scale, top + y2 * scale))
    return canvas, boxes


def jpeg(image: Image.Image, quality: int = 90, exif: bytes | None = None) -> bytes:
    out = io.BytesIO()
    if exif is None:
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format="JPEG", quality=quality, exif=exif)
    return out.getvalue()


def matches(
    found: list[tuple[float, float, float, float]],
    truth: list[tuple[float, float, float, float]],
    min_iou: float = 0.3,
) -> list[int]:
    """For each true face, how many found boxes overlap it (IoU at least ``min_iou``)."""

    def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    return [sum(1 for f in found if iou(f, t) >= min_iou) for t in truth]

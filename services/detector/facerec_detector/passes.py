"""Which detector passes an image needs, from its size and the range of face sizes wanted.

SCRFD finds faces whose size in its own input lies in a band: below about 16 px recall
falls away, and a face much larger than about 400 px falls outside its largest anchors
(a 12-megapixel portrait seen at 2560 px is missed). No single input size serves a 40 px
face and a 2,000 px face in the same 4032x3024 photo, so the image is seen at a pyramid
of scales:

- a **coarse pass** at ``coarse_size`` on the longest side (640), never enlarged: small
  photos are seen at their own size, which is both faster than enlarging them to 640 and
  how the faces in them already are;
- **finer passes**, only when the smallest wanted face would be too small in the coarse
  pass: the finest scale makes a face of ``min_face_size`` original pixels
  ``TARGET_FACE_PX`` in the detector's input (never more than the original pixels), and
  passes between it and the coarse one are at most ``LEVEL_RATIO`` apart.

Each pass keeps the faces inside its band (``PASS_BAND_PX``), the finest keeps the small
ones and the coarsest the large ones, and the passes' faces are merged by NMS, so no face
comes out twice. The total pixels of all passes are capped; past the cap the finest pass
is made coarser and the result says which faces it could still find.
"""

import math
from dataclasses import dataclass

# Size of the smallest wanted face in the detector's input: small enough to keep the fine
# pass cheap, large enough for SCRFD to find it reliably.
TARGET_FACE_PX = 24
# The face sizes (detector input pixels) a pass that is neither finest nor coarsest keeps.
PASS_BAND_PX = (12.0, 320.0)
# Adjacent passes at most this far apart in scale, so their bands overlap.
LEVEL_RATIO = 4.0
# The detector's input sides are multiples of its largest stride.
STRIDE = 32


@dataclass(frozen=True)
class DetectionPass:
    """One look at the image: the scale of the original and the detector's input size."""

    scale: float
    width: int
    height: int
    # Face sizes (shorter box side, original pixels) this pass is trusted for.
    min_face: float
    max_face: float


def _input_size(width: int, height: int, scale: float) -> tuple[int, int]:
    def side(pixels: int) -> int:
        return max(STRIDE, math.ceil(pixels * scale / STRIDE) * STRIDE)

    return side(width), side(height)


def plan(
    width: int,
    height: int,
    min_face_size: int,
    coarse_size: int,
    max_pixels: int,
    fast: bool = False,
) -> list[DetectionPass]:
    """The passes for an image of ``width`` x ``height``, finest first.

    ``fast``: the coarse pass alone (a caller who trades small faces for speed).
    """
    longest = max(width, height)
    coarse = min(1.0, coarse_size / longest)
    finest = min(1.0, TARGET_FACE_PX / min_face_size)
    if fast or finest <= coarse * 1.5:
        scales = [coarse]
    else:
        # The pixel cap bounds the finest (largest) pass, the one that costs most.
        finest = min(finest, math.sqrt(max_pixels / (width * height)))
        scales = [finest]
        while scales[-1] / LEVEL_RATIO > coarse * 1.5:
            scales.append(scales[-1] / LEVEL_RATIO)
        if scales[-1] > coarse:
            scales.append(coarse)
    passes = []
    for index, scale in enumerate(scales):
        low, high = PASS_BAND_PX
        w, h = _input_size(width, height, scale)
        passes.append(
            DetectionPass(
                scale=round(scale, 4),
                width=w,
                height=h,
                min_face=0.0 if index == 0 else low / scale,
                max_face=math.inf if index == len(scales) - 1 else high / scale,
            )
        )
    return passes


def smallest_face(passes: list[DetectionPass]) -> int:
    """The smallest face (original pixels) the finest pass is sized to find."""
    return math.ceil(TARGET_FACE_PX / passes[0].scale)

"""How good a detected face is for matching, and the bars a face must pass to be enrolled
(or, when a request asks, matched).

The detector measures every face (``facerec_detector.quality``); this module holds what
travels and what is reported (``FaceQuality``), the filter levels a request or a gallery
names (``QualityFilter``), each level's bar (``BARS``, fitted by ``bench/quality.py`` on
faces-dev, see the README) and the stable reasons a face falls under a bar
(``QualityIssue``).
"""

import math
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from pydantic import BaseModel, Field


class QualityFilter(StrEnum):
    """How strict the bar is, as Rekognition's ``QualityFilter``: ``none`` lets every face
    through, ``high`` only clear, well lit, frontal faces."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Landmarks(IntEnum):
    """Which landmarks a face comes with: the detector's 5, or also the 106 of insightface's
    2d106det (run only when asked)."""

    FIVE = 5
    ALL_106 = 106


class QualityIssue(StrEnum):
    """Why a face falls under a quality bar (besides ``too_small``, which every job applies)."""

    BLURRED = "blurred"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    PROFILE = "profile"
    LOW_SCORE = "low_score"


class Pose(BaseModel):
    """Head pose in degrees, estimated from the 5 landmarks (see ``facerec_detector.quality``):
    yaw > 0 turns the face towards the image's right, pitch > 0 tilts it down, roll > 0
    turns it clockwise in the image. About +-10 degrees, and only to about 60 degrees of yaw."""

    yaw: float
    pitch: float
    roll: float


class FaceQuality(BaseModel):
    """Measures of one face; ``score`` combines them into one number in [0, 1]."""

    score: float = Field(ge=0, le=1)
    # The share of fine detail in the grey 112x112 aligned crop's centre: r = variance of
    # its Laplacian / (variance of its grey + 1), as r / (r + 0.05). Clean faces-dev faces
    # lie over 0.4 (median 0.68); a Gaussian blur of sigma 2 brings them to about 0.23.
    sharpness: float = Field(ge=0, le=1)
    # Mean luminance (Rec. 601) of the aligned crop's centre (the face), 0 black to 1 white.
    brightness: float = Field(ge=0, le=1)
    pose: Pose
    det_score: float
    # The face box's shorter side, in pixels of the image.
    size: float


@dataclass(frozen=True)
class QualityBar:
    min_sharpness: float
    min_brightness: float
    max_brightness: float
    # Largest |yaw| and |pitch| (degrees) that still count as facing the camera.
    max_yaw: float
    max_pitch: float
    min_det_score: float


# Fitted by bench/quality.py on faces-dev (README, "Face quality"). ArcFace still names
# most faces blurred by a Gaussian of sigma 3 or darkened to 0.15 of their light, so
# ``low`` (the enrolment default) refuses only what is worse than that and no clean face of
# faces-dev; ``medium`` and ``high`` trade some clean faces for fewer poor ones.
BARS: dict[QualityFilter, QualityBar | None] = {
    QualityFilter.NONE: None,
    QualityFilter.LOW: QualityBar(
        min_sharpness=0.1,
        min_brightness=0.04,
        max_brightness=0.96,
        max_yaw=75,
        max_pitch=60,
        min_det_score=0.55,
    ),
    QualityFilter.MEDIUM: QualityBar(
        min_sharpness=0.15,
        min_brightness=0.08,
        max_brightness=0.92,
        max_yaw=60,
        max_pitch=45,
        min_det_score=0.6,
    ),
    QualityFilter.HIGH: QualityBar(
        min_sharpness=0.25,
        min_brightness=0.15,
        max_brightness=0.85,
        max_yaw=45,
        max_pitch=35,
        min_det_score=0.7,
    ),
}


def issues(quality: FaceQuality, level: QualityFilter) -> list[QualityIssue]:
    """The reasons ``quality`` falls under ``level``'s bar, in a stable order (empty: it
    passes)."""
    bar = BARS[level]
    if bar is None:
        return []
    found = []
    if quality.sharpness < bar.min_sharpness:
        found.append(QualityIssue.BLURRED)
    if quality.brightness < bar.min_brightness:
        found.append(QualityIssue.TOO_DARK)
    if quality.brightness > bar.max_brightness:
        found.append(QualityIssue.TOO_BRIGHT)
    if abs(quality.pose.yaw) > bar.max_yaw or abs(quality.pose.pitch) > bar.max_pitch:
        found.append(QualityIssue.PROFILE)
    if quality.det_score < bar.min_det_score:
        found.append(QualityIssue.LOW_SCORE)
    return found


def combined_score(
    sharpness: float, brightness: float, pose: Pose, det_score: float, size: float
) -> float:
    """One number in [0, 1], the product of five factors each 1 for a good face:
    sharpness / 0.5 (capped at 1); exposure, 1 for brightness in [0.25, 0.75] falling
    linearly to 0 at 0 and 1; cos(yaw) * cos(pitch); the detector's score; size / 64 px
    (capped at 1)."""
    sharp = min(1.0, sharpness / 0.5)
    exposure = max(0.0, min(1.0, brightness / 0.25, (1.0 - brightness) / 0.25))
    frontal = max(0.0, math.cos(math.radians(pose.yaw)) * math.cos(math.radians(pose.pitch)))
    scale = min(1.0, size / 64.0)
    value = sharp * exposure * frontal * max(0.0, min(1.0, det_score)) * scale
    return round(max(0.0, min(1.0, value)), 4)

"""Cheap measures of each face, taken where the detector aligns it: sharpness and
brightness on the 112x112 aligned crop, head pose from the 5 landmarks.

- sharpness: r = variance of the Laplacian (3x3, ``cv2.Laplacian`` ksize 1) of the grey
  crop's centre over (the variance of the grey centre + 1), reported as r / (r + 0.05) so
  that it lies in [0, 1). Dividing by the contrast makes it the share of fine detail in
  the face, so that a dark or flat but sharp face is not called blurred;
- brightness: the mean luminance (Rec. 601 grey) of the same centre, over 255;
- pose: a geometric estimate on an average face (see ``pose``), not a fitted 3D model.

The centre is rows 28-99 and columns 24-87 of the crop: eyebrows to chin, cheek to cheek
in ArcFace's template, so that background and hair weigh little.
"""

import math

import cv2
import numpy as np
import numpy.typing as npt
from facerec_common.quality import FaceQuality, Pose, combined_score

CENTRE = (slice(28, 100), slice(24, 88))
SHARPNESS_SCALE = 0.05

# The inter-eye distance over the eye-to-mouth height is 0.87 in ArcFace's template and
# 0.93 for the median faces-dev face (SCRFD's points), 0.80 for its 5% narrowest: eyes
# narrower than that count as turning (cos(yaw) = ratio / 0.80), so that a narrow frontal
# face does not. Where the nose lies between the eyes (0) and the mouth (1): 0.50 in the
# template, 0.54 for the median faces-dev face, taken as level.
_WIDTH_RATIO = 0.80
_NOSE_DROP = 0.54
# Nose tip depth in front of the eyes over half the eye distance (about 25 mm over 32 mm on
# an average adult face), and over the eye-to-mouth height (about 25 mm over 70 mm).
_DEPTH_PER_HALF_EYES = 0.8
_DEPTH_PER_HEIGHT = 0.36


def pose(points: npt.NDArray[np.float32]) -> Pose:
    """Yaw, pitch and roll (degrees) of a face from its 5 landmarks (left eye, right eye,
    nose, left and right mouth corner, as the image shows them).

    Roll is the angle of the line through the eyes. The points are then turned upright;
    yaw is read from the nose's offset from the eyes' midpoint (the nose tip stands in
    front of the eyes, so turning the head moves it sideways: offset / half eye distance
    = 0.8 tan(yaw)) and from how much narrower the eyes are than a frontal face's against
    the eye-to-mouth height (cos(yaw), see _WIDTH_RATIO), whichever says more; the nose
    gives the sign. Pitch is read from where the nose lies between the eyes and the mouth
    against a frontal face's (the offset / height = 0.36 tan(pitch)). It assumes average
    proportions and no perspective: a narrow face reads as slightly turned, and past about
    60 degrees of yaw the detector's own landmarks are unreliable, so the angle says
    "profile", not how much.
    """
    p = np.asarray(points, dtype=np.float64).reshape(5, 2)
    left, right = p[0], p[1]
    eyes = (left + right) / 2
    roll = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))
    turn = math.radians(-roll)
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    upright = (p - eyes) @ rotation.T
    half_eyes = abs(upright[1, 0] - upright[0, 0]) / 2
    height = (upright[3, 1] + upright[4, 1]) / 2
    if half_eyes < 1e-6 or height < 1e-6:
        # Eyes on one point or the mouth not below them: no frontal face.
        return Pose(yaw=90.0, pitch=90.0 if height < 1e-6 else 0.0, roll=round(roll, 2))
    offset = upright[2, 0] / half_eyes
    yaw_nose = math.degrees(math.atan(offset / _DEPTH_PER_HALF_EYES))
    narrowing = min(1.0, (2 * half_eyes / height) / _WIDTH_RATIO)
    yaw_width = math.degrees(math.acos(narrowing))
    yaw = math.copysign(max(abs(yaw_nose), yaw_width), offset if offset != 0 else 1.0)
    drop = upright[2, 1] / height
    pitch = math.degrees(math.atan((drop - _NOSE_DROP) / _DEPTH_PER_HEIGHT))
    return Pose(yaw=round(yaw, 2), pitch=round(pitch, 2), roll=round(roll, 2))


def sharpness_and_brightness(crop: npt.NDArray[np.uint8]) -> tuple[float, float]:
    """Sharpness and brightness of one aligned BGR crop, both in [0, 1]."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    laplacian = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)[CENTRE]
    centre = grey[CENTRE]
    detail = float(laplacian.var()) / (float(centre.var()) + 1.0)
    brightness = float(centre.mean()) / 255.0
    return detail / (detail + SHARPNESS_SCALE), brightness


def measure(
    crop: npt.NDArray[np.uint8], points: npt.NDArray[np.float32], det_score: float, size: float
) -> FaceQuality:
    """Every measure of one face, and the score that combines them."""
    sharpness, brightness = sharpness_and_brightness(crop)
    head = pose(points)
    return FaceQuality(
        score=combined_score(sharpness, brightness, head, det_score, size),
        sharpness=round(sharpness, 4),
        brightness=round(brightness, 4),
        pose=head,
        det_score=round(det_score, 4),
        size=round(size, 2),
    )

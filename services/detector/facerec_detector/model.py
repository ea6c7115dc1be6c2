"""SCRFD face detection and insightface's 5-point alignment to 112x112 crops."""

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from facerec_common.codec import CROP_SIZE
from facerec_common.metrics import MODEL_INFERENCE, timed
from facerec_runtime.loader import LoadedModel
from insightface.utils import face_align


@dataclass(frozen=True)
class Detections:
    boxes: npt.NDArray[np.float32]  # N x 4: x1, y1, x2, y2
    scores: npt.NDArray[np.float32]  # N
    landmarks: npt.NDArray[np.float32]  # N x 5 x 2


class FaceDetector:
    def __init__(self, loaded: LoadedModel, det_size: int, det_thresh: float) -> None:
        self._model = loaded.model
        self.providers = loaded.providers
        self._size = (det_size, det_size)
        self._model.prepare(0, input_size=self._size, det_thresh=det_thresh)

    def detect(self, image: npt.NDArray[np.uint8], max_faces: int) -> Detections:
        """Faces in a BGR image, the ``max_faces`` largest, largest first."""
        with timed(MODEL_INFERENCE.labels("detection")):
            dets, kps = self._model.detect(image, input_size=self._size)
        boxes = dets[:, :4].astype(np.float32)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = np.argsort(-areas, kind="stable")[:max_faces]
        return Detections(
            boxes=boxes[order],
            scores=dets[order, 4].astype(np.float32),
            landmarks=np.asarray(kps, dtype=np.float32)[order].reshape(-1, 5, 2),
        )

    def warm_up(self) -> None:
        self.detect(np.zeros((self._size[1], self._size[0], 3), dtype=np.uint8), 1)


def align(
    image: npt.NDArray[np.uint8], landmarks: npt.NDArray[np.float32]
) -> npt.NDArray[np.uint8]:
    """One 112x112 crop per face, aligned on its 5 landmarks (ArcFace's template)."""
    if len(landmarks) == 0:
        return np.empty((0, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        # scikit-image deprecates the call insightface's norm_crop makes; it still works.
        warnings.simplefilter("ignore", FutureWarning)
        crops = [face_align.norm_crop(image, points, image_size=CROP_SIZE) for points in landmarks]
    return np.stack(crops).astype(np.uint8, copy=False)

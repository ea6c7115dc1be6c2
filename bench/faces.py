"""The naive in-process pipeline the service is measured against, and helpers the bench
scripts share: insightface's own SCRFD + ArcFace, called image by image."""

import warnings
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from facerec_runtime.packs import KNOWN_PACKS, verified_path
from facerec_runtime.sessions import session_options
from insightface.model_zoo import get_model
from insightface.utils import face_align


class InProcess:
    def __init__(self, det_size: int = 640) -> None:
        pack = KNOWN_PACKS["buffalo_sc"]
        providers = ["CPUExecutionProvider"]
        # Default threads (one per core); quiet logs: the recognizer's batch-shape warning.
        options = {"providers": providers, "sess_options": session_options(0)}
        self.detector = get_model(str(verified_path(pack, pack.detector, None)), **options)
        self.detector.prepare(0, input_size=(det_size, det_size))
        self.recognizer = get_model(str(verified_path(pack, pack.recognizer, None)), **options)
        self.size = (det_size, det_size)

    def faces(self, path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Boxes and unit embeddings of every face in one image file."""
        image = cv2.imread(str(path))
        boxes, landmarks = self.detector.detect(image, input_size=self.size)
        if len(boxes) == 0:
            return boxes, np.empty((0, 512), dtype=np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            crops = [face_align.norm_crop(image, points) for points in landmarks]
        vectors = self.recognizer.get_feat(crops)
        return boxes, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def central_face(boxes: npt.NDArray[np.float32], width: int, height: int) -> int:
    """The face nearest the image centre (faces-dev labels that one)."""
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
    return int(np.argmin(np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1)))

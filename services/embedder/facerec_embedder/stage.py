"""The embed stage: crops to vectors; a verify job ends here, the others go on to index."""

import cv2
import numpy as np
import numpy.typing as npt
from facerec_common.codec import pack_vectors, unpack_crops
from facerec_common.messages import JobKind, PipelineMessage
from facerec_common.results import Face, VerifyResult
from facerec_common.scores import Calibration, resolve_threshold, scored
from facerec_common.worker import StageOutcome

from facerec_embedder.model import FaceEmbedder


class EmbedStage:
    def __init__(
        self,
        embedder: FaceEmbedder,
        default_threshold: float,
        calibration: tuple[float, float] | None,
    ) -> None:
        self._embedder = embedder
        self._default_threshold = default_threshold
        self._calibration = calibration

    def run(self, msg: PipelineMessage) -> StageOutcome:
        crops = unpack_crops(msg.crops)
        vectors = self._embedder.embed(crops)
        if msg.kind is JobKind.VERIFY:
            calibration = Calibration(*self._calibration) if self._calibration else None
            threshold = resolve_threshold(msg.params, None, self._default_threshold, calibration)
            similarity = float(np.dot(vectors[0], vectors[1]))
            scores = scored(similarity, calibration)
            return StageOutcome(
                result=VerifyResult(
                    same=similarity >= threshold,
                    similarity=scores.similarity,
                    confidence=scores.confidence,
                    threshold=threshold,
                    model=self._embedder.name,
                    faces=[Face.of(face) for face in msg.faces],
                )
            )
        # Kept with batch faces (people are reviewed by eye) and enrolled faces (a bad
        # enrolment is found by looking at them).
        if msg.kind in (JobKind.BATCH, JobKind.ENROLL):
            msg.thumbnails = [thumbnail(crop) for crop in crops]
        msg.crops = b""
        msg.vectors = pack_vectors(vectors)
        msg.model = self._embedder.name
        msg.dim = self._embedder.dim
        msg.default_threshold = self._default_threshold
        msg.calibration = self._calibration
        return StageOutcome(forward=msg)


THUMBNAIL_SIZE = 64


def thumbnail(crop: npt.NDArray[np.uint8]) -> bytes:
    """A small JPEG of an aligned crop, kept with an unassigned or enrolled face so faces
    can be reviewed by eye; never used for matching."""
    small = cv2.resize(crop, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        return b""
    return bytes(encoded.tobytes())

"""The embed stage: crops to vectors; a job whose kind ends here (verify) is answered,
the others go on (see ``facerec_common.kinds``)."""

import cv2
import numpy as np
import numpy.typing as npt
from facerec_common.codec import pack_vectors, unpack_crops
from facerec_common.kinds import EMBED, route
from facerec_common.messages import PipelineMessage
from facerec_common.results import Face, VerifyResult
from facerec_common.scores import Scoring
from facerec_common.worker import StageOutcome

from facerec_embedder.model import FaceEmbedder


class EmbedStage:
    def __init__(self, embedder: FaceEmbedder, scoring: Scoring) -> None:
        self._embedder = embedder
        self._scoring = scoring

    def run(self, msg: PipelineMessage) -> StageOutcome:
        crops = unpack_crops(msg.crops)
        vectors = self._embedder.embed(crops)
        kind = route(msg.kind)
        if kind.finishes(EMBED):
            threshold = self._scoring.threshold(msg.params)
            similarity = float(np.dot(vectors[0], vectors[1]))
            scores = self._scoring.scored(similarity)
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
        if kind.thumbnails:
            msg.thumbnails = [thumbnail(crop) for crop in crops]
        msg.crops = b""
        msg.vectors = pack_vectors(vectors)
        msg.model = self._embedder.name
        msg.dim = self._embedder.dim
        # The index stage scores matches as this model does (see scores.message_scoring).
        msg.default_threshold, msg.calibration = self._scoring.message_fields()
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

"""The embed stage: crops to vectors; a verify job ends here, the others go on to index."""

import numpy as np
from facerec_common.codec import pack_vectors, unpack_crops
from facerec_common.messages import JobKind, PipelineMessage, face_json
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
        vectors = self._embedder.embed(unpack_crops(msg.crops))
        if msg.kind is JobKind.VERIFY:
            calibration = Calibration(*self._calibration) if self._calibration else None
            threshold = resolve_threshold(msg.params, None, self._default_threshold, calibration)
            similarity = float(np.dot(vectors[0], vectors[1]))
            return StageOutcome(
                result={
                    "same": similarity >= threshold,
                    **scored(similarity, calibration),
                    "threshold": threshold,
                    "model": self._embedder.name,
                    "faces": [face_json(face) for face in msg.faces],
                }
            )
        msg.crops = b""
        msg.vectors = pack_vectors(vectors)
        msg.model = self._embedder.name
        msg.dim = self._embedder.dim
        msg.default_threshold = self._default_threshold
        msg.calibration = self._calibration
        return StageOutcome(forward=msg)

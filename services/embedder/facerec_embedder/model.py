"""ArcFace: aligned 112x112 crops to L2-normalised 512-d vectors, in batches."""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from facerec_common.codec import CROP_SIZE
from facerec_common.metrics import MODEL_INFERENCE, timed
from facerec_runtime.loader import LoadedModel

from facerec_embedder.batching import CrossJobBatcher


@dataclass(frozen=True)
class Batching:
    """Cross-job batching (``facerec_embedder.batching``): how long the model waits for
    more crops after a first call, and how long a call may wait for its vectors."""

    max_wait_s: float
    call_timeout_s: float


class FaceEmbedder:
    def __init__(
        self,
        loaded: LoadedModel,
        name: str,
        batch_size: int,
        batching: Batching | None = None,
    ) -> None:
        self._model = loaded.model
        self.providers = loaded.providers
        self.name = name
        self.dim = int(self._model.output_shape[-1])
        self._batch_size = batch_size
        # With several tasks at once, their crops meet in one model thread.
        self._batcher = (
            None
            if batching is None
            else CrossJobBatcher(
                self._infer, batch_size, batching.max_wait_s, batching.call_timeout_s, name
            )
        )

    def embed(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """N x 112 x 112 x 3 BGR crops to N x dim unit vectors."""
        if len(crops) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if crops.shape[1:] != (CROP_SIZE, CROP_SIZE, 3) or crops.dtype != np.uint8:
            raise ValueError(f"crops must be N x {CROP_SIZE} x {CROP_SIZE} x 3 uint8")
        return self._infer(crops) if self._batcher is None else self._batcher(crops)

    def _infer(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        parts = []
        for start in range(0, len(crops), self._batch_size):
            with timed(MODEL_INFERENCE.labels("recognition")):
                parts.append(self._model.get_feat(list(crops[start : start + self._batch_size])))
        vectors = np.concatenate(parts).astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = vectors / np.maximum(norms, 1e-12)
        return unit

    def warm_up(self) -> None:
        self.embed(np.zeros((1, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8))

"""ArcFace: aligned 112x112 crops to L2-normalised 512-d vectors, in batches."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
from facerec_runtime.packs import ModelPack, verified_path
from facerec_runtime.sessions import available_providers, session_options
from insightface.model_zoo import get_model


class FaceEmbedder:
    def __init__(
        self,
        pack: ModelPack,
        models_dir: Path | None,
        providers: list[str],
        intra_op_threads: int,
        batch_size: int,
    ) -> None:
        path = verified_path(pack, pack.recognizer, models_dir)
        self.providers = available_providers(providers)
        self._model = get_model(
            str(path),
            providers=self.providers,
            sess_options=session_options(intra_op_threads),
        )
        if self._model is None or self._model.taskname != "recognition":
            raise ValueError(f"{path} is not a face recognition model")
        self.name = pack.recognizer_name
        self.dim = int(self._model.output_shape[-1])
        self._batch_size = batch_size

    def embed(self, crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """N x 112 x 112 x 3 BGR crops to N x dim unit vectors."""
        if len(crops) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        parts = [
            self._model.get_feat(list(crops[start : start + self._batch_size]))
            for start in range(0, len(crops), self._batch_size)
        ]
        vectors = np.concatenate(parts).astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = vectors / np.maximum(norms, 1e-12)
        return unit

    def warm_up(self) -> None:
        self.embed(np.zeros((1, 112, 112, 3), dtype=np.uint8))

"""Binary encodings for what travels between stages: raw uint8 crops, raw float32 vectors."""

import numpy as np
import numpy.typing as npt

CROP_SIZE = 112
_CROP_SHAPE = (CROP_SIZE, CROP_SIZE, 3)


def pack_crops(crops: npt.NDArray[np.uint8]) -> bytes:
    """``crops`` is N x 112 x 112 x 3 (BGR, as insightface aligns them)."""
    if crops.ndim != 4 or crops.shape[1:] != _CROP_SHAPE:
        raise ValueError(f"expected N x {CROP_SIZE} x {CROP_SIZE} x 3 crops, got {crops.shape}")
    return np.ascontiguousarray(crops, dtype=np.uint8).tobytes()


def unpack_crops(data: bytes) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8).reshape((-1, *_CROP_SHAPE))


def pack_vectors(vectors: npt.NDArray[np.float32]) -> bytes:
    if vectors.ndim != 2:
        raise ValueError(f"expected N x D vectors, got {vectors.shape}")
    return np.ascontiguousarray(vectors, dtype="<f4").tobytes()


def unpack_vectors(data: bytes, dim: int) -> npt.NDArray[np.float32]:
    return np.frombuffer(data, dtype="<f4").reshape((-1, dim)).astype(np.float32, copy=False)

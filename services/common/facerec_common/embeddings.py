"""Embeddings outside the pipeline: the tag that says which model made a vector, the
compact encoding vectors travel in, and the checks a supplied vector must pass.

A vector is only comparable with vectors of the same model: every embedding the API hands
out carries its ``EmbeddingModel``, and a vector handed in must carry the tag of the model
this deployment embeds with, or it is refused before anything is searched.
"""

import base64
import binascii
import math
from enum import StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from facerec_common.errors import InvalidInput

# Every vector is scaled to unit length (L2), so cosine similarity is a dot product.
L2 = "l2"


class Encoding(StrEnum):
    """How embeddings are written in a response: JSON numbers, or the float32 bytes
    (little-endian) in base64, a quarter of the size and exact."""

    JSON = "json"
    BASE64 = "base64"


class EmbeddingModel(BaseModel):
    """Which model made a vector. Two vectors are comparable only when their tags are
    equal."""

    model_config = ConfigDict(extra="forbid")

    # The model pack (buffalo_sc, buffalo_sc_int8, ...) and its recognition model.
    pack: str = Field(max_length=64)
    model: str = Field(max_length=128)
    # The first 16 hex digits of the sha256 of the recognition model's file: the exact
    # weights, so a re-made or re-quantised model is another version.
    version: str = Field(max_length=64)
    dim: int = Field(ge=1, le=4096, strict=True)
    normalisation: Literal["l2"] = "l2"

    def differences(self, other: "EmbeddingModel") -> list[str]:
        """The fields in which ``other`` differs from this tag, as 'field X, not Y'."""
        mine, theirs = self.model_dump(), other.model_dump()
        return [
            f"{name} {theirs[name]!r}, not {mine[name]!r}"
            for name in mine
            if mine[name] != theirs[name]
        ]


def encode_b64(vector: npt.NDArray[np.float32]) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_b64(text: str) -> npt.NDArray[np.float32]:
    """The float32 vector of base64 text; ``InvalidInput`` where it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"embedding_b64 is not base64: {exc}") from None
    if len(raw) % 4:
        raise InvalidInput(
            f"embedding_b64 holds {len(raw)} bytes, not a whole number of float32 values"
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def checked_vector(
    values: npt.NDArray[np.float32], model: EmbeddingModel
) -> npt.NDArray[np.float32]:
    """The supplied vector scaled to unit length, once it fits ``model``: its dimension,
    finite values, a length that can be normalised. Each refusal says which."""
    if values.ndim != 1 or len(values) != model.dim:
        raise InvalidInput(
            f"the embedding has {values.size} values; model {model.model} has dimension {model.dim}"
        )
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise InvalidInput(f"the embedding is not finite: value {bad} is {values[bad]}")
    norm = float(np.linalg.norm(values.astype(np.float64)))
    if not math.isfinite(norm) or norm < 1e-6:
        raise InvalidInput(
            f"the embedding cannot be normalised: its length is {norm:g} (at least 1e-6 needed)"
        )
    unit: npt.NDArray[np.float32] = (values.astype(np.float64) / norm).astype(np.float32)
    return unit

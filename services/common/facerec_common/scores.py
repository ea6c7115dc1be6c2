"""Similarity, confidence, and which threshold applies.

``similarity`` is the raw cosine of two unit vectors. ``confidence`` in [0, 1] is a Platt
calibration of it fitted per model on verification pairs (bench/calibrate.py), so a
threshold can be given in either unit.
"""

import math
from dataclasses import dataclass

from facerec_common.errors import InvalidInput, StageFailed
from facerec_common.messages import JobParams, PipelineMessage
from facerec_common.results import Scores


@dataclass(frozen=True)
class Calibration:
    a: float
    b: float

    def confidence(self, similarity: float) -> float:
        return 1.0 / (1.0 + math.exp(-(self.a * similarity + self.b)))

    def similarity_for(self, confidence: float) -> float:
        """The similarity at which ``confidence`` is reached."""
        clipped = min(max(confidence, 1e-6), 1 - 1e-6)
        return (math.log(clipped / (1 - clipped)) - self.b) / self.a


def resolve_threshold(
    params: JobParams,
    gallery_threshold: float | None,
    default_threshold: float,
    calibration: Calibration | None,
) -> float:
    """The request's threshold (in similarity or confidence), else the gallery's, else the
    model's default; always returned as a similarity."""
    if params.threshold is not None:
        return params.threshold
    if params.confidence_threshold is not None:
        if calibration is None:
            raise InvalidInput(
                "this model pack has no confidence calibration; give threshold instead"
            )
        return round(calibration.similarity_for(params.confidence_threshold), 4)
    if gallery_threshold is not None:
        return gallery_threshold
    return default_threshold


@dataclass(frozen=True)
class Scoring:
    """How one model's similarities are judged: its default threshold (the embedder's
    setting, else the model pack's) and its calibration. Every stage that decides
    "same person" asks this, so the threshold is resolved the same way everywhere."""

    default_threshold: float
    calibration: Calibration | None

    def threshold(self, params: JobParams, gallery_threshold: float | None = None) -> float:
        return resolve_threshold(
            params, gallery_threshold, self.default_threshold, self.calibration
        )

    def scored(self, similarity: float) -> Scores:
        return scored(similarity, self.calibration)

    def message_fields(self) -> tuple[float, tuple[float, float] | None]:
        """The message fields that carry this scoring to the index stage."""
        calibration = (self.calibration.a, self.calibration.b) if self.calibration else None
        return self.default_threshold, calibration


def message_scoring(msg: PipelineMessage) -> Scoring:
    """The scoring the embedder put in the message (the index stage runs no model)."""
    if msg.default_threshold is None:
        raise StageFailed("the message has no model threshold: it skipped the embed stage")
    calibration = Calibration(*msg.calibration) if msg.calibration else None
    return Scoring(msg.default_threshold, calibration)


def scored(similarity: float, calibration: Calibration | None) -> Scores:
    return Scores(
        similarity=round(similarity, 4),
        confidence=round(calibration.confidence(similarity), 4) if calibration else None,
    )

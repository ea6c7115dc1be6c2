"""Query parameters that several routes take, declared once."""

from typing import Annotated

from facerec_common.errors import InvalidInput
from facerec_common.quality import Landmarks, QualityFilter
from fastapi import Query

WaitQuery = Annotated[
    float,
    Query(
        ge=0, le=3600, description="Seconds to wait for the job to finish (capped by the server)"
    ),
]
MaxFacesQuery = Annotated[
    int | None, Query(ge=1, le=1000, description="Keep at most this many (largest) faces")
]
MinFaceSizeQuery = Annotated[
    int | None,
    Query(
        ge=8,
        le=4096,
        description="Smallest face to look for, in pixels of the image (default 32); "
        "smaller faces found are too_small",
    ),
]
FastQuery = Annotated[
    bool,
    Query(description="One coarse detector pass: faster, misses faces under ~1/20 of the image"),
]
ThresholdQuery = Annotated[
    float | None,
    Query(ge=-1, le=1, description="Cosine similarity for 'same person'; default per model"),
]
ConfidenceQuery = Annotated[
    float | None,
    Query(gt=0, lt=1, description="The threshold as a calibrated confidence instead"),
]


def threshold_params(threshold: float | None, confidence: float | None) -> dict[str, float | None]:
    if threshold is not None and confidence is not None:
        raise InvalidInput("give threshold or confidence_threshold, not both")
    return {"threshold": threshold, "confidence_threshold": confidence}


AllowDuplicateName = Annotated[
    bool,
    Query(description="Allow a second identity with a name the gallery has already"),
]


QualityFilterQuery = Annotated[
    QualityFilter | None,
    Query(
        description="Quality bar a face must pass (none, low, medium, high): enrolment refuses "
        "a face under it (default: the gallery's, else low); other calls report its "
        "quality_issues and neither embed nor match it (default: none)"
    ),
]
LandmarksQuery = Annotated[
    Landmarks,
    Query(description="106: each face's 106-point landmarks too (landmarks_106)"),
]

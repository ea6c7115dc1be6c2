"""What each job kind answers: one model per result and per face.

The stage that finishes a job builds its result from these models and nothing changes it
afterwards; the job record stores it as JSON, the gateway documents it in its OpenAPI
schema from the same models, and the batch ledger reads a batch image's faces through
them. A field renamed here is renamed for every reader at once, or fails type checking.
"""

from pydantic import BaseModel

from facerec_common.embeddings import EmbeddingModel, Encoding
from facerec_common.messages import DetectedFace, Detection, Refusal
from facerec_common.quality import FaceQuality, QualityIssue


class Face(BaseModel):
    """A detected face as every result shows it."""

    bbox: list[float]  # x1, y1, x2, y2 in pixels of the image
    landmarks: list[list[float]]  # 5 points: eyes, nose, mouth corners
    det_score: float
    # Smaller than the minimum size: reported, but neither embedded nor matched.
    too_small: bool
    # Sharpness, brightness, pose, size and one score (facerec_common.quality); null only
    # for a face no detector measured.
    quality: FaceQuality | None = None
    # Why the face is under the request's quality_filter: reported, neither embedded nor
    # matched (empty: it passed, or no filter was asked for).
    quality_issues: list[QualityIssue] = []
    # landmarks=106: insightface's 106 points (2d106det), x, y in pixels of the image.
    landmarks_106: list[list[float]] | None = None

    @classmethod
    def of(cls, face: DetectedFace) -> "Face":
        return cls(
            bbox=[round(v, 2) for v in face.bbox],
            landmarks=[[round(x, 2), round(y, 2)] for x, y in face.landmarks],
            det_score=round(face.det_score, 4),
            too_small=face.too_small,
            quality=face.quality,
            quality_issues=face.quality_issues,
            landmarks_106=(
                [[round(x, 2), round(y, 2)] for x, y in face.landmarks_106]
                if face.landmarks_106 is not None
                else None
            ),
        )


class ImageSize(BaseModel):
    width: int
    height: int
    # The detector's passes over this image and the smallest face they look for.
    detection: Detection | None = None


class NamedImage(ImageSize):
    name: str


class Scores(BaseModel):
    """A similarity (cosine) and, where the model pack is calibrated, its confidence."""

    similarity: float
    confidence: float | None


class IdentityRef(BaseModel):
    id: str
    name: str


class Candidate(Scores):
    id: str
    name: str


class RecognizedFace(Face):
    # Null: nobody in the gallery is above the threshold.
    identity: IdentityRef | None
    # The best candidate's scores (null without candidates).
    similarity: float | None
    confidence: float | None
    candidates: list[Candidate]


class BatchFace(RecognizedFace):
    face_id: str
    # Matched nobody and kept as one of the gallery's unassigned faces.
    unassigned: bool


class DetectResult(BaseModel):
    image: ImageSize
    faces: list[Face]


class VerifyResult(Scores):
    same: bool
    threshold: float
    model: str
    faces: list[Face]


class RecognizeResult(BaseModel):
    collection: str
    model: str | None
    threshold: float
    image: ImageSize
    faces: list[RecognizedFace]


class BatchImageResult(BaseModel):
    """One image of a batch: recognised, with the faces that matched nobody kept."""

    collection: str
    model: str | None
    threshold: float
    image: NamedImage
    faces: list[BatchFace]


class EnrolledFace(Face):
    face_id: str
    image: str


class DuplicateImage(BaseModel):
    """An image the identity has already: reported, not stored twice."""

    image: str
    sha256: str
    face_id: str


class RefusedImage(BaseModel):
    image: str
    reason: Refusal
    detail: str
    # Refused under the quality bar: every reason (``reason`` is the first) and the face's
    # measures.
    quality_issues: list[QualityIssue] = []
    quality: FaceQuality | None = None


class EnrolResult(BaseModel):
    identity_id: str
    identity_name: str
    faces: list[EnrolledFace]
    duplicates: list[DuplicateImage]
    refused: list[RefusedImage]


class VerifyIdentityResult(BaseModel):
    identity: IdentityRef
    same: bool
    # Null when the identity has no face to compare with.
    similarity: float | None
    confidence: float | None
    threshold: float
    model: str | None
    face: Face


class RepresentedFace(Face):
    # The face's unit vector, as the result's encoding says: JSON numbers in
    # ``embedding``, or float32 little-endian bytes in base64 in ``embedding_b64``. Both
    # null for a face that was not embedded (too small, or under a quality filter).
    embedding: list[float] | None = None
    embedding_b64: str | None = None


class RepresentResult(BaseModel):
    """Every face of an image with its embedding and the model that made it."""

    model: EmbeddingModel
    encoding: Encoding
    image: ImageSize
    faces: list[RepresentedFace]


class SearchResult(BaseModel):
    """1:N with a supplied embedding: the best identities of the gallery."""

    collection: str
    model: EmbeddingModel
    threshold: float
    # The best candidate when it reaches the threshold, else null.
    identity: IdentityRef | None
    similarity: float | None
    confidence: float | None
    candidates: list[Candidate]


class MigratedFaces(BaseModel):
    """One share of a gallery's migration: faces stored in the new model's index, and faces
    skipped because they were deleted from the gallery meanwhile."""

    migration_id: str
    stored: int
    skipped: int


# Every result a job can end with; which one is set by the job's kind.
JobResult = (
    DetectResult
    | VerifyResult
    | RecognizeResult
    | BatchImageResult
    | EnrolResult
    | VerifyIdentityResult
    | RepresentResult
    | SearchResult
    | MigratedFaces
)

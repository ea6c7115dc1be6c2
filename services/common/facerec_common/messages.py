"""The message that travels detect -> embed -> index (results are in ``results``).

One message type for the whole pipeline: each stage fills in its part (faces and crops,
then vectors) and passes it on as msgpack. Image bytes never travel in it: the job's images
wait in Redis under keys the message names implicitly (job id and image index).
"""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from facerec_common.embeddings import EmbeddingModel, Encoding
from facerec_common.migrations import PackInfo
from facerec_common.quality import FaceQuality, Landmarks, QualityFilter, QualityIssue


class JobKind(StrEnum):
    DETECT = "detect"
    RECOGNIZE = "recognize"
    ENROLL = "enroll"
    VERIFY = "verify"
    # 1:1 against an enrolled identity: the photo's largest face against its faces.
    VERIFY_IDENTITY = "verify_identity"
    # One image of a batch: recognised like RECOGNIZE; faces that match nobody are kept as
    # the gallery's unassigned faces and grouped into people.
    BATCH = "batch"
    # Every face of an image with its embedding, tagged with the model: nothing is searched.
    REPRESENT = "represent"
    # 1:N with a supplied embedding instead of an image: starts at the embed stage, which
    # checks the vector's model tag against its own.
    SEARCH = "search"
    # A migration's share of a gallery's kept crops, embedded again with the target pack
    # and stored in its index under the same point ids (``facerec_common.migrations``).
    MIGRATE = "migrate"


class Refusal(StrEnum):
    """Why an image yielded no usable face (enrol and verify report these per image)."""

    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    TOO_SMALL = "too_small"
    # Under the enrolment's quality bar (facerec_common.quality): the first reason found.
    BLURRED = "blurred"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    PROFILE = "profile"
    LOW_SCORE = "low_score"


class JobParams(BaseModel):
    collection: str | None = None
    identity_id: str | None = None
    threshold: float | None = None
    confidence_threshold: float | None = None
    top_k: int = 1
    max_faces: int | None = None
    largest_face: bool = False
    batch_id: str | None = None
    # Smallest face wanted (pixels of the original image): sizes the detector's passes.
    min_face_size: int | None = None
    # One coarse detector pass only: faster, misses faces much smaller than 1/20 of the image.
    fast: bool = False
    # The quality bar faces must pass: enrolment refuses the image of a face under it
    # (null: the gallery's level, else the detector's setting); other kinds report why and
    # neither embed nor match such a face (null: none).
    quality_filter: QualityFilter | None = None
    # 106: the 106-point landmarks too (a second model, run only when asked).
    landmarks: Landmarks = Landmarks.FIVE
    # Represent: how the embeddings are written in the result.
    encoding: Encoding = Encoding.JSON
    # Search: the model tag the supplied vector came with.
    embedding_model: EmbeddingModel | None = None
    # Enrolment: keep each face's aligned crop with its point (the gallery's keep_crops).
    keep_crops: bool = True
    # Migration: the pack the kept crops are embedded with, and the migration.
    model_pack: str | None = None
    migration_id: str | None = None


class DetectionPass(BaseModel):
    """One look of the detector at an image: the scale of the original, its input size."""

    scale: float
    width: int
    height: int


class Detection(BaseModel):
    """How an image was searched for faces."""

    passes: list[DetectionPass]
    # Faces down to this size (shorter box side, original pixels) are looked for.
    min_face_size: int


class ImageRef(BaseModel):
    index: int
    name: str
    width: int = 0
    height: int = 0
    refused: Refusal | None = None
    sha256: str | None = None  # batch images: the content hash the image is known by
    detection: Detection | None = None
    # Refused under the quality bar: every reason, and the face's measures.
    quality_issues: list[QualityIssue] = Field(default_factory=list)
    quality: FaceQuality | None = None


class DetectedFace(BaseModel):
    image: int
    bbox: list[float]
    landmarks: list[list[float]]
    det_score: float
    # Faces smaller than the minimum size are reported but neither embedded nor matched.
    too_small: bool = False
    quality: FaceQuality | None = None
    # Why the face is under the job's quality bar: reported, neither embedded nor matched.
    quality_issues: list[QualityIssue] = Field(default_factory=list)
    landmarks_106: list[list[float]] | None = None

    @property
    def size(self) -> float:
        return min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1])

    @property
    def embeddable(self) -> bool:
        """Large enough and over the job's quality bar: embedded and matched."""
        return not self.too_small and not self.quality_issues


class PipelineMessage(BaseModel):
    job_id: str
    kind: JobKind
    tenant: str
    params: JobParams = Field(default_factory=JobParams)
    images: list[ImageRef]
    faces: list[DetectedFace] = Field(default_factory=list)
    # uint8 crops, one per embeddable face, in the order of ``faces``.
    crops: bytes = b""
    model: str | None = None
    dim: int = 0
    # float32 vectors, one per crop.
    vectors: bytes = b""
    # Batch jobs: a small JPEG of each crop, kept with the unassigned faces for review.
    thumbnails: list[bytes] = Field(default_factory=list)
    # Enrolment: each crop as lossless WebP, kept with its enrolled face (see
    # ``kinds.KindRoute.keeps_crops``); empty when the gallery keeps none.
    kept_crops: list[bytes] = Field(default_factory=list)
    # While the gallery migrates: the same crops' vectors by the other model, stored in its
    # index under the same point ids (``facerec_common.migrations``).
    shadow_model: str | None = None
    shadow_dim: int = 0
    shadow_vectors: bytes = b""
    # Migration: the points whose kept crops travel in ``kept_crops``, in that order.
    point_ids: list[str] = Field(default_factory=list)
    default_threshold: float | None = None
    # Platt constants (a, b) of the model: confidence = sigmoid(a * similarity + b).
    calibration: tuple[float, float] | None = None

    def embedded_faces(self) -> list[DetectedFace]:
        """The faces that have a crop (and later a vector), in crop order."""
        return [face for face in self.faces if face.embeddable]

    def to_task(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


class IndexCallOp(StrEnum):
    COUNT = "count"
    DELETE_IDENTITY = "delete_identity"
    DELETE_COLLECTION = "delete_collection"
    DELETE_TENANT = "delete_tenant"
    # People: the gallery's unassigned faces grouped into clusters.
    PEOPLE = "people"
    PERSON = "person"
    NAME_PERSON = "name_person"
    MERGE_PEOPLE = "merge_people"
    SPLIT_FACE = "split_face"
    REJECT_FACE = "reject_face"
    CLUSTER = "cluster"
    # An identity's enrolled faces: list them, delete one; face counts of many identities.
    IDENTITY_FACES = "identity_faces"
    DELETE_FACE = "delete_face"
    COUNT_IDENTITIES = "count_identities"
    # Erase the unassigned faces a batch added (deleting the batch).
    DELETE_BATCH_FACES = "delete_batch_faces"
    # Gallery archives: a gallery's enrolled faces with their vectors, out and in.
    EXPORT_FACES = "export_faces"
    IMPORT_FACES = "import_faces"
    # A gallery's model migration (``facerec_common.migrations``): start it (send every
    # face's kept crop to be embedded), check before cutover, cut over, roll back, finish
    # (drop the old index).
    MIGRATION_START = "migration_start"
    MIGRATION_CHECK = "migration_check"
    MIGRATION_CUTOVER = "migration_cutover"
    MIGRATION_ROLLBACK = "migration_rollback"
    MIGRATION_FINISH = "migration_finish"


class IndexCall(BaseModel):
    """A request to the indexer that carries no image: counts and erasure."""

    job_id: str
    op: IndexCallOp
    tenant: str
    collection: str | None = None
    identity_id: str | None = None
    person_id: str | None = None
    face_id: str | None = None
    # merge: the person the faces move to
    target_id: str | None = None
    # count_identities: the identities to count the faces of
    identity_ids: list[str] = Field(default_factory=list)
    batch_id: str | None = None
    # Archives: the model whose vectors are read or written, and the faces written (each
    # with its vector as base64 float32).
    model: str | None = None
    dim: int = 0
    faces: list[dict[str, Any]] = Field(default_factory=list)
    # Migration start: the packs migrated from and to, as the embedders loaded them.
    packs: list[PackInfo] = Field(default_factory=list)

    def to_task(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

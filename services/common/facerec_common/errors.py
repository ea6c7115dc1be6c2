"""Domain errors, free of HTTP.

Workers raise these; only the gateway maps them to status codes and problem+json. Each
carries a stable ``code`` (the problem type's slug) and whether retrying could help.
"""

from typing import ClassVar


class FaceRecError(Exception):
    """Base of every error the service reports to a client."""

    code: ClassVar[str] = "error"
    title: ClassVar[str] = "Error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(FaceRecError):
    code = "invalid-input"
    title = "Invalid input"


class EmptyImage(InvalidInput):
    code = "empty-image"
    title = "Empty image"


class ImageUndecodable(InvalidInput):
    code = "image-undecodable"
    title = "Image cannot be decoded"


class UnsupportedImageType(InvalidInput):
    code = "unsupported-image-type"
    title = "Unsupported image type"


class ImageTooLarge(InvalidInput):
    code = "image-too-large"
    title = "Image too large"


class TooManyPixels(InvalidInput):
    code = "too-many-pixels"
    title = "Image has too many pixels"


class NotFound(FaceRecError):
    code = "not-found"
    title = "Not found"


class IdentityNotFound(NotFound):
    code = "identity-not-found"
    title = "Identity not found"


class CollectionNotFound(NotFound):
    """Searching or reading a gallery that does not exist: never an empty answer, since a
    mistyped gallery name would otherwise make everyone "unknown"."""

    code = "collection-not-found"
    title = "Gallery not found"


class FaceNotFound(NotFound):
    code = "face-not-found"
    title = "Face not found"


class BatchCancelled(FaceRecError):
    """The image's batch was cancelled or deleted while the image waited in a queue."""

    code = "batch-cancelled"
    title = "Batch cancelled"


class MigrationConflict(FaceRecError):
    """A model migration step that the gallery's migration state does not allow now: a
    second migration while one runs, a cutover before every face is carried, a rollback
    after the old index was dropped."""

    code = "migration-conflict"
    title = "Migration step not possible now"


class NoFaceFound(InvalidInput):
    code = "no-face"
    title = "No face found"


class IndexUnavailable(FaceRecError):
    code = "index-unavailable"
    title = "Face index unavailable"
    retryable = True


class StageFailed(FaceRecError):
    """A stage raised something that is not a refusal, on every one of its tries."""

    code = "stage-error"
    title = "A pipeline stage failed on this job"


class WorkerCrashed(FaceRecError):
    """The stage's worker died while running this job, on every one of its tries."""

    code = "worker-crashed"
    title = "The worker died on this job"


class StageTimeout(FaceRecError):
    """The stage ran past its hard time limit."""

    code = "stage-timeout"
    title = "A pipeline stage took too long"


class ModelFileMismatch(FaceRecError):
    """A model file's sha256 differs from the pack's manifest: refuse to serve with it."""

    code = "model-file-mismatch"
    title = "Model file does not match its checksum"


ERRORS_BY_CODE: dict[str, type[FaceRecError]] = {
    cls.code: cls
    for cls in (
        FaceRecError,
        InvalidInput,
        EmptyImage,
        ImageUndecodable,
        UnsupportedImageType,
        ImageTooLarge,
        TooManyPixels,
        NotFound,
        IdentityNotFound,
        CollectionNotFound,
        FaceNotFound,
        BatchCancelled,
        MigrationConflict,
        NoFaceFound,
        IndexUnavailable,
        StageFailed,
        WorkerCrashed,
        StageTimeout,
        ModelFileMismatch,
    )
}

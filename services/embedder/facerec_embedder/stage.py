"""The embed stage: crops to vectors; a job whose kind ends here (verify) is answered,
the others go on (see ``facerec_common.kinds``)."""

import cv2
import numpy as np
import numpy.typing as npt
from facerec_common.codec import pack_vectors, unpack_crops
from facerec_common.embeddings import EmbeddingModel, Encoding, encode_b64
from facerec_common.errors import InvalidInput
from facerec_common.kinds import EMBED, route
from facerec_common.messages import JobKind, PipelineMessage
from facerec_common.results import (
    Face,
    ImageSize,
    RepresentedFace,
    RepresentResult,
    VerifyResult,
)
from facerec_common.scores import Scoring
from facerec_common.worker import StageOutcome

from facerec_embedder.model import FaceEmbedder


class EmbedStage:
    def __init__(self, embedder: FaceEmbedder, scoring: Scoring, tag: EmbeddingModel) -> None:
        self.embedder = embedder
        self.scoring = scoring
        # What every vector this stage makes is tagged with, and a supplied one must carry.
        self.tag = tag

    def run(self, msg: PipelineMessage) -> StageOutcome:
        if msg.kind is JobKind.SEARCH:
            return StageOutcome(forward=self._supplied(msg))
        crops = unpack_crops(msg.crops)
        vectors = self.embedder.embed(crops)
        kind = route(msg.kind)
        if msg.kind is JobKind.REPRESENT:
            return StageOutcome(result=self._represented(msg, vectors))
        if kind.finishes(EMBED):
            threshold = self.scoring.threshold(msg.params)
            similarity = float(np.dot(vectors[0], vectors[1]))
            scores = self.scoring.scored(similarity)
            return StageOutcome(
                result=VerifyResult(
                    same=similarity >= threshold,
                    similarity=scores.similarity,
                    confidence=scores.confidence,
                    threshold=threshold,
                    model=self.embedder.name,
                    faces=[Face.of(face) for face in msg.faces],
                )
            )
        if kind.thumbnails:
            msg.thumbnails = [thumbnail(crop) for crop in crops]
        if kind.keeps_crops and msg.params.keep_crops:
            msg.kept_crops = [kept_crop(crop) for crop in crops]
        msg.crops = b""
        msg.vectors = pack_vectors(vectors)
        msg.model = self.embedder.name
        msg.dim = self.embedder.dim
        # The index stage scores matches as this model does (see scores.message_scoring).
        msg.default_threshold, msg.calibration = self.scoring.message_fields()
        return StageOutcome(forward=msg)

    def _represented(
        self, msg: PipelineMessage, vectors: npt.NDArray[np.float32]
    ) -> RepresentResult:
        encoding = msg.params.encoding
        unit = iter(vectors)
        # The faces that were embedded, in crop order (the others are reported without).
        embedded = {id(face) for face in msg.embedded_faces()}
        faces = []
        for face in msg.faces:
            out = RepresentedFace(**Face.of(face).model_dump())
            if id(face) in embedded:
                vector = next(unit)
                if encoding is Encoding.BASE64:
                    out.embedding_b64 = encode_b64(vector)
                else:
                    out.embedding = [float(v) for v in vector]
            faces.append(out)
        image = msg.images[0]
        return RepresentResult(
            model=self.tag,
            encoding=encoding,
            image=ImageSize(width=image.width, height=image.height, detection=image.detection),
            faces=faces,
        )

    def _supplied(self, msg: PipelineMessage) -> PipelineMessage:
        """A search's own vector: refused unless it comes from this stage's model; then
        it travels on as if this stage had made it."""
        theirs = msg.params.embedding_model
        if theirs is None:
            raise InvalidInput("a search by embedding needs the embedding's model tag")
        differences = self.tag.differences(theirs)
        if differences:
            raise InvalidInput(
                "the embedding is from another model than this deployment's "
                f"({self.tag.pack} {self.tag.model} {self.tag.version}): " + "; ".join(differences)
            )
        msg.model = self.embedder.name
        msg.dim = self.embedder.dim
        msg.default_threshold, msg.calibration = self.scoring.message_fields()
        return msg


THUMBNAIL_SIZE = 64


def thumbnail(crop: npt.NDArray[np.uint8]) -> bytes:
    """A small JPEG of an aligned crop, kept with an unassigned or enrolled face so faces
    can be reviewed by eye; never used for matching."""
    small = cv2.resize(crop, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        return b""
    return bytes(encoded.tobytes())


def kept_crop(crop: npt.NDArray[np.uint8]) -> bytes:
    """An aligned 112x112 crop as lossless WebP, kept with an enrolled face so that it can
    be embedded again by another model without the photo. Lossless: decoding gives back
    the very pixels this model embedded. WebP, not PNG: about 11.6 kB a face against 18 kB
    for PNG on the test faces, decoded as exactly."""
    ok, encoded = cv2.imencode(".webp", crop, [cv2.IMWRITE_WEBP_QUALITY, 101])
    if not ok:
        raise ValueError("the aligned crop could not be encoded as WebP")
    return bytes(encoded.tobytes())

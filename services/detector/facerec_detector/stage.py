"""The detect stage: find faces in each image of a job, apply the job kind's rules about
how many faces it wants, align the ones to embed, and say what happens next."""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from facerec_common.codec import CROP_SIZE, pack_crops
from facerec_common.errors import FaceRecError, InvalidInput, NoFaceFound
from facerec_common.kinds import DETECT, route
from facerec_common.messages import (
    DetectedFace,
    Detection,
    DetectionPass,
    PipelineMessage,
    Refusal,
)
from facerec_common.metrics import FACES_PER_IMAGE
from facerec_common.quality import Landmarks, QualityFilter, issues
from facerec_common.results import DetectResult, Face, ImageSize
from facerec_common.worker import StageOutcome

from facerec_detector import passes
from facerec_detector.decode import decode_bgr
from facerec_detector.model import FaceDetector, LandmarkCrops, Landmarks106, align
from facerec_detector.quality import measure
from facerec_detector.settings import DetectorSettings


class ImageExpired(FaceRecError):
    code = "image-expired"
    title = "Image expired"


class DetectStage:
    def __init__(
        self,
        detector: FaceDetector,
        settings: DetectorSettings,
        landmarks_106: Landmarks106 | None = None,
    ) -> None:
        self._detector = detector
        self._settings = settings
        self._landmarks_106 = landmarks_106

    def _quality_filter(self, msg: PipelineMessage) -> QualityFilter:
        """The bar this job's faces must pass: enrolment's defaults to the setting (the
        gateway puts the gallery's level in the request), other kinds' to none."""
        if msg.params.quality_filter is not None:
            return msg.params.quality_filter
        if route(msg.kind).refusals_in_result:
            return self._settings.enrol_quality_filter
        return QualityFilter.NONE

    def run(self, msg: PipelineMessage, load_image: Callable[[int], bytes | None]) -> StageOutcome:
        kind = route(msg.kind)
        faces: list[DetectedFace] = []
        crops: list[npt.NDArray[np.uint8]] = []
        max_faces = min(msg.params.max_faces or self._settings.max_faces, self._settings.max_faces)
        level = self._quality_filter(msg)
        want_106 = msg.params.landmarks is Landmarks.ALL_106
        if want_106 and self._landmarks_106 is None:
            raise InvalidInput("this detector has no 106-point landmark model")
        # The 106-point model sees every chosen face of the job in one call, at the end.
        landmark_cuts: list[tuple[list[DetectedFace], LandmarkCrops]] = []
        for ref in msg.images:
            data = load_image(ref.index)
            if data is None:
                raise ImageExpired(
                    f"image {ref.name!r} is no longer stored (its time to live ran out)"
                )
            pixels = decode_bgr(data, self._settings, ref.name)
            ref.height, ref.width = pixels.shape[:2]
            min_face = msg.params.min_face_size or self._settings.min_face_size
            looks = passes.plan(
                ref.width,
                ref.height,
                min_face,
                self._settings.det_size,
                self._settings.max_detect_pixels,
                fast=msg.params.fast,
            )
            ref.detection = Detection(
                passes=[
                    DetectionPass(scale=p.scale, width=p.width, height=p.height) for p in looks
                ],
                min_face_size=max(min_face, passes.smallest_face(looks)),
            )
            image_faces = self._faces(ref.index, pixels, max_faces, looks, min_face)
            # Every face is measured on its aligned crop; those over the bar are embedded.
            aligned = align(
                pixels,
                np.array([f.landmarks for f in image_faces], dtype=np.float32).reshape(-1, 5, 2),
            )
            for face, crop in zip(image_faces, aligned, strict=True):
                face.quality = measure(
                    crop, np.asarray(face.landmarks, dtype=np.float32), face.det_score, face.size
                )
                face.quality_issues = issues(face.quality, level)
            # Faces come largest first: a kind of one face per image takes the first.
            chosen = image_faces[:1] if kind.one_face else image_faces
            if kind.one_face:
                refusal = self._refusal(image_faces, chosen, msg.params.largest_face)
                if refusal is not None:
                    if not kind.refusals_in_result:
                        raise NoFaceFound(f"image {ref.name!r}: {refusal.value.replace('_', ' ')}")
                    ref.refused = refusal
                    if chosen and chosen[0].quality_issues:
                        ref.quality_issues = chosen[0].quality_issues
                        ref.quality = chosen[0].quality
                    continue
            faces.extend(chosen)
            if want_106 and self._landmarks_106 is not None and chosen:
                landmark_cuts.append(
                    (chosen, self._landmarks_106.cut(pixels, [f.bbox for f in chosen]))
                )
            keep = [i for i, f in enumerate(image_faces[: len(chosen)]) if f.embeddable]
            crops.append(aligned[keep])
        if landmark_cuts and self._landmarks_106 is not None:
            everyone = LandmarkCrops(
                crops=[c for _, cut in landmark_cuts for c in cut.crops],
                inverses=[m for _, cut in landmark_cuts for m in cut.inverses],
            )
            points = iter(self._landmarks_106.points(everyone))
            for chosen_faces, _ in landmark_cuts:
                for face in chosen_faces:
                    face.landmarks_106 = [[float(x), float(y)] for x, y in next(points)]
        msg.faces = faces
        if kind.finishes(DETECT):
            return StageOutcome(result=detect_result(msg))
        all_crops = (
            np.concatenate(crops)
            if crops
            else np.empty((0, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
        )
        msg.crops = pack_crops(all_crops)
        return StageOutcome(forward=msg)

    def _faces(
        self,
        image_index: int,
        pixels: npt.NDArray[np.uint8],
        max_faces: int,
        looks: list[passes.DetectionPass],
        min_face: int,
    ) -> list[DetectedFace]:
        found = self._detector.detect(pixels, max_faces, looks)
        FACES_PER_IMAGE.observe(len(found.boxes))
        faces = []
        for box, score, points in zip(found.boxes, found.scores, found.landmarks, strict=True):
            face = DetectedFace(
                image=image_index,
                bbox=[float(v) for v in box],
                landmarks=[[float(x), float(y)] for x, y in points],
                det_score=float(score),
            )
            face.too_small = face.size < min_face
            faces.append(face)
        return faces

    @staticmethod
    def _refusal(
        faces: list[DetectedFace], chosen: list[DetectedFace], largest_face: bool
    ) -> Refusal | None:
        if not faces:
            return Refusal.NO_FACE
        if len(faces) > 1 and not largest_face:
            return Refusal.SEVERAL_FACES
        if chosen[0].too_small:
            return Refusal.TOO_SMALL
        if chosen[0].quality_issues:
            return Refusal(chosen[0].quality_issues[0].value)
        return None


def detect_result(msg: PipelineMessage) -> DetectResult:
    image = msg.images[0]
    return DetectResult(
        image=ImageSize(width=image.width, height=image.height, detection=image.detection),
        faces=[Face.of(face) for face in msg.faces],
    )

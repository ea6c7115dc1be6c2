"""Every face in a phone photo: small faces in 12 megapixels and large ones, with the real
detector (SCRFD from the bundled pack) in this process, through the detect stage."""

import io
from collections.abc import Callable, Iterator
from typing import Any

import images
import pytest
from facerec_common.messages import ImageRef, JobKind, JobParams, PipelineMessage
from facerec_detector.settings import DetectorSettings
from facerec_detector.stage import DetectStage
from facerec_detector.worker import load_stage
from PIL import Image
from scenes import PHONE, FaceCut, compose, cut, jpeg, matches

Box = tuple[float, float, float, float]


@pytest.fixture(scope="module")
def stage() -> Iterator[DetectStage]:
    yield load_stage(DetectorSettings(intra_op_threads=1))


def detect(stage: DetectStage, data: bytes, **params: object) -> tuple[list[Box], dict[str, Any]]:
    msg = PipelineMessage(
        job_id="test",
        kind=JobKind.DETECT,
        tenant="t",
        params=JobParams.model_validate(params),
        images=[ImageRef(index=0, name="scene.jpg")],
    )
    outcome = stage.run(msg, lambda _: data)
    assert outcome.result is not None
    result = outcome.result.model_dump()
    return [tuple(face["bbox"]) for face in result["faces"]], result["image"]


@pytest.fixture(scope="module")
def t1_faces(stage: DetectStage) -> list[FaceCut]:
    """The six faces of insightface's group photo, each with the photo around it."""
    photo = Image.open(io.BytesIO(images.group_photo())).convert("RGB")
    boxes, _ = detect(stage, images.group_photo())
    assert len(boxes) == 6
    return [cut(photo, box) for box in boxes]


def test_six_40_px_faces_in_12_megapixels_are_all_found(
    stage: DetectStage, t1_faces: list[FaceCut]
) -> None:
    photo, truth = compose(t1_faces, 40)
    found, image = detect(stage, jpeg(photo))
    assert matches(found, truth) == [1] * 6
    assert len(found) == 6
    assert image["width"] == PHONE[0] and image["detection"]["min_face_size"] <= 40
    assert len(image["detection"]["passes"]) >= 2


def test_a_2000_px_face_in_12_megapixels_is_found(
    stage: DetectStage, t1_faces: list[FaceCut]
) -> None:
    photo, truth = compose(t1_faces[:1], 2000)
    found, _ = detect(stage, jpeg(photo))
    assert matches(found, truth) == [1]
    assert len(found) == 1


def test_40_px_and_2000_px_faces_in_one_photo_are_each_found_once(
    stage: DetectStage, t1_faces: list[FaceCut]
) -> None:
    large, large_box = compose(t1_faces[:1], 1600, size=(2000, 3024))
    small, small_boxes = compose(t1_faces[1:], 40, size=(2032, 3024), seed=1)
    photo = Image.new("RGB", PHONE)
    photo.paste(large, (0, 0))
    photo.paste(small, (2000, 0))
    truth = large_box + [(x1 + 2000, y1, x2 + 2000, y2) for x1, y1, x2, y2 in small_boxes]
    found, _ = detect(stage, jpeg(photo))
    assert matches(found, truth) == [1] * 6
    assert len(found) == 6


@pytest.mark.parametrize("size", [(250, 250), (1280, 960), PHONE, (8000, 4000)])
def test_a_photo_without_faces_gives_none_at_any_size(
    stage: DetectStage, size: tuple[int, int]
) -> None:
    # A face mask on a plain background (no human face), and the empty textured canvas.
    mask = Image.open(io.BytesIO(images.no_face())).convert("RGB").resize(size)
    canvas, _ = compose([], 40, size=size)
    for photo in (mask, canvas):
        found, _ = detect(stage, jpeg(photo))
        assert found == []


def test_a_phone_photo_taken_sideways_is_found_as_upright(
    stage: DetectStage, t1_faces: list[FaceCut]
) -> None:
    photo, truth = compose(t1_faces, 48)
    upright, _ = detect(stage, jpeg(photo))
    # Stored rotated, with EXIF orientation 6 ("rotate 90 clockwise to view").
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = photo.transpose(Image.Transpose.ROTATE_90)
    sideways, image = detect(stage, jpeg(stored, exif=exif.tobytes()))
    assert (image["width"], image["height"]) == PHONE
    assert matches(sideways, truth) == [1] * 6
    assert len(sideways) == len(upright) == 6


def test_fast_mode_runs_one_pass_and_small_images_are_not_enlarged(
    stage: DetectStage, t1_faces: list[FaceCut]
) -> None:
    photo, _ = compose(t1_faces, 40)
    _, image = detect(stage, jpeg(photo), fast=True)
    passes = image["detection"]["passes"]
    assert [(p["width"], p["height"]) for p in passes] == [(640, 480)]
    _, small = detect(stage, images.variant(images.portrait(), scale=250 / 640))
    assert [p["scale"] for p in small["detection"]["passes"]] == [1.0]


def test_a_face_found_below_the_minimum_is_too_small_not_named(
    stage: DetectStage, t1_faces: list[FaceCut]
) -> None:
    photo, _ = compose(t1_faces, 40)
    msg = PipelineMessage(
        job_id="test",
        kind=JobKind.DETECT,
        tenant="t",
        params=JobParams(min_face_size=64),
        images=[ImageRef(index=0, name="scene.jpg")],
    )
    load: Callable[[int], bytes] = lambda _: jpeg(photo)  # noqa: E731
    outcome = stage.run(msg, load)
    assert outcome.result is not None
    faces = outcome.result.model_dump()["faces"]
    assert faces and all(face["too_small"] for face in faces)

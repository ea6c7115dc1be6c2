"""Thresholds: model default, gallery setting, request override, in similarity or confidence."""

import uuid

import httpx
import images
import pytest
from facerec_common.scores import Calibration
from facerec_runtime.packs import KNOWN_PACKS
from helpers import assert_problem, enroll, new_identity, recognize

PACK = KNOWN_PACKS["buffalo_sc"]
assert PACK.calibration is not None
CALIBRATION = Calibration(*PACK.calibration)


@pytest.fixture
def gallery(api: httpx.Client) -> tuple[str, str]:
    collection = f"thresholds-{uuid.uuid4().hex[:8]}"
    person = new_identity(api, collection, "Yao Ming")
    enroll(api, collection, person, images.variant(images.portrait(), flip=True, scale=1.4))
    return collection, person


def test_confidence_follows_the_calibration(api: httpx.Client, gallery: tuple[str, str]) -> None:
    collection, person = gallery
    result = recognize(api, collection, images.portrait())
    assert result["threshold"] == PACK.default_threshold
    face = result["faces"][0]
    assert face["identity"]["id"] == person
    assert 0 < face["confidence"] <= 1
    assert face["confidence"] == pytest.approx(CALIBRATION.confidence(face["similarity"]), abs=1e-3)
    assert face["candidates"][0]["confidence"] == face["confidence"]


def test_gallery_threshold_overrides_the_default_and_a_request_overrides_both(
    api: httpx.Client, gallery: tuple[str, str]
) -> None:
    collection, person = gallery
    strict = api.patch(f"/v1/collections/{collection}", json={"threshold": 0.99})
    assert strict.status_code == 200 and strict.json()["threshold"] == 0.99
    assert api.get(f"/v1/collections/{collection}").json() == {
        "name": collection,
        "identities": 1,
        "threshold": 0.99,
        "quality_filter": None,
        "keep_crops": True,
        "model_pack": None,
    }
    result = recognize(api, collection, images.portrait())
    assert result["threshold"] == 0.99 and result["faces"][0]["identity"] is None

    lenient = recognize(api, collection, images.portrait(), threshold=0.2)
    assert lenient["threshold"] == 0.2 and lenient["faces"][0]["identity"]["id"] == person

    api.patch(f"/v1/collections/{collection}", json={"threshold": None})
    assert recognize(api, collection, images.portrait())["threshold"] == PACK.default_threshold


def test_a_threshold_can_be_given_as_a_confidence(
    api: httpx.Client, gallery: tuple[str, str]
) -> None:
    collection, _ = gallery
    result = recognize(api, collection, images.portrait(), confidence_threshold=0.5)
    assert result["threshold"] == pytest.approx(CALIBRATION.similarity_for(0.5), abs=1e-4)
    both = api.post(
        f"/v1/collections/{collection}/recognize",
        params={"threshold": 0.3, "confidence_threshold": 0.5},
        files={"image": ("a.jpg", images.portrait(), "image/jpeg")},
    )
    assert_problem(both, 422, "invalid-input")

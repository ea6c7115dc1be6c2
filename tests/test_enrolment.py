"""Enrolment a user can fix: duplicate names refused, the same image not stored twice, an
identity's faces listed and one deleted, renaming; batches cancelled and deleted; errors that
say what to do."""

import uuid

import httpx
import images
from helpers import JPEG, assert_problem, done, enroll, finished, new_identity, recognize


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def one_face_of_the_group(api: httpx.Client) -> bytes:
    detected = done(
        api.post(
            "/v1/detect",
            params={"wait": 30},
            files={"image": ("g.jpg", images.group_photo(), JPEG)},
        )
    )
    x1, y1, x2, y2 = detected["faces"][0]["bbox"]
    margin = (x2 - x1) * 0.4
    box = (int(x1 - margin), int(y1 - margin), int(x2 + margin), int(y2 + margin))
    return images.variant(images.group_photo(), box=box, scale=2.0)


def test_a_second_identity_of_the_same_name_is_refused_unless_asked(api: httpx.Client) -> None:
    c = unique("names")
    first = new_identity(api, c, "Ada Lovelace")
    again = api.post(f"/v1/collections/{c}/identities", json={"name": "ada  lovelace"})
    body = assert_problem(again, 409, "conflict")
    assert first in body["detail"] and "allow_duplicate_name" in body["detail"]
    second = api.post(
        f"/v1/collections/{c}/identities",
        params={"allow_duplicate_name": "true"},
        json={"name": "Ada Lovelace"},
    )
    assert second.status_code == 201
    # Deleting the identity that held the name frees it.
    api.delete(f"/v1/collections/{c}/identities/{first}")
    assert new_identity(api, c, "Grace Hopper")
    assert api.delete(f"/v1/collections/{c}/identities/{second.json()['id']}").status_code == 200
    assert new_identity(api, c, "Ada Lovelace")


def test_the_same_image_enrolled_twice_is_a_duplicate_and_not_stored(api: httpx.Client) -> None:
    c = unique("dupes")
    identity = new_identity(api, c, "Yao Ming")
    first = enroll(api, c, identity, images.portrait())
    assert len(first["faces"]) == 1 and first["duplicates"] == []
    other = images.variant(images.portrait(), flip=True)
    # The same bytes again, in the same request as a new photo and in a second request.
    again = enroll(api, c, identity, images.portrait(), other, images.portrait())
    assert len(again["faces"]) == 1
    assert [d["face_id"] for d in again["duplicates"]] == [first["faces"][0]["face_id"]] * 2
    listed = api.get(f"/v1/collections/{c}/identities").json()["identities"]
    assert [i["face_count"] for i in listed] == [2]


def test_an_identitys_faces_are_listed_and_one_can_be_deleted(api: httpx.Client) -> None:
    c = unique("fix")
    identity = new_identity(api, c, "Yao Ming")
    wrong = one_face_of_the_group(api)  # someone else
    enrolled = enroll(api, c, identity, images.portrait(), wrong)
    assert len(enrolled["faces"]) == 2, enrolled
    faces = api.get(f"/v1/collections/{c}/identities/{identity}/faces").json()["faces"]
    assert [f["image"] for f in faces] == ["face0.jpg", "face1.jpg"]
    assert all(len(f["bbox"]) == 4 and f["thumbnail"] for f in faces)
    bad = faces[1]["face_id"]
    erased = api.delete(f"/v1/collections/{c}/identities/{identity}/faces/{bad}")
    assert erased.status_code == 200, erased.text
    assert erased.json()["deleted_faces"] == 1 and erased.json()["remaining_faces"] == 0
    assert erased.json()["face_count"] == 1
    assert_problem(
        api.delete(f"/v1/collections/{c}/identities/{identity}/faces/{bad}"), 404, "face-not-found"
    )
    assert api.get(f"/v1/collections/{c}/identities/{identity}").json()["face_count"] == 1
    # Deleted means gone from matching too: the wrong face is unknown now.
    assert recognize(api, c, wrong)["faces"][0]["identity"] is None


def test_an_identity_is_renamed_and_its_metadata_replaced(api: httpx.Client) -> None:
    c = unique("rename")
    identity = new_identity(api, c, "Yao")
    enroll(api, c, identity, images.portrait())
    taken = new_identity(api, c, "Taken")
    path = f"/v1/collections/{c}/identities/{identity}"
    changed = api.patch(path, json={"name": "Yao Ming", "metadata": {"team": "Rockets"}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Yao Ming" and changed.json()["face_count"] == 1
    assert api.get(path).json()["metadata"] == {"team": "Rockets"}
    face = recognize(api, c, images.variant(images.portrait(), flip=True))["faces"][0]
    assert face["identity"] == {"id": identity, "name": "Yao Ming"}
    assert_problem(api.patch(path, json={"name": "taken"}), 409, "conflict")
    assert_problem(api.patch(path, json={"name": ""}), 422, "invalid-request")
    assert api.patch(f"/v1/collections/{c}/identities/{taken}", json={"name": "Yao"}).is_success


def test_a_batch_is_cancelled_and_deleted(api: httpx.Client) -> None:
    c = unique("cancel")
    # No body at all: an optional body may be left out.
    batch = api.post(f"/v1/collections/{c}/batches")
    assert batch.status_code == 201, batch.text
    assert "callback" not in batch.json()
    batch_id = batch.json()["id"]
    photos = [images.variant(images.group_photo(), scale=1 - 0.02 * i) for i in range(6)]
    files = [("image", (f"{i}.jpg", p, JPEG)) for i, p in enumerate(photos)]
    assert api.post(f"/v1/collections/{c}/batches/{batch_id}/images", files=files).is_success
    cancelled = api.post(f"/v1/collections/{c}/batches/{batch_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    late = api.post(
        f"/v1/collections/{c}/batches/{batch_id}/images",
        files=[("image", ("late.jpg", images.portrait(), JPEG))],
    )
    assert_problem(late, 409, "conflict")
    # Every image ends: processed before the cancel, or failed as batch-cancelled after it.
    for _ in range(120):
        counts = api.get(f"/v1/collections/{c}/batches/{batch_id}").json()["counts"]
        if counts["queued"] == 0:
            break
        done(api.post("/v1/detect", params={"wait": 5}, files={"image": ("x", photos[0], JPEG)}))
    assert counts["queued"] == 0 and counts["done"] + counts["failed"] == 6
    assert counts["failed"] >= 1  # the cancel came before the pipeline reached them all
    results = api.get(f"/v1/collections/{c}/batches/{batch_id}/results").json()["results"]
    for result in results:
        if result["status"] == "failed":
            error = result["error"]
            assert error["code"] == "batch-cancelled" and error["type"].endswith(error["code"])
    unassigned = sum(len(r["faces"]) for r in results if r["status"] == "done")
    people = api.get(f"/v1/collections/{c}/people").json()
    stored = sum(p["face_count"] for p in people["people"]) + people["unclustered"]
    assert stored == unassigned  # nothing of a cancelled image was kept

    deleted = api.delete(f"/v1/collections/{c}/batches/{batch_id}")
    assert deleted.status_code == 200, deleted.text
    body = deleted.json()
    assert body["deleted_faces"] == stored and body["remaining_faces"] == 0
    # Failed images are forgotten as they fail; the processed ones when the batch goes.
    assert body["forgotten_images"] == counts["done"]
    assert_problem(api.get(f"/v1/collections/{c}/batches/{batch_id}"), 404, "not-found")
    assert api.get(f"/v1/collections/{c}/people").json() == {"people": [], "unclustered": 0}
    # Forgotten: the same photos can be sent again, in a new batch.
    again = api.post(f"/v1/collections/{c}/batches", json={}).json()["id"]
    added = api.post(f"/v1/collections/{c}/batches/{again}/images", files=files).json()
    assert len(added["accepted"]) == 6 and added["duplicates"] == []
    api.post(f"/v1/collections/{c}/batches/{again}/close")
    assert finished(api, c, again)["status"] == "done"
    done_batch = api.post(f"/v1/collections/{c}/batches/{again}/cancel")
    assert_problem(done_batch, 409, "conflict")


def test_errors_say_what_to_do(api: httpx.Client) -> None:
    c = unique("advice")
    identity = new_identity(api, c, "Group")
    enrolled = enroll(api, c, identity, images.group_photo())
    [refused] = enrolled["refused"]
    assert refused["reason"] == "several_faces" and "largest_face" in refused["detail"]
    no_type = api.post(
        f"/v1/collections/{c}/identities",
        content=b'{"name": "Ada"}',
        headers={"content-type": ""},
    )
    body = assert_problem(no_type, 415, "unsupported-media-type")
    assert "application/json" in body["detail"]
    # A failed job's error and the problem of the same failure share type and code.
    truncated = images.portrait()[:2000]
    waited = api.post(
        "/v1/detect", params={"wait": 30}, files={"image": ("t.jpg", truncated, JPEG)}
    )
    problem = assert_problem(waited, 422, "image-undecodable")
    job = api.get(f"/v1/jobs/{problem['job_id']}").json()
    assert job["status"] == "failed"
    assert (job["error"]["code"], job["error"]["type"]) == (problem["code"], problem["type"])
    # Merging a person into itself is a bad request, not a missing person.
    person = str(uuid.uuid4())
    merged = api.post(f"/v1/collections/{c}/people/{person}/merge", json={"into": person})
    assert_problem(merged, 422, "invalid-input")

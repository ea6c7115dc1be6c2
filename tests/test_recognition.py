"""The pipeline end to end over HTTP: real Redis, Celery workers, models and Qdrant Edge."""

import uuid

import httpx
import images
from helpers import done, enroll, new_identity, recognize, upload
from stack import Stack


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_detect_finds_every_face_of_a_group_photo(api: httpx.Client) -> None:
    result = done(api.post("/v1/detect", params={"wait": 30}, files=upload(images.group_photo())))
    assert (result["image"]["width"], result["image"]["height"]) == (1280, 886)
    # Seen once, at 640 on its longest side: 32 px faces are still 16 px there.
    assert result["image"]["detection"]["passes"] == [{"scale": 0.5, "width": 640, "height": 448}]
    faces = result["faces"]
    assert len(faces) == 6
    for face in faces:
        x1, y1, x2, y2 = face["bbox"]
        assert 0 <= x1 < x2 <= 1280 and 0 <= y1 < y2 <= 886
        assert len(face["landmarks"]) == 5
        assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face["landmarks"])
        assert face["det_score"] > 0.5


def test_image_without_a_face_yields_no_face(api: httpx.Client) -> None:
    detected = done(api.post("/v1/detect", params={"wait": 30}, files=upload(images.no_face())))
    assert detected["faces"] == []
    assert recognize(api, unique("empty"), images.no_face())["faces"] == []


def test_enrolled_person_is_recognised_in_a_different_photo(api: httpx.Client) -> None:
    collection = unique("people")
    yao = new_identity(api, collection, "Yao Ming")
    enrolled = enroll(
        api, collection, yao, images.variant(images.portrait(), flip=True, scale=1.6, quality=60)
    )
    assert len(enrolled["faces"]) == 1 and enrolled["refused"] == []

    result = recognize(api, collection, images.portrait())
    [face] = result["faces"]
    assert face["identity"] == {"id": yao, "name": "Yao Ming"}
    assert face["similarity"] >= result["threshold"]
    assert face["candidates"][0]["id"] == yao


def test_faces_of_people_never_enrolled_come_back_unknown(api: httpx.Client) -> None:
    collection = unique("people")
    yao = new_identity(api, collection, "Yao Ming")
    enroll(api, collection, yao, images.portrait())
    for photo in (images.group_photo(), images.read("gdp.jpg")):
        result = recognize(api, collection, photo, top_k=3)
        assert len(result["faces"]) >= 5
        for face in result["faces"]:
            assert face["identity"] is None
            if face["too_small"]:  # under 32 px: never matched, so no candidates
                assert face["candidates"] == []
                continue
            # The gallery has a face, so each face has a candidate, below the threshold.
            assert face["candidates"][0]["similarity"] < result["threshold"]


def test_an_enrolled_person_is_found_in_a_crowd(api: httpx.Client) -> None:
    """players.jpg is a team photo in which Yao Ming stands among twenty others."""
    collection = unique("crowd")
    yao = new_identity(api, collection, "Yao Ming")
    enroll(api, collection, yao, images.portrait())
    result = recognize(api, collection, images.crowd())
    assert len(result["faces"]) >= 15
    known = [f["identity"] for f in result["faces"] if f["identity"] is not None]
    assert known == [{"id": yao, "name": "Yao Ming"}]
    small = [f for f in result["faces"] if f["too_small"]]
    assert small and all(f["candidates"] == [] for f in small)


def test_one_enrolled_person_is_picked_out_of_a_mirrored_group_photo(api: httpx.Client) -> None:
    group = images.group_photo()
    faces = done(api.post("/v1/detect", params={"wait": 30}, files=upload(group)))["faces"]
    x1, y1, x2, y2 = faces[0]["bbox"]  # the largest face
    margin = 40
    crop = images.variant(
        group,
        box=(int(x1) - margin, int(y1) - margin, int(x2) + margin, int(y2) + margin),
        scale=1.3,
    )
    collection = unique("group")
    person = new_identity(api, collection, "Person A")
    assert len(enroll(api, collection, person, crop)["faces"]) == 1

    result = recognize(api, collection, images.variant(group, flip=True, quality=70))
    known = [f for f in result["faces"] if f["identity"] is not None]
    assert len(result["faces"]) == 6
    assert [f["identity"]["id"] for f in known] == [person]
    mirrored_center = 1280 - (x1 + x2) / 2
    found_center = (known[0]["bbox"][0] + known[0]["bbox"][2]) / 2
    assert abs(found_center - mirrored_center) < 10


def test_verify_says_same_for_one_person_and_different_for_two(api: httpx.Client) -> None:
    portrait = images.portrait()
    same = done(
        api.post(
            "/v1/verify",
            params={"wait": 30},
            files={
                "image1": ("a.jpg", portrait, "image/jpeg"),
                "image2": ("b.jpg", images.variant(portrait, flip=True, scale=0.8), "image/jpeg"),
            },
        )
    )
    assert same["same"] is True and same["similarity"] >= same["threshold"]
    different = done(
        api.post(
            "/v1/verify",
            params={"wait": 30},
            files={
                "image1": ("a.jpg", portrait, "image/jpeg"),
                "image2": ("b.jpg", images.group_photo(), "image/jpeg"),
            },
        )
    )
    assert different["same"] is False and different["similarity"] < different["threshold"]


def test_a_deleted_identity_is_no_longer_recognised(api: httpx.Client) -> None:
    collection = unique("erase")
    yao = new_identity(api, collection, "Yao Ming")
    enroll(api, collection, yao, images.portrait(), images.variant(images.portrait(), flip=True))
    assert api.get(f"/v1/collections/{collection}/identities/{yao}").json()["face_count"] == 2
    assert recognize(api, collection, images.portrait())["faces"][0]["identity"] is not None

    deleted = api.delete(f"/v1/collections/{collection}/identities/{yao}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {
        "id": yao,
        "deleted_faces": 2,
        "deleted_crops": 2,
        "remaining_faces": 0,
    }
    face = recognize(api, collection, images.portrait())["faces"][0]
    assert face["identity"] is None and face["candidates"] == []
    assert api.get(f"/v1/collections/{collection}/identities/{yao}").status_code == 404


def test_enrolment_reports_why_images_were_refused(api: httpx.Client) -> None:
    collection = unique("refuse")
    person = new_identity(api, collection, "Nobody")
    result = enroll(
        api, collection, person, images.no_face(), images.group_photo(), images.portrait()
    )
    assert {r["image"]: r["reason"] for r in result["refused"]} == {
        "face0.jpg": "no_face",
        "face1.jpg": "several_faces",
    }
    assert [f["image"] for f in result["faces"]] == ["face2.jpg"]
    # With largest_face=true an image with several faces gives its largest one.
    largest = done(
        api.post(
            f"/v1/collections/{collection}/identities/{person}/faces",
            params={"wait": 30, "largest_face": "true"},
            files=upload(images.group_photo()),
        )
    )
    assert len(largest["faces"]) == 1 and largest["refused"] == []


def test_a_redelivered_task_creates_no_duplicate_point(api: httpx.Client, stack: Stack) -> None:
    """Send the same enrol job's detect task twice, as a broker redelivery would."""
    import redis
    from celery import Celery
    from facerec_common.celery_app import make_celery
    from facerec_common.messages import ImageRef, JobKind, JobParams, PipelineMessage
    from facerec_common.names import Task, image_key, job_key

    collection = unique("redeliver")
    person = new_identity(api, collection, "Yao Ming")
    job_id = str(uuid.uuid4())
    msg = PipelineMessage(
        job_id=job_id,
        kind=JobKind.ENROLL,
        tenant="default",
        params=JobParams(collection=collection, identity_id=person),
        images=[ImageRef(index=0, name="yao.jpg")],
    )
    client = redis.Redis.from_url(stack.redis_url)
    celery: Celery = make_celery("test", stack.redis_url)
    for _ in range(2):
        client.hset(
            job_key(job_id), mapping={"kind": "enroll", "tenant": "default", "status": "queued"}
        )
        client.set(image_key(job_id, 0), images.portrait(), ex=60)
        client.hdel(job_key(job_id), "status")
        celery.send_task(Task.DETECT, args=[msg.to_task()])
        job = api.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
        assert job["status"] == "done", job
    assert api.get(f"/v1/collections/{collection}/identities/{person}").json()["face_count"] == 1

    # Delivered once more after the job ended (its image is gone): dropped, so the job
    # stays done with its result instead of failing for the missing image. A detect job
    # sent after it on the same queue is done only once the worker has passed it.
    celery.send_task(Task.DETECT, args=[msg.to_task()])
    after = api.post("/v1/detect?wait=30", files={"image": ("p.jpg", images.portrait())})
    assert after.json()["status"] == "done"
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "done" and job["result"]["faces"], job


def test_collections_list_and_identities_page_with_a_cursor(api: httpx.Client) -> None:
    collection = unique("pages")
    ids = [new_identity(api, collection, f"person {i}") for i in range(5)]
    listed = {c["name"]: c["identities"] for c in api.get("/v1/collections").json()["collections"]}
    assert listed[collection] == 5

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get(f"/v1/collections/{collection}/identities", params=params).json()
        seen += [identity["id"] for identity in page["identities"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids  # creation order, each once


def test_deleting_a_collection_erases_its_identities_and_faces(api: httpx.Client) -> None:
    collection = unique("gone")
    person = new_identity(api, collection, "Yao Ming")
    enroll(api, collection, person, images.portrait())
    deleted = api.delete(f"/v1/collections/{collection}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {
        "collection": collection,
        "deleted_identities": 1,
        "deleted_batches": 0,
        "deleted_faces": 1,
        "deleted_crops": 1,
        "remaining_faces": 0,
    }
    names = [c["name"] for c in api.get("/v1/collections").json()["collections"]]
    assert collection not in names
    assert api.get(f"/v1/collections/{collection}/identities/{person}").status_code == 404


def test_without_wait_a_job_is_accepted_then_read_back(api: httpx.Client) -> None:
    accepted = api.post("/v1/detect", files=upload(images.portrait()))
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]
    assert accepted.headers["location"] == f"/v1/jobs/{job_id}"
    assert accepted.json()["status"] in ("queued", "running", "done")
    job = api.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
    assert job["status"] == "done" and len(job["result"]["faces"]) == 1


def test_health_and_readiness(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz").json()
    assert ready == {"status": "ready", "checks": {"redis": "ok"}}
    status = api.get("/v1/status").json()
    assert status["workers_ready"] is True
    assert set(status["stages"]) == {"detect", "embed", "index"}
    assert all(stage["consumers"] >= 1 for stage in status["stages"].values())
    assert status["stages"]["index"]["index_ok"] is True

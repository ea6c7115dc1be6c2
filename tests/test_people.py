"""People: batch faces that match nobody are grouped into persons, which can be named (an
identity then recognises them), merged, split and rejected."""

import uuid
from typing import Any

import httpx
import images
from helpers import add, assert_problem, cli, client_for, finished, new_batch, recognize
from stack import Stack


def people_of(api: httpx.Client, collection: str) -> dict[str, Any]:
    response = api.get(f"/v1/collections/{collection}/people")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ingest(api: httpx.Client, collection: str, photos: list[bytes]) -> None:
    batch = new_batch(api, collection)
    add(api, collection, batch, [(f"{i}.jpg", p) for i, p in enumerate(photos)])
    api.post(f"/v1/collections/{collection}/batches/{batch}/close")
    finished(api, collection, batch)


def test_unknown_faces_are_grouped_into_people_that_can_be_named(api: httpx.Client) -> None:
    collection = f"people-{uuid.uuid4().hex[:8]}"
    portraits = [
        images.variant(images.portrait(), flip=i == 1, scale=0.8 + 0.2 * i) for i in range(3)
    ]
    groups = [
        images.variant(images.group_photo(), flip=i == 1, scale=0.9 + 0.1 * i) for i in range(3)
    ]
    ingest(api, collection, portraits + groups)

    people = people_of(api, collection)
    # Seven people, three photos each: Yao Ming and the six of the group photo.
    assert sorted(p["face_count"] for p in people["people"]) == [3] * 7, people
    assert people["unclustered"] == 0
    assert all(p["thumbnail"] for p in people["people"])

    faces_of = {
        p["id"]: api.get(f"/v1/collections/{collection}/people/{p['id']}").json()["faces"]
        for p in people["people"]
    }
    [yao] = [
        pid
        for pid, faces in faces_of.items()
        if {f["image"] for f in faces} == {"0.jpg", "1.jpg", "2.jpg"}
    ]
    named = api.post(f"/v1/collections/{collection}/people/{yao}/name", json={"name": "Yao Ming"})
    assert named.status_code == 201, named.text
    identity = named.json()
    assert identity["face_count"] == 3
    assert (
        api.get(f"/v1/collections/{collection}/identities/{identity['id']}").json()["face_count"]
        == 3
    )
    assert len(people_of(api, collection)["people"]) == 6
    # Named faces are enrolled faces now: a new photo is recognised.
    found = recognize(api, collection, images.portrait())
    assert found["faces"][0]["identity"] == {"id": identity["id"], "name": "Yao Ming"}


def test_people_can_be_merged_split_and_rejected(stack: Stack, api: httpx.Client) -> None:
    collection = f"people-{uuid.uuid4().hex[:8]}"
    groups = [
        images.variant(images.group_photo(), flip=i == 1, scale=0.9 + 0.1 * i) for i in range(3)
    ]
    ingest(api, collection, groups)
    people = people_of(api, collection)["people"]
    assert len(people) == 6
    first, second = people[0]["id"], people[1]["id"]

    key = str(cli(stack, "create", "--tenant", "people-stranger", "--scopes", "read,write")["key"])
    with client_for(stack, key) as stranger:
        # A gallery of the same name in the other tenant: nothing of the first one shows.
        assert_problem(stranger.get(f"/v1/collections/{collection}"), 404, "collection-not-found")
        assert stranger.put(f"/v1/collections/{collection}").status_code == 201
        base = f"/v1/collections/{collection}/people"
        assert stranger.get(base).json() == {"people": [], "unclustered": 0}
        assert_problem(stranger.get(f"{base}/{first}"), 404, "not-found")
        assert_problem(stranger.post(f"{base}/{first}/name", json={"name": "x"}), 404, "not-found")
        assert_problem(
            stranger.post(f"{base}/{first}/merge", json={"into": second}), 404, "not-found"
        )

    merged = api.post(f"/v1/collections/{collection}/people/{first}/merge", json={"into": second})
    assert merged.status_code == 200, merged.text
    assert merged.json()["face_count"] == 6
    assert_problem(api.get(f"/v1/collections/{collection}/people/{first}"), 404, "not-found")

    face = merged.json()["faces"][0]["face_id"]
    split = api.post(f"/v1/collections/{collection}/people/{second}/faces/{face}/split")
    assert split.status_code == 200, split.text
    assert split.json()["face_count"] == 1 and split.json()["faces"][0]["face_id"] == face
    assert api.get(f"/v1/collections/{collection}/people/{second}").json()["face_count"] == 5

    lone = split.json()["id"]
    rejected = api.delete(f"/v1/collections/{collection}/people/{lone}/faces/{face}")
    assert rejected.status_code == 200 and rejected.json()["remaining"] == 0
    assert_problem(api.get(f"/v1/collections/{collection}/people/{lone}"), 404, "not-found")
    counts = sorted(p["face_count"] for p in people_of(api, collection)["people"])
    assert counts == [3, 3, 3, 3, 5]

    # Erasing the gallery erases its unassigned faces too.
    deleted = api.delete(f"/v1/collections/{collection}").json()
    assert deleted["deleted_faces"] == 17 and deleted["remaining_faces"] == 0
    assert_problem(api.get(f"/v1/collections/{collection}/people"), 404, "collection-not-found")
    # Made again under the same name, it starts empty.
    assert api.put(f"/v1/collections/{collection}").status_code == 201
    assert people_of(api, collection) == {"people": [], "unclustered": 0}

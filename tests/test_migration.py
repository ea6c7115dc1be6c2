"""Changing a gallery's model: FP32 buffalo_sc to the INT8 pack, on the real stack, from
the crops each enrolled face keeps. Ids and names survive, accuracy matches a fresh INT8
enrolment, searches answer throughout, a killed embedder does not stop it, a deletion
reaches both indexes, and every step out of order is a 4xx problem."""

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from facerec_common.names import Queue, inflight_key
from helpers import assert_problem, done, enroll, new_identity, unique, upload
from images import crowd, group_photo
from PIL import Image, ImageOps
from scenes import cut
from stack import Stack, redis_server, running_stack, wait_until
from test_schemathesis import CONFIG, STATELESS, report, run_tester, unlimited_key

INT8 = "buffalo_sc_int8"
PEOPLE = 20


@pytest.fixture(scope="module")
def mig(tmp_path_factory: pytest.TempPathFactory, int8_dir: Path) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("migration")
    env = {
        "FACEREC_EMBEDDER_MIGRATION_PACKS": json.dumps({INT8: str(int8_dir)}),
        # Small shares, so that a migration of 40 faces is many tasks a worker can die in.
        "FACEREC_INDEXER_MIGRATION_SHARE_SIZE": "4",
        "FACEREC_MAX_ATTEMPTS": "3",
    }
    with redis_server(workdir / "redis") as url, running_stack(workdir, url, env) as stack:
        yield stack


@pytest.fixture
def api(mig: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mig.url, timeout=60, headers={"X-API-Key": mig.admin_key}) as c:
        yield c


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def people(mig: Stack) -> list[tuple[list[bytes], bytes]]:
    """Twenty people from the two group photos: two photos of each to enrol (cut apart,
    enlarged, one mirrored) and a third, held out, to recognise."""
    found: list[tuple[Image.Image, tuple[float, float, float, float]]] = []
    with httpx.Client(base_url=mig.url, timeout=60, headers={"X-API-Key": mig.admin_key}) as c:
        for data, wanted in ((group_photo(), 6), (crowd(), PEOPLE - 6)):
            faces = done(c.post("/v1/detect?wait=30", files=upload(data)))["faces"]
            faces.sort(key=lambda f: f["bbox"][2] - f["bbox"][0], reverse=True)
            photo = Image.open(io.BytesIO(data)).convert("RGB")
            found += [(photo, tuple(f["bbox"])) for f in faces[:wanted]]
    sets = []
    for photo, box in found:
        scale = max(1.0, 160 / (box[2] - box[0]))
        enrol = [_shot(photo, box, 0.6, scale), _shot(photo, box, 0.7, scale * 1.1, flip=True)]
        sets.append((enrol, _shot(photo, box, 0.9, scale * 0.9, quality=70)))
    return sets


def _shot(
    photo: Image.Image,
    box: tuple[float, float, float, float],
    margin: float,
    factor: float,
    flip: bool = False,
    quality: int = 90,
) -> bytes:
    """Another photo of the face at ``box``: cut with ``margin``, scaled, maybe mirrored."""
    image = cut(photo, box, margin).image
    image = image.resize((round(image.width * factor), round(image.height * factor)))
    return _jpeg(ImageOps.mirror(image) if flip else image, quality)


def enrol_people(
    api: httpx.Client, collection: str, people: list[tuple[list[bytes], bytes]]
) -> list[str]:
    ids = []
    for index, (photos, _probe) in enumerate(people):
        identity = new_identity(api, collection, f"person {index:02d}")
        # Cut from group photos: a neighbour's face may show at the edge, and the faces
        # of the crowd are small and soft once enlarged.
        result = enroll(
            api, collection, identity, *photos, largest_face="true", quality_filter="none"
        )
        assert len(result["faces"]) == 2, result
        ids.append(identity)
    return ids


def top1(api: httpx.Client, collection: str, ids: list[str], probes: list[bytes]) -> float:
    """Share of held-out photos whose best face is recognised as their own identity."""
    right = 0
    for identity, probe in zip(ids, probes, strict=True):
        found = done(
            api.post(f"/v1/collections/{collection}/recognize?wait=30", files=upload(probe))
        )
        faces = sorted(found["faces"], key=lambda f: f["bbox"][2] - f["bbox"][0], reverse=True)
        best = faces[0]["identity"] if faces else None
        right += bool(best and best["id"] == identity)
    return right / len(ids)


def migration(api: httpx.Client, collection: str) -> dict[str, Any]:
    response = api.get(f"/v1/collections/{collection}/migration")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def start(api: httpx.Client, collection: str, pack: str = INT8) -> dict[str, Any]:
    response = api.post(f"/v1/collections/{collection}/migration", json={"model_pack": pack})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_ready(api: httpx.Client, collection: str, timeout_s: float = 180) -> dict[str, Any]:
    wait_until(lambda: migration(api, collection)["state"] == "ready", timeout_s, "migration")
    return migration(api, collection)


def step(api: httpx.Client, collection: str, name: str) -> dict[str, Any]:
    response = api.post(f"/v1/collections/{collection}/migration/{name}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def identities(api: httpx.Client, collection: str) -> dict[str, tuple[str, int]]:
    listed = api.get(f"/v1/collections/{collection}/identities?limit=1000").json()
    return {i["id"]: (i["name"], i["face_count"]) for i in listed["identities"]}


def test_a_migration_to_int8_keeps_every_id_and_name_and_answers_throughout(
    api: httpx.Client, people: list[tuple[list[bytes], bytes]]
) -> None:
    gallery = unique("migrate")
    ids = enrol_people(api, gallery, people)
    probes = [probe for _photos, probe in people]
    before = identities(api, gallery)
    fp32_top1 = top1(api, gallery, ids, probes)

    started = start(api, gallery)
    assert started["state"] in ("running", "ready")
    assert started["source"] == {"pack": "buffalo_sc", "model": "w600k_mbf"}
    assert started["target"] == {"pack": INT8, "model": "w600k_mbf_int8"}
    assert started["faces"] == 2 * PEOPLE
    # A second migration while one runs is refused.
    again = api.post(f"/v1/collections/{gallery}/migration", json={"model_pack": INT8})
    assert_problem(again, 409, "migration-conflict")
    # Searches meanwhile answer, from the old model.
    for probe in probes[:5]:
        answer = api.post(f"/v1/collections/{gallery}/recognize?wait=30", files=upload(probe))
        assert answer.status_code == 200 and done(answer)["model"] == "w600k_mbf"

    ready = wait_ready(api, gallery)
    assert ready["embedded"] == ready["faces"] == 2 * PEOPLE and ready["progress"] == 1.0
    check = step(api, gallery, "check")
    assert check["missing"] == 0 and check["in_shadow"] == 2 * PEOPLE
    assert check["self_match"] == {"checked": 2 * PEOPLE, "matched": 2 * PEOPLE, "share": 1.0}
    assert check["leave_one_out"]["checked"] == 2 * PEOPLE
    # Cutover before a finish: the new model serves, names and ids as they were.
    cut_over = step(api, gallery, "cutover")
    assert cut_over["state"] == "cut_over"
    assert api.get(f"/v1/collections/{gallery}").json()["model_pack"] == INT8
    assert identities(api, gallery) == before
    served = done(api.post(f"/v1/collections/{gallery}/recognize?wait=30", files=upload(probes[0])))
    assert served["model"] == "w600k_mbf_int8"
    # Its archive holds the new model's vectors, tagged with it.
    lines = api.get(f"/v1/collections/{gallery}/export").text.splitlines()
    manifest = json.loads(lines[0])
    assert manifest["model"]["pack"] == INT8 and manifest["counts"]["faces"] == 2 * PEOPLE
    migrated_top1 = top1(api, gallery, ids, probes)

    # A fresh INT8 enrolment of the same people: a gallery cut over while empty.
    fresh = unique("fresh-int8")
    api.put(f"/v1/collections/{fresh}")
    assert start(api, fresh)["faces"] == 0
    wait_ready(api, fresh, 30)
    step(api, fresh, "cutover")
    fresh_ids = enrol_people(api, fresh, people)
    fresh_top1 = top1(api, fresh, fresh_ids, probes)
    print(f"top-1: FP32 {fp32_top1:.3f}, INT8 {migrated_top1:.3f}, fresh {fresh_top1:.3f}")
    assert abs(migrated_top1 - fresh_top1) <= 0.01
    assert migrated_top1 >= 0.9

    # Finishing drops the old index: no rollback after it.
    finished = step(api, gallery, "finish")
    assert finished["state"] == "finished"
    assert identities(api, gallery) == before
    again = api.post(f"/v1/collections/{gallery}/migration/rollback")
    assert_problem(again, 409, "migration-conflict")


def test_a_rollback_after_cutover_serves_the_old_model_and_its_threshold_again(
    api: httpx.Client, people: list[tuple[list[bytes], bytes]]
) -> None:
    gallery = unique("rollback")
    ids = enrol_people(api, gallery, people[:4])
    api.patch(f"/v1/collections/{gallery}", json={"threshold": 0.42})
    started = start(api, gallery)
    # The check judges the old model as the gallery does, the new one by its own default.
    assert (started["source_threshold"], started["target_threshold"]) == (0.42, 0.3)
    wait_ready(api, gallery)
    step(api, gallery, "cutover")
    # The threshold was set for the old model: the new one judges by its own.
    assert api.get(f"/v1/collections/{gallery}").json()["threshold"] is None
    # Moving back by a second migration is refused while this one can still roll back.
    back = api.post(f"/v1/collections/{gallery}/migration", json={"model_pack": "buffalo_sc"})
    assert_problem(back, 409, "migration-conflict")
    # A face enrolled after cutover reaches the old index too, so a rollback keeps it.
    extra = enroll(api, gallery, ids[0], people[5][1])
    assert len(extra["faces"]) == 1
    rolled = step(api, gallery, "rollback")
    assert rolled["state"] == "rolled_back"
    settings = api.get(f"/v1/collections/{gallery}").json()
    assert settings["model_pack"] == "buffalo_sc" and settings["threshold"] == 0.42
    answer = done(
        api.post(f"/v1/collections/{gallery}/recognize?wait=30", files=upload(people[1][1]))
    )
    assert answer["model"] == "w600k_mbf" and answer["threshold"] == 0.42
    assert identities(api, gallery)[ids[0]][1] == 3
    # After a rollback a new migration may start.
    assert start(api, gallery)["state"] in ("running", "ready")


WORKERS = {Queue.EMBED: "facerec_embedder", Queue.INDEX: "facerec_indexer"}


@pytest.mark.parametrize("queue", [Queue.EMBED, Queue.INDEX])
def test_killing_a_worker_mid_migration_loses_no_face_and_stores_none_twice(
    mig: Stack, api: httpx.Client, people: list[tuple[list[bytes], bytes]], queue: Queue
) -> None:
    gallery = unique(f"kill-{queue}")
    enrol_people(api, gallery, people)
    broker = redis.Redis.from_url(mig.redis_url)

    def holds_a_task() -> bool:
        held = [json.loads(raw) for raw in broker.hgetall(inflight_key()).values()]
        return any(claim.get("queue") == queue for claim in held)

    start(api, gallery)
    if queue is Queue.EMBED:
        wait_until(holds_a_task, 60, "a migration share held by the embedder")
    # An index task takes milliseconds: the indexer is killed at once, while the shares
    # it is to store are on their way to it or held by it.
    proc = mig.procs[WORKERS[queue]]
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert migration(api, gallery)["state"] == "running"
    mig.start(WORKERS[queue])

    ready = wait_ready(api, gallery, 300)
    assert ready["embedded"] == ready["faces"] == 2 * PEOPLE
    check = step(api, gallery, "check")
    assert (check["missing"], check["orphans"], check["resumed"]) == (0, 0, 0)
    assert check["in_shadow"] == 2 * PEOPLE
    step(api, gallery, "cutover")
    # Every identity has its two faces in the new index, none twice.
    assert sorted(count for _name, count in identities(api, gallery).values()) == [2] * PEOPLE


def test_deleting_during_a_migration_removes_from_both_indexes(
    api: httpx.Client, people: list[tuple[list[bytes], bytes]]
) -> None:
    gallery = unique("delete")
    ids = enrol_people(api, gallery, people[:6])
    start(api, gallery)
    erased = api.delete(f"/v1/collections/{gallery}/identities/{ids[0]}")
    assert erased.status_code == 200, erased.text
    # Counted again after the erasure, in every model's index.
    assert erased.json()["deleted_faces"] == 2 and erased.json()["remaining_faces"] == 0
    face = api.get(f"/v1/collections/{gallery}/identities/{ids[1]}/faces").json()["faces"][0]
    gone = api.delete(f"/v1/collections/{gallery}/identities/{ids[1]}/faces/{face['face_id']}")
    assert gone.status_code == 200 and gone.json()["remaining_faces"] == 0
    wait_ready(api, gallery)
    check = step(api, gallery, "check")
    assert check["faces"] == check["in_shadow"] == 2 * 6 - 3 and check["orphans"] == 0
    step(api, gallery, "cutover")
    assert ids[0] not in identities(api, gallery)
    faces = api.get(f"/v1/collections/{gallery}/identities/{ids[1]}/faces").json()["faces"]
    assert [f["face_id"] for f in faces] != [face["face_id"]] and len(faces) == 1
    # The deleted face is in neither index: the old one (rolled back to) lacks it too.
    step(api, gallery, "rollback")
    faces = api.get(f"/v1/collections/{gallery}/identities/{ids[1]}/faces").json()["faces"]
    assert face["face_id"] not in [f["face_id"] for f in faces] and len(faces) == 1


def test_every_step_out_of_order_is_a_problem(api: httpx.Client) -> None:
    gallery = unique("wrong")
    api.put(f"/v1/collections/{gallery}")
    url = f"/v1/collections/{gallery}/migration"
    assert_problem(api.get(url), 404, "not-found")
    assert_problem(api.post(f"{url}/cutover"), 404, "not-found")
    assert_problem(api.post(url, json={"model_pack": "buffalo_xl"}), 422, "invalid-input")
    assert_problem(api.post(url, json={"model_pack": "buffalo_sc"}), 422, "invalid-input")
    assert_problem(api.post(url, json={"pack": INT8}), 422, "invalid-request")
    assert_problem(
        api.post("/v1/collections/nope/migration", json={"model_pack": INT8}),
        404,
        "collection-not-found",
    )
    assert start(api, gallery)["state"] == "ready"  # nothing to carry
    assert_problem(api.post(f"{url}/finish"), 409, "migration-conflict")
    step(api, gallery, "rollback")
    assert_problem(api.post(f"{url}/rollback"), 409, "migration-conflict")
    # A gallery that keeps no crops is not offered a migration.
    api.patch(f"/v1/collections/{gallery}", json={"keep_crops": False})
    assert_problem(api.post(url, json={"model_pack": INT8}), 409, "migration-conflict")


def test_the_cli_runs_a_migration_from_start_to_finish(
    mig: Stack, api: httpx.Client, people: list[tuple[list[bytes], bytes]], tmp_path: Path
) -> None:
    gallery = unique("cli")
    enrol_people(api, gallery, people[:3])
    env = {
        **os.environ,
        "FACEREC_URL": mig.url,
        "FACEREC_API_KEY": mig.admin_key,
        "XDG_CACHE_HOME": str(tmp_path),
    }

    def facerec(*args: str) -> str:
        ran = subprocess.run(
            [sys.executable, "-m", "facerec_cli", "migration", *args, "-c", gallery],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        return ran.stdout.strip()

    started = facerec("start", INT8, "--wait")
    assert started == f"{gallery}: buffalo_sc -> {INT8} ready, 6/6 faces (100%)"
    assert facerec("status") == started
    assert facerec("check").startswith("6/6 faces in the new index, 0 missing (0 sent again)")
    assert json.loads(facerec("cutover", "--json"))["state"] == "cut_over"
    assert facerec("finish", "--yes").startswith(f"{gallery}: buffalo_sc -> {INT8} finished")
    refused = subprocess.run(
        [sys.executable, "-m", "facerec_cli", "migration", "rollback", "-c", gallery],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "nothing to roll back (409" in refused.stderr


@pytest.mark.timeout(900)
def test_the_migration_routes_hold_against_an_outside_fuzzer(
    mig: Stack, people: list[tuple[list[bytes], bytes]], tmp_path: Path
) -> None:
    """Schemathesis, as tests/test_schemathesis.py runs it, on the migration routes of a
    stack whose embedders load a second pack, pointed at a gallery of its own tenant with
    faces and a migration ready for cutover: every answer a documented 2xx or 4xx."""
    key = unlimited_key(mig, "schemathesis-migration")
    gallery = unique("fuzzed")
    with httpx.Client(base_url=mig.url, timeout=60, headers={"X-API-Key": key}) as own:
        enrol_people(own, gallery, people[:3])
        start(own, gallery)
        wait_ready(own, gallery)
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.read_text() + f'\n[parameters]\n"path.collection" = "{gallery}"\n')
    selection = ("--include-path-regex", "/migration")
    outcome = run_tester(mig, tmp_path, key, *selection, phases=STATELESS, config=config)
    assert outcome.returncode == 0, report(outcome)
    assert "Tested:" in outcome.stdout and "Missing test data" not in outcome.stdout, (
        outcome.stdout[-3000:]
    )
    assert mig.alive() == dict.fromkeys(mig.procs, True)

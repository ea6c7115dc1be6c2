"""The embedded index builds its HNSW shards in a child process and keeps answering.

Real Qdrant Edge shards and real build processes, with tiny shards (a few hundred
points) so that sealing, building and merging happen many times in a test.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import qdrant_edge as qe
from facerec_indexer.index.base import FacePoint, Scope, collection_name
from facerec_indexer.index.edge import EdgeIndex
from facerec_indexer.index.tiers import MANIFEST, Tiering

DIM = 128
MODEL = "m"
SCOPE = Scope("t", "g")


def unit(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    normed: npt.NDArray[np.float32] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return normed


def faces(vectors: npt.NDArray[np.float32], first: int = 0, identity: str = "") -> list[FacePoint]:
    return [
        FacePoint(
            id=str(uuid.UUID(int=first + i + 1)),
            vector=v,
            tenant=SCOPE.tenant,
            collection=str(SCOPE.collection),
            identity_id=identity or f"p{first + i}",
            extra={},
        )
        for i, v in enumerate(vectors)
    ]


def top1(index: EdgeIndex, vectors: npt.NDArray[np.float32]) -> list[str]:
    return [hits[0].point_id if hits else "" for hits in index.search(MODEL, vectors, SCOPE, 1)]


def own_ids(first: int, n: int) -> list[str]:
    return [str(uuid.UUID(int=first + i + 1)) for i in range(n)]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[EdgeIndex]:
    edge = EdgeIndex(tmp_path / "edge", Tiering(seal_points=200, merge_factor=2))
    yield edge
    edge.close()


def test_every_face_is_found_while_shards_are_built_and_merged(index: EdgeIndex) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 1200)
    answered_during_a_build = 0
    for job in range(600):
        index.upsert(MODEL, DIM, faces(vectors[2 * job : 2 * job + 2], 2 * job))
        earlier = rng.integers(0, 2 * job + 2, 3)
        assert top1(index, vectors[earlier]) == [own_ids(int(i), 1)[0] for i in earlier]
        answered_during_a_build += index.ping()["index_builds"] > 0
    # The searches above did not wait for builds: many ran while one was under way.
    assert answered_during_a_build > 50
    assert index.settle(120)
    assert index.count(SCOPE) == 1200
    assert index.ping()["index_shards"] <= 4  # 1200 points sealed by 200, merged by 2
    sample = rng.choice(1200, 100, replace=False)
    assert top1(index, vectors[sample]) == [own_ids(int(i), 1)[0] for i in sample]


def test_writes_that_reach_a_shard_while_it_is_built_reach_the_built_shard(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "facerec_indexer.index.tiers")
    rng = np.random.default_rng(2)
    index = EdgeIndex(tmp_path / "edge", Tiering(seal_points=3000))
    vectors = unit(rng, 3000)
    index.upsert(MODEL, DIM, faces(vectors[:2990], 0))
    index.upsert(MODEL, DIM, faces(vectors[2990:], 2990, identity="group"))  # sealed here
    assert index.ping()["index_builds"] == 1
    ids = own_ids(0, 3000)
    index.delete_ids(MODEL, ids[:10])
    index.set_payload(MODEL, ids[10:20], {"identity_id": "renamed"})
    moved = unit(rng, 10)
    index.upsert(MODEL, DIM, faces(moved, 20))  # ids 20..29 again, new vectors
    index.delete(Scope(SCOPE.tenant, SCOPE.collection, identity_id="group"))
    assert index.ping()["index_builds"] == 1  # all of it while the build ran

    assert index.settle(120)
    replayed = [r.getMessage() for r in caplog.records if "writes replayed" in r.getMessage()]
    assert replayed and " 0 writes replayed" not in replayed[0]
    assert index.count(SCOPE) == 3000 - 10 - 10
    stored = [r.id for r in index.scroll(SCOPE, fields=[])]
    assert len(stored) == len(set(stored)) == 2980
    assert not set(ids[:10]) & set(stored)
    assert {r.payload["identity_id"] for r in index.retrieve(MODEL, ids[10:20])} == {"renamed"}
    hits = index.search(MODEL, moved, SCOPE, 1)
    assert [h[0].point_id for h in hits] == ids[20:30]
    assert all(h[0].score == pytest.approx(1.0, abs=1e-3) for h in hits)
    assert index.count(Scope(SCOPE.tenant, SCOPE.collection, identity_id="group")) == 0
    index.close()


def test_a_killed_build_leaves_its_input_answering_and_is_tried_again(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = EdgeIndex(tmp_path / "edge", Tiering(seal_points=2000))
    vectors = unit(rng, 2000)
    index.upsert(MODEL, DIM, faces(vectors, 0))
    shards = index._sets[MODEL]  # the build under way, to kill it
    os.kill(shards._builds[0].process.pid, signal.SIGKILL)
    shards._builds[0].process.wait()
    sample = rng.choice(2000, 50, replace=False)
    assert top1(index, vectors[sample]) == [own_ids(int(i), 1)[0] for i in sample]
    assert index.ping()["index_builds"] == 0  # failed, waiting to be tried again
    assert index.settle(120)  # tries again at once
    assert index.count(SCOPE) == 2000
    folder = tmp_path / "edge" / collection_name(MODEL)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [s["built"] for s in manifest["shards"]].count(True) == 1
    assert top1(index, vectors[sample]) == [own_ids(int(i), 1)[0] for i in sample]
    index.close()


INDEXER = textwrap.dedent(
    """
    import sys, time, uuid
    from pathlib import Path
    import numpy as np
    from facerec_indexer.index.base import FacePoint
    from facerec_indexer.index.edge import EdgeIndex
    from facerec_indexer.index.tiers import Tiering

    index = EdgeIndex(Path(sys.argv[1]), Tiering(seal_points=1500))
    vectors = np.load(sys.argv[2])
    for i in range(0, len(vectors), 2):
        index.upsert("m", vectors.shape[1], [
            FacePoint(str(uuid.UUID(int=i + k + 1)), vectors[i + k], "t", "g", f"p{i + k}", {})
            for k in range(2)
        ])
    builds = [b.process.pid for b in index._sets["m"]._builds]
    print(" ".join(map(str, builds)), flush=True)
    time.sleep(600)
    """
)


def test_an_indexer_killed_while_a_build_runs_loses_no_face(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    vectors = unit(rng, 2000)  # 1500 sealed and building, 500 in the live shard
    np.save(tmp_path / "vectors.npy", vectors)
    root = tmp_path / "edge"
    indexer = subprocess.Popen(
        [sys.executable, "-c", INDEXER, str(root), str(tmp_path / "vectors.npy")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert indexer.stdout is not None
    builds = [int(pid) for pid in indexer.stdout.readline().split()]
    assert builds, "a build was under way"
    indexer.kill()
    indexer.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in builds) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in builds), "the build died with its indexer"

    again = EdgeIndex(root, Tiering(seal_points=1500))
    assert again.count(SCOPE) == 2000
    sample = rng.choice(2000, 60, replace=False)
    assert top1(again, vectors[sample]) == [own_ids(int(i), 1)[0] for i in sample]
    folder = root / collection_name(MODEL)
    listed = {s["name"] for s in json.loads((folder / MANIFEST).read_text())["shards"]}
    building = {b.output for b in again._sets[MODEL]._builds}
    present = {p.name for p in folder.iterdir()} - {MANIFEST}
    # The dead build's output and copies are gone; what is left is listed or being built.
    assert all(name in listed or name.split(".")[0] in building for name in present)
    assert again.settle(120)
    assert again.count(SCOPE) == 2000
    again.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_shard_written_by_the_previous_layout_is_adopted(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    vectors = unit(rng, 50)
    root = tmp_path / "edge"
    folder = root / collection_name(MODEL)
    config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine))
    old = qe.EdgeShard.create(str(folder), config)
    old.update(
        qe.UpdateOperation.upsert_points(
            [qe.Point(p.id, p.vector.tolist(), p.payload()) for p in faces(vectors)]
        )
    )
    old.flush()
    old.close()

    index = EdgeIndex(root)
    assert index.count(SCOPE) == 50
    assert top1(index, vectors[[3, 40]]) == own_ids(3, 1) + own_ids(40, 1)
    assert index.settle(120)
    index.close()
    again = EdgeIndex(root)
    assert again.count(SCOPE) == 50
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [s["built"] for s in manifest["shards"]].count(True) == 1
    assert top1(again, vectors[[3, 40]]) == own_ids(3, 1) + own_ids(40, 1)
    again.close()


def _stored_in_segments(folder: Path, vector: npt.NDArray[np.float32]) -> bool:
    """Whether the segments of a shard in use hold these float32s (WAL aside)."""
    needle = vector.astype(np.float32).tobytes()[:64]
    listed = [s["name"] for s in json.loads((folder / MANIFEST).read_text())["shards"]]
    return any(
        needle in path.read_bytes()
        for name in listed
        for path in (folder / name / "segments").rglob("*")
        if path.is_file()
    )


def test_a_deleted_face_leaves_the_files_of_its_built_shard(tmp_path: Path) -> None:
    """Qdrant only marks a deleted point; the shard holding it is written again."""
    rng = np.random.default_rng(6)
    index = EdgeIndex(tmp_path / "edge", Tiering(seal_points=400))
    vectors = unit(rng, 400)
    index.upsert(MODEL, DIM, faces(vectors))
    assert index.settle(120)
    folder = tmp_path / "edge" / collection_name(MODEL)
    assert _stored_in_segments(folder, vectors[7]) and _stored_in_segments(folder, vectors[8])

    index.delete_ids(MODEL, own_ids(7, 1))
    assert index.count(SCOPE) == 399  # gone for every read at once
    assert index.ping()["index_builds"] == 1  # and the shard is being written again
    assert index.settle(120)
    assert not _stored_in_segments(folder, vectors[7])
    assert _stored_in_segments(folder, vectors[8])
    manifest = json.loads((folder / MANIFEST).read_text())
    assert not any(s["erased"] for s in manifest["shards"])
    assert top1(index, vectors[[8, 300]]) == own_ids(8, 1) + own_ids(300, 1)
    index.close()

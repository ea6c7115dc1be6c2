"""One suite, both index backends: Qdrant Edge (embedded default) and a Qdrant server API
(qdrant-client's local mode stands in for the server, which cannot run here)."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from facerec_indexer.index import FaceIndex, FacePoint, Scope
from facerec_indexer.index.base import ALL_MODELS, ENROLLED, UNASSIGNED
from facerec_indexer.index.edge import EdgeIndex
from facerec_indexer.index.server import ServerIndex
from facerec_indexer.index.serving import ServingIndex
from facerec_indexer.index.tiers import Tiering
from qdrant_client import QdrantClient

DIM = 512
MODEL = "test_model"


@pytest.fixture(params=["edge", "server"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaceIndex]:
    backend: FaceIndex
    if request.param == "edge":
        # Tiny shards: the tests also run while shards are being built and merged.
        backend = EdgeIndex(tmp_path / "edge", Tiering(seal_points=50, merge_factor=2))
    else:
        backend = ServerIndex(QdrantClient(location=":memory:"))
    yield backend
    backend.close()


def unit(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    normed: npt.NDArray[np.float32] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return normed


def point(
    vector: npt.NDArray[np.float32], tenant: str, collection: str, identity: str, key: str
) -> FacePoint:
    pid = str(uuid.uuid5(uuid.NAMESPACE_URL, key))
    return FacePoint(pid, vector, tenant, collection, identity, {"image": key})


def test_nearest_point_is_found_with_cosine_score(index: FaceIndex) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 60)
    index.upsert(MODEL, DIM, [point(v, "t", "c", f"id{i}", f"k{i}") for i, v in enumerate(vectors)])
    hits = index.search(MODEL, vectors[[7, 31]], Scope("t", "c"), limit=3)
    assert [h[0].identity_id for h in hits] == ["id7", "id31"]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0][1].score < 0.5  # random 512-d vectors are nearly orthogonal


def test_upserting_the_same_id_twice_keeps_one_point(index: FaceIndex) -> None:
    rng = np.random.default_rng(2)
    v = unit(rng, 1)[0]
    index.upsert(MODEL, DIM, [point(v, "t", "c", "a", "same")])
    index.upsert(MODEL, DIM, [point(v, "t", "c", "a", "same")])
    assert index.count(Scope("t", "c")) == 1


def test_scope_separates_tenants_and_collections(index: FaceIndex) -> None:
    rng = np.random.default_rng(3)
    v = unit(rng, 3)
    index.upsert(
        MODEL,
        DIM,
        [
            point(v[0], "t1", "c", "a", "1"),
            point(v[1], "t2", "c", "a", "2"),
            point(v[2], "t1", "other", "a", "3"),
        ],
    )
    hits = index.search(MODEL, v[[1]], Scope("t1", "c"), limit=5)[0]
    assert [h.point_id for h in hits] == [str(uuid.uuid5(uuid.NAMESPACE_URL, "1"))]
    assert index.count(Scope("t1")) == 2
    assert index.count(Scope("t2", "c")) == 1


def test_delete_by_identity_then_collection_leaves_count_zero(index: FaceIndex) -> None:
    rng = np.random.default_rng(4)
    v = unit(rng, 4)
    index.upsert(
        MODEL,
        DIM,
        [point(v[i], "t", "c", "a" if i < 2 else "b", str(i)) for i in range(4)]
        + [point(v[0], "t", "keep", "a", "kept")],
    )
    index.delete(Scope("t", "c", "a"))
    assert index.count(Scope("t", "c", "a")) == 0
    assert index.count(Scope("t", "c")) == 2
    index.delete(Scope("t", "c"))
    assert index.count(Scope("t", "c")) == 0
    assert index.count(Scope("t", "keep")) == 1


def test_pools_keep_unassigned_faces_out_of_matching(index: FaceIndex) -> None:
    rng = np.random.default_rng(5)
    vectors = unit(rng, 4)
    enrolled = point(vectors[0], "t", "c", "ada", "enrolled")
    stray = FacePoint(
        str(uuid.uuid5(uuid.NAMESPACE_URL, "stray")), vectors[1], "t", "c", "", {}, pool=UNASSIGNED
    )
    index.upsert(MODEL, DIM, [enrolled, stray])
    [hits] = index.search(MODEL, vectors[1:2], Scope("t", "c", pool=ENROLLED), limit=5)
    assert [h.point_id for h in hits] == [enrolled.id]
    [hits] = index.search(MODEL, vectors[1:2], Scope("t", "c", pool=UNASSIGNED), limit=5)
    assert [(h.point_id, h.identity_id) for h in hits] == [(stray.id, "")]


def test_scroll_set_payload_and_delete_ids(index: FaceIndex) -> None:
    rng = np.random.default_rng(6)
    vectors = unit(rng, 5)
    points = [
        FacePoint(
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"u{i}")), v, "t", "c", "", {"n": i}, UNASSIGNED
        )
        for i, v in enumerate(vectors)
    ]
    index.upsert(MODEL, DIM, [*points, point(vectors[0], "other", "c", "x", "other")])
    records = index.scroll(Scope("t", "c", pool=UNASSIGNED), with_vectors=True)
    assert sorted(r.id for r in records) == sorted(p.id for p in points)
    by_id = {r.id: r for r in records}
    assert by_id[points[2].id].model == MODEL and by_id[points[2].id].payload["n"] == 2
    stored = by_id[points[2].id].vector
    assert stored is not None and float(stored @ vectors[2]) == pytest.approx(1.0, abs=1e-4)

    index.set_payload(MODEL, [points[0].id, points[1].id], {"cluster_id": "p1"})
    grouped = index.scroll(Scope("t", "c", cluster_id="p1"))
    assert sorted(r.id for r in grouped) == sorted([points[0].id, points[1].id])
    assert {r.payload["n"] for r in grouped} == {0, 1}  # other keys are kept
    assert index.count(Scope("t", "c", cluster_id="")) == 3

    index.delete_ids(MODEL, [points[4].id])
    assert index.count(Scope("t", "c")) == 4 and index.count(Scope("other")) == 1


def test_search_in_an_unknown_model_finds_nothing(index: FaceIndex) -> None:
    rng = np.random.default_rng(5)
    assert index.search("never_used", unit(rng, 2), Scope("t", "c"), limit=3) == [[], []]
    assert index.models() == []


def test_edge_index_survives_a_restart(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    v = unit(rng, 120)
    first = EdgeIndex(tmp_path / "edge", Tiering(seal_points=100))
    first.upsert(MODEL, DIM, [point(x, "t", "c", f"id{i}", str(i)) for i, x in enumerate(v)])
    first.close()
    again = EdgeIndex(tmp_path / "edge")
    assert again.count(Scope("t", "c")) == 120
    assert again.search(MODEL, v[[99]], Scope("t", "c"), limit=1)[0][0].identity_id == "id99"
    again.close()


def test_two_models_hold_the_same_faces_apart_and_a_gallery_reads_its_serving_one(
    index: FaceIndex,
) -> None:
    """A migrating gallery: the same point ids in two models' collections. A scope that
    names a model reads only it; the serving wrapper reads the gallery's serving model; an
    erasure over every model leaves nothing in either."""
    rng = np.random.default_rng(9)
    old, new = unit(rng, 4), unit(rng, 4)
    index.upsert(MODEL, DIM, [point(v, "t", "g", "a", f"f{i}") for i, v in enumerate(old)])
    index.upsert("other_model", DIM, [point(v, "t", "g", "a", f"f{i}") for i, v in enumerate(new)])
    assert index.count(Scope("t", "g")) == 8
    assert index.count(Scope("t", "g", model=MODEL)) == 4
    assert index.count(Scope("t", "g", model="no_such_model")) == 0
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"f{i}")) for i in range(4)]
    found = index.retrieve("other_model", [ids[0], ids[2], str(uuid.uuid4())])
    assert sorted(r.id for r in found) == sorted([ids[0], ids[2]])
    assert all(r.model == "other_model" and r.payload["identity_id"] == "a" for r in found)

    # Only the payload fields asked for, or ids alone.
    named = index.scroll(Scope("t", "g", model=MODEL), fields=["identity_id"])
    assert [r.payload for r in named] == [{"identity_id": "a"}] * 4
    assert [r.payload for r in index.scroll(Scope("t", "g", model=MODEL), fields=[])] == [{}] * 4

    serving = ServingIndex(index, lambda tenant, gallery: "other_model")
    assert {r.model for r in serving.scroll(Scope("t", "g"))} == {"other_model"}
    assert serving.count(Scope("t", "g")) == 4
    assert serving.count(Scope("t", "g", model=ALL_MODELS)) == 8
    serving.delete(Scope("t", "g", identity_id="a"))
    assert index.count(Scope("t", "g", model=ALL_MODELS)) == 0

"""The face grouping algorithm on synthetic unit vectors: pure, no stack."""

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from facerec_indexer.clustering import ClusterParams, ExactNeighbours, Vector, assign


def at(angle: float) -> Vector:
    """A unit vector in the plane: cosine distance between two is 1 - cos(angle difference)."""
    return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)


def ids(prefix: str = "c") -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter)}"


def groups(
    sizes: Sequence[int], spread: float, seed: int = 0, name: str = "g"
) -> list[tuple[str, Vector]]:
    """Faces ``{name}{group}-{i}`` scattered around random (near-orthogonal) centres in 128-d."""
    rng = np.random.default_rng(seed)
    faces = []
    for group, size in enumerate(sizes):
        centre = rng.normal(size=128)
        for i in range(size):
            v = centre / np.linalg.norm(centre) + spread * rng.normal(size=128) / np.sqrt(128)
            faces.append((f"{name}{group}-{i}", (v / np.linalg.norm(v)).astype(np.float32)))
    return faces


def run(
    faces: Sequence[tuple[str, Vector]],
    params: ClusterParams,
    cluster_of: dict[str, str] | None = None,
    index: ExactNeighbours | None = None,
    new_id: Callable[[], str] | None = None,
) -> dict[str, str]:
    index = index if index is not None else ExactNeighbours(faces)
    return assign(faces, index, cluster_of or {}, params, new_id or ids())


def people(result: dict[str, str]) -> set[frozenset[str]]:
    """The clusters of a result as sets of face ids."""
    members: dict[str, set[str]] = {}
    for face, cluster in result.items():
        members.setdefault(cluster, set()).add(face)
    return {frozenset(m) for m in members.values()}


def test_tight_groups_become_clusters_and_isolated_faces_stay_outliers() -> None:
    faces = groups([5, 6, 4], spread=0.2) + groups([1, 1, 1], spread=0.0, seed=1, name="lone")
    result = run(faces, ClusterParams(min_faces=2, max_distance=0.3))
    assert people(result) == {
        frozenset(f"g{g}-{i}" for i in range(n)) for g, n in enumerate([5, 6, 4])
    }
    assert len(result) == 15  # the three lone faces are outliers, absent


def test_min_faces_is_the_number_of_other_faces_needed() -> None:
    faces = [("a", at(0.0)), ("b", at(0.1)), ("c", at(0.2))]  # each has two others near
    assert run(faces, ClusterParams(min_faces=3, max_distance=0.1)) == {}
    assert people(run(faces, ClusterParams(min_faces=2, max_distance=0.1))) == {frozenset("abc")}
    pair = faces[:2]
    assert run(pair, ClusterParams(min_faces=2, max_distance=0.1)) == {}
    assert people(run(pair, ClusterParams(min_faces=1, max_distance=0.1))) == {frozenset("ab")}


def test_a_border_face_joins_the_cluster_of_its_nearest_clustered_neighbour() -> None:
    # a..d: core (three others within 0.1); e: near only c and d, too few to found anything.
    faces = [(name, at(0.05 * i)) for i, name in enumerate("abcd")]
    faces += [("e", at(0.55)), ("lone", at(2.0))]
    result = run(faces, ClusterParams(min_faces=3, max_distance=0.1))
    assert people(result) == {frozenset("abcde")}
    assert "lone" not in result


def test_incremental_rounds_extend_clusters_instead_of_founding_duplicates() -> None:
    faces = groups([8, 8], spread=0.2)
    first, second = faces[0:4] + faces[8:12], faces[4:8] + faces[12:16]
    params, new_id = ClusterParams(min_faces=2, max_distance=0.3), ids()
    index = ExactNeighbours(first)
    cluster_of = run(first, params, index=index, new_id=new_id)
    assert len(set(cluster_of.values())) == 2
    index.add(second)
    added = run(second, params, cluster_of=cluster_of, index=index, new_id=new_id)
    assert set(added) == {face for face, _ in second}
    assert {added[f"g0-{i}"] for i in range(4, 8)} == {cluster_of["g0-0"]}
    assert {added[f"g1-{i}"] for i in range(4, 8)} == {cluster_of["g1-0"]}


def test_earlier_outliers_are_picked_up_when_passed_again() -> None:
    params, new_id = ClusterParams(min_faces=2, max_distance=0.1), ids()
    first = [("a", at(0.0)), ("b", at(0.1))]
    index = ExactNeighbours(first)
    assert run(first, params, index=index, new_id=new_id) == {}
    second = [("c", at(0.2)), ("d", at(0.3))]
    index.add(second)
    result = run(first + second, params, index=index, new_id=new_id)
    assert people(result) == {frozenset("abcd")}


def test_already_clustered_faces_keep_their_cluster_and_clusters_never_merge() -> None:
    # Two clusters 0.3 rad apart; the new face m sits between them, nearer the right one.
    left, right = [("l0", at(0.0)), ("l1", at(0.05))], [("r0", at(0.35)), ("r1", at(0.4))]
    cluster_of = {"l0": "L", "l1": "L", "r0": "R", "r1": "R"}
    faces = [*left, *right, ("m", at(0.22))]
    result = run(faces, ClusterParams(min_faces=2, max_distance=0.02), cluster_of=cluster_of)
    assert result == {"m": "R"}


def test_a_round_grows_an_existing_cluster_before_founding_new_ones() -> None:
    # The new faces a..d form a chain that starts at the existing cluster's face x; fed in
    # the order that reaches the far end first, they still all join x's cluster.
    chain = [(name, at(0.1 * (4 - i))) for i, name in enumerate("dcba")]
    faces = [("x", at(0.0)), *chain]
    result = run(faces, ClusterParams(min_faces=1, max_distance=0.006), cluster_of={"x": "X"})
    assert result == dict.fromkeys("abcd", "X")


def test_the_result_is_deterministic() -> None:
    faces = groups([4, 5, 3, 1], spread=0.35, seed=7)
    params = ClusterParams(min_faces=2, max_distance=0.35)
    assert run(faces, params) == run(faces, params)
    shuffled = [faces[i] for i in np.random.default_rng(1).permutation(len(faces))]
    assert people(run(shuffled, params)) == people(run(faces, params))


def test_exact_neighbours_are_nearest_first_within_the_distance_and_limit() -> None:
    index = ExactNeighbours([("a", at(0.0)), ("b", at(0.3)), ("c", at(0.1)), ("d", at(3.0))])
    found = index(at(0.0), 0.1, 10)
    assert [face for face, _ in found] == ["a", "c", "b"]
    assert found[0][1] == pytest.approx(0.0, abs=1e-6)
    assert found[1][1] == pytest.approx(1 - np.cos(0.1), abs=1e-6)
    assert [face for face, _ in index(at(0.0), 0.1, 2)] == ["a", "c"]
    assert ExactNeighbours()(at(0.0), 1.0, 5) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_faces": 0, "max_distance": 0.5},
        {"min_faces": 2, "max_distance": 0.0},
        {"min_faces": 2, "max_distance": 2.5},
        {"min_faces": 4, "max_distance": 0.5, "search_limit": 4},
    ],
)
def test_parameters_are_validated(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ClusterParams(**kwargs)

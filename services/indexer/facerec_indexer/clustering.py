"""Grouping of a gallery's unassigned faces into candidate people.

Density-based and incremental, in the manner of photo managers (Immich's facial recognition
job): a *core* face, one with at least ``min_faces`` other faces within ``max_distance``
(cosine distance, 1 - similarity), joins the cluster of its nearest clustered neighbour or,
when none of its neighbours is clustered, founds a new cluster that then spreads over the
core faces it reaches. A non-core face joins the cluster of its nearest clustered neighbour
within ``max_distance``; otherwise it stays an outlier, to be passed again in a later round,
when more faces may have arrived around it. Clusters already given are never changed: a round
only adds faces to clusters, or founds new ones.

The neighbour lookup is injected: in production a vector search over the gallery's
unassigned faces (every face stored so far, this round's included); here ``ExactNeighbours``
for tests and benchmarks. Pure Python and numpy.
"""

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

Neighbours = Callable[[Vector, float, int], list[tuple[str, float]]]
"""``(vector, max_distance, limit) -> [(face_id, cosine distance)]``: the faces stored within
``max_distance`` of ``vector``, nearest first, at most ``limit``; may include the face itself."""


@dataclass(frozen=True)
class ClusterParams:
    min_faces: int = 2
    """Other faces within ``max_distance`` that make a face core (able to found a cluster)."""
    max_distance: float = 0.6
    """Cosine distance (1 - similarity) within which two faces are neighbours."""
    search_limit: int = 32
    """Neighbours asked for per face: enough to see past unclustered ones to a clustered one."""

    def __post_init__(self) -> None:
        if self.min_faces < 1:
            raise ValueError("min_faces must be at least 1")
        if not 0.0 < self.max_distance <= 2.0:
            raise ValueError("max_distance must be in (0, 2]")
        if self.search_limit <= self.min_faces:
            raise ValueError("search_limit must exceed min_faces (the face itself may count)")


def assign(
    new_faces: Sequence[tuple[str, Vector]],
    neighbours: Neighbours,
    cluster_of: Mapping[str, str],
    params: ClusterParams,
    new_cluster_id: Callable[[], str],
) -> dict[str, str]:
    """Cluster ``new_faces`` (this round's faces and those still unclustered) against the
    clusters in ``cluster_of`` (face id -> cluster id). Returns face id -> cluster id for the
    faces that joined or founded a cluster in this round; outliers are absent, and faces
    already in ``cluster_of`` are left as they are. Deterministic for a given input order and
    id factory: one neighbour lookup per face, in input order."""
    pending = [face_id for face_id, _ in new_faces if face_id not in cluster_of]
    vectors = dict(new_faces)
    near: dict[str, list[tuple[str, float]]] = {}
    for face_id in dict.fromkeys(pending):
        found = neighbours(vectors[face_id], params.max_distance, params.search_limit)
        near[face_id] = [(other, d) for other, d in found if other != face_id]
    core = [face_id for face_id, others in near.items() if len(others) >= params.min_faces]
    is_core = set(core)
    assigned: dict[str, str] = {}

    def cluster(face_id: str) -> str | None:
        found = cluster_of.get(face_id)
        return found if found is not None else assigned.get(face_id)

    def nearest_cluster(face_id: str) -> str | None:
        return next((c for o, _ in near[face_id] if (c := cluster(o)) is not None), None)

    def spread(seeds: Iterable[str]) -> None:
        # Breadth-first over core faces: each takes its nearest clustered neighbour's cluster
        # (the one it was reached from, at the latest) or, as a seed with none, a new one.
        queue = deque(seeds)
        while queue:
            face_id = queue.popleft()
            if face_id in assigned:
                continue
            joined = nearest_cluster(face_id)
            assigned[face_id] = joined if joined is not None else new_cluster_id()
            queue.extend(o for o, _ in near[face_id] if o in is_core and o not in assigned)

    # Existing clusters grow first, so that a round extends them rather than founding
    # duplicates beside them; then the remaining core faces found clusters, in input order.
    spread(f for f in core if any(o in cluster_of for o, _ in near[f]))
    for face_id in core:
        spread([face_id])
    for face_id in near:
        if face_id not in is_core and (joined := nearest_cluster(face_id)) is not None:
            assigned[face_id] = joined
    return assigned


class ExactNeighbours:
    """Exact cosine neighbour lookup over unit vectors held in memory (tests, benchmarks)."""

    def __init__(self, faces: Iterable[tuple[str, Vector]] = ()) -> None:
        self.ids: list[str] = []
        self.matrix: Vector = np.empty((0, 0), dtype=np.float32)
        self.add(faces)

    def add(self, faces: Iterable[tuple[str, Vector]]) -> None:
        batch = list(faces)
        if not batch:
            return
        self.ids += [face_id for face_id, _ in batch]
        rows = np.stack([np.asarray(v, dtype=np.float32) for _, v in batch])
        self.matrix = rows if self.matrix.size == 0 else np.vstack([self.matrix, rows])

    def __call__(self, vector: Vector, max_distance: float, limit: int) -> list[tuple[str, float]]:
        if not self.ids:
            return []
        distances = 1.0 - self.matrix @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(distances, kind="stable")[:limit]
        return [(self.ids[i], float(distances[i])) for i in order if distances[i] <= max_distance]

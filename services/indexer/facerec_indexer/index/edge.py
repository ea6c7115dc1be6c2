"""The embedded backend: Qdrant Edge, Qdrant's in-process engine with real HNSW.

Each model's collection is one Edge shard in its own folder under the data directory.
A shard belongs to one process, so exactly one indexer process may open the folder.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import qdrant_edge as qe

from facerec_indexer.index.base import (
    COLLECTION_PREFIX,
    CROP,
    HIT_FIELDS,
    INDEXED_FIELDS,
    TENANT,
    FaceIndex,
    FacePoint,
    FaceRecord,
    Hit,
    Scope,
    collection_name,
    hit,
)

log = logging.getLogger(__name__)


class EdgeIndex(FaceIndex):
    def __init__(self, root: Path, optimize_after_updates: int = 2000) -> None:
        self._root = root
        self._root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, qe.EdgeShard] = {}
        self._optimize_after = optimize_after_updates
        self._updates_since_optimize = 0
        for folder in sorted(root.glob(f"{COLLECTION_PREFIX}*")):
            if folder.is_dir():
                model = folder.name.removeprefix(COLLECTION_PREFIX)
                self._shards[model] = qe.EdgeShard.load(str(folder))
                # Build HNSW over whatever the last run appended, before serving queries.
                self._shards[model].optimize()

    def _shard(self, model: str, dim: int) -> qe.EdgeShard:
        shard = self._shards.get(model)
        if shard is None:
            config = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            )
            shard = qe.EdgeShard.create(str(self._root / collection_name(model)), config)
            for field in INDEXED_FIELDS:
                params = qe.KeywordIndexParams(is_tenant=field == TENANT)
                shard.update(qe.UpdateOperation.create_field_index(field, params))
            self._shards[model] = shard
        return shard

    @staticmethod
    def _filter(scope: Scope) -> qe.Filter:
        return qe.Filter(
            must=[
                qe.FieldCondition(key=key, match=qe.MatchValue(value))
                for key, value in scope.conditions()
            ],
            must_not=[qe.IsEmptyCondition(CROP)] if scope.with_crop else None,
        )

    def upsert(self, model: str, dim: int, points: Sequence[FacePoint]) -> None:
        if not points:
            return
        shard = self._shard(model, dim)
        shard.update(
            qe.UpdateOperation.upsert_points(
                [qe.Point(p.id, p.vector.tolist(), p.payload()) for p in points]
            )
        )
        self._count_updates(shard, len(points))

    def _count_updates(self, shard: qe.EdgeShard, n: int) -> None:
        # Appended points are searched by brute force until the optimizer indexes them;
        # run it in batches so that a large gallery gets its HNSW graph.
        self._updates_since_optimize += n
        if self._updates_since_optimize >= self._optimize_after:
            shard.optimize()
            self._updates_since_optimize = 0

    def search(
        self, model: str, vectors: npt.NDArray[np.float32], scope: Scope, limit: int
    ) -> list[list[Hit]]:
        shard = self._shards.get(model)
        if shard is None or len(vectors) == 0:
            return [[] for _ in vectors]
        flt = self._filter(scope)
        requests = [
            qe.QueryRequest(
                query=qe.Query.Nearest(vector.tolist()),
                filter=flt,
                limit=limit,
                with_payload=HIT_FIELDS,
            )
            for vector in np.asarray(vectors, dtype=np.float32)
        ]
        results = shard.query_batch(qe.QueryBatchRequest(requests))
        return [[hit(p.id, p.score, p.payload) for p in points] for points in results]

    def count(self, scope: Scope) -> int:
        flt = self._filter(scope)
        return sum(
            self._shards[model].count(qe.CountRequest(exact=True, filter=flt))
            for model in self.models_in(scope)
        )

    def delete(self, scope: Scope) -> None:
        flt = self._filter(scope)
        for model in self.models_in(scope):
            shard = self._shards[model]
            shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
            shard.flush()

    def scroll(
        self, scope: Scope, with_vectors: bool = False, fields: Sequence[str] | None = None
    ) -> list[FaceRecord]:
        flt = self._filter(scope)
        found = []
        for model in self.models_in(scope):
            shard, offset = self._shards[model], None
            while True:
                page, offset = shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=1000,
                        filter=flt,
                        with_payload=True if fields is None else list(fields) or False,
                        with_vector=with_vectors,
                    )
                )
                found += [
                    FaceRecord(
                        id=str(p.id),
                        model=model,
                        payload=dict(p.payload or {}),
                        vector=_vector(p.vector) if with_vectors else None,
                    )
                    for p in page
                ]
                if offset is None:
                    break
        return found

    def retrieve(self, model: str, ids: Sequence[str]) -> list[FaceRecord]:
        shard = self._shards.get(model)
        if shard is None or not ids:
            return []
        found = shard.retrieve(list(ids), True, False)
        return [FaceRecord(id=str(p.id), model=model, payload=dict(p.payload or {})) for p in found]

    def set_payload(self, model: str, ids: Sequence[str], payload: dict[str, Any]) -> None:
        shard = self._shards.get(model)
        if shard is not None and ids:
            # Like upserts, not flushed at once (a flush costs ~8 ms; grouping sets payloads
            # on every batch image). Deletions are flushed: erasure must reach the disk.
            shard.update(qe.UpdateOperation.set_payload(list(ids), payload))

    def delete_ids(self, model: str, ids: Sequence[str]) -> None:
        shard = self._shards.get(model)
        if shard is not None and ids:
            shard.update(qe.UpdateOperation.delete_points(list(ids)))
            shard.flush()

    def models(self) -> list[str]:
        return sorted(self._shards)

    def close(self) -> None:
        for shard in self._shards.values():
            shard.flush()
            shard.close()
        self._shards.clear()


def _vector(stored: Any) -> npt.NDArray[np.float32]:
    # Edge returns the default (unnamed) vector as a list, or a dict keyed by name "".
    values = stored.get("", next(iter(stored.values()))) if isinstance(stored, dict) else stored
    return np.asarray(values, dtype=np.float32)

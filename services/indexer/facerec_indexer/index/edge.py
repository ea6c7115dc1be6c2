"""The embedded backend: Qdrant Edge, Qdrant's in-process engine with real HNSW.

Each model's collection is a set of Edge shards in its own folder under the data
directory (``tiers.ShardSet``: a live shard taking writes, shards built by a child
process searched beside it). A shard belongs to one process, so exactly one indexer
process may open the folder.
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
    FaceIndex,
    FacePoint,
    FaceRecord,
    Hit,
    Scope,
    collection_name,
    hit,
)
from facerec_indexer.index.shards import SEARCH_PARAMS, pages, stored_vector
from facerec_indexer.index.tiers import MANIFEST, ShardSet, Tiering, adopt_older_shards

log = logging.getLogger(__name__)


class EdgeIndex(FaceIndex):
    def __init__(self, root: Path, tiering: Tiering | None = None) -> None:
        self._root = root
        self._root.mkdir(parents=True, exist_ok=True)
        self._tiering = tiering or Tiering()
        self._sets: dict[str, ShardSet] = {}
        adopt_older_shards(root)
        for folder in sorted(root.glob(f"{COLLECTION_PREFIX}*")):
            if (folder / MANIFEST).exists():
                model = folder.name.removeprefix(COLLECTION_PREFIX)
                self._sets[model] = ShardSet.open(folder, self._tiering)

    def _shards(self, model: str, dim: int) -> ShardSet:
        shards = self._sets.get(model)
        if shards is None:
            folder = self._root / collection_name(model)
            shards = self._sets[model] = ShardSet.create(folder, dim, self._tiering)
        return shards

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
        if points:
            self._shards(model, dim).upsert(
                [qe.Point(p.id, p.vector.tolist(), p.payload()) for p in points]
            )

    def search(
        self, model: str, vectors: npt.NDArray[np.float32], scope: Scope, limit: int
    ) -> list[list[Hit]]:
        shards = self._sets.get(model)
        if shards is None or len(vectors) == 0:
            return [[] for _ in vectors]
        flt = self._filter(scope)
        requests = [
            qe.QueryRequest(
                query=qe.Query.Nearest(vector.tolist()),
                filter=flt,
                limit=limit,
                params=SEARCH_PARAMS,
                with_payload=False,
            )
            for vector in np.asarray(vectors, dtype=np.float32)
        ]
        results = shards.query(requests, limit, HIT_FIELDS)
        return [[hit(h.point_id, h.score, h.payload) for h in hits] for hits in results]

    def count(self, scope: Scope) -> int:
        flt = self._filter(scope)
        return sum(self._sets[model].count(flt) for model in self.models_in(scope))

    def delete(self, scope: Scope) -> None:
        flt = self._filter(scope)
        for model in self.models_in(scope):
            self._sets[model].delete(flt)

    def scroll(
        self, scope: Scope, with_vectors: bool = False, fields: Sequence[str] | None = None
    ) -> list[FaceRecord]:
        flt = self._filter(scope)
        with_payload = True if fields is None else list(fields) or False
        return [
            FaceRecord(
                id=str(p.id),
                model=model,
                payload=dict(p.payload or {}),
                vector=np.asarray(stored_vector(p.vector), dtype=np.float32)
                if with_vectors
                else None,
            )
            for model in self.models_in(scope)
            for shard in self._sets[model].shards()
            for page in pages(shard, flt, with_payload, with_vectors)
            for p in page
        ]

    def retrieve(self, model: str, ids: Sequence[str]) -> list[FaceRecord]:
        shards = self._sets.get(model)
        if shards is None or not ids:
            return []
        return [
            FaceRecord(id=str(p.id), model=model, payload=dict(p.payload or {}))
            for p in shards.retrieve(ids)
        ]

    def set_payload(self, model: str, ids: Sequence[str], payload: dict[str, Any]) -> None:
        shards = self._sets.get(model)
        if shards is not None and ids:
            # Like upserts, not flushed at once (a flush costs ~8 ms; grouping sets payloads
            # on every batch image). Deletions are flushed: erasure must reach the disk.
            shards.set_payload(ids, payload)

    def delete_ids(self, model: str, ids: Sequence[str]) -> None:
        shards = self._sets.get(model)
        if shards is not None and ids:
            shards.delete_ids(ids)

    def models(self) -> list[str]:
        return sorted(self._sets)

    def ping(self) -> dict[str, Any]:
        facts = super().ping()
        for shards in list(self._sets.values()):
            for key, value in shards.stats().items():
                facts[f"index_{key}"] = facts.get(f"index_{key}", 0) + value
        return facts

    def flush(self) -> None:
        for shards in self._sets.values():
            shards.flush()

    def settle(self, timeout_s: float = 600.0) -> bool:
        """Wait for every shard build under way (tests and benchmarks)."""
        return all(shards.settle(timeout_s) for shards in self._sets.values())

    def close(self) -> None:
        for shards in self._sets.values():
            shards.close()
        self._sets.clear()

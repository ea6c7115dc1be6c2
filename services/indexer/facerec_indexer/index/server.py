"""The server backend: a Qdrant server (or cluster) through qdrant-client.

Compose and Kubernetes use it. The tests run it against qdrant-client's local mode, which
speaks the same API in-process; local mode is far too slow to be a default.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models

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


@dataclass(frozen=True)
class CollectionLayout:
    """How a new collection is spread over a Qdrant cluster. One server: all 1. The
    three-node chart (deploy/helm-values): 3 shards, each held by ``replication_factor``
    nodes, a write acknowledged once ``write_consistency_factor`` of them applied it."""

    shard_number: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.write_consistency_factor <= self.replication_factor:
            raise ValueError(
                f"write_consistency_factor {self.write_consistency_factor} must be between 1 "
                f"and replication_factor {self.replication_factor}"
            )


class ServerIndex(FaceIndex):
    def __init__(self, client: QdrantClient, layout: CollectionLayout | None = None) -> None:
        self._client = client
        self.layout = layout or CollectionLayout()
        self._known: set[str] = set()

    def _ensure(self, model: str, dim: int) -> str:
        name = collection_name(model)
        if name in self._known or self._client.collection_exists(name):
            self._known.add(name)
            return name
        try:
            self._client.create_collection(
                name,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
                shard_number=self.layout.shard_number,
                replication_factor=self.layout.replication_factor,
                write_consistency_factor=self.layout.write_consistency_factor,
            )
        except Exception:
            # Indexers that start together all see no collection and all create it; every
            # one but the first is refused (409 from a server, ValueError in local mode).
            # The collection exists either way, which is all this asked for.
            if not self._client.collection_exists(name):
                raise
        # Creating a payload index that exists already succeeds, so every creator may do it.
        for field in INDEXED_FIELDS:
            self._client.create_payload_index(
                name,
                field_name=field,
                field_schema=models.KeywordIndexParams(
                    type=models.KeywordIndexType.KEYWORD, is_tenant=field == TENANT
                ),
            )
        self._known.add(name)
        return name

    @staticmethod
    def _filter(scope: Scope) -> models.Filter:
        return models.Filter(
            must=[
                models.FieldCondition(key=key, match=models.MatchValue(value=value))
                for key, value in scope.conditions()
            ],
            must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=CROP))]
            if scope.with_crop
            else None,
        )

    def upsert(self, model: str, dim: int, points: Sequence[FacePoint]) -> None:
        if not points:
            return
        name = self._ensure(model, dim)
        self._client.upsert(
            name,
            points=[
                models.PointStruct(id=p.id, vector=p.vector.tolist(), payload=p.payload())
                for p in points
            ],
            wait=True,
        )

    def search(
        self, model: str, vectors: npt.NDArray[np.float32], scope: Scope, limit: int
    ) -> list[list[Hit]]:
        name = collection_name(model)
        if len(vectors) == 0 or not self._client.collection_exists(name):
            return [[] for _ in vectors]
        flt = self._filter(scope)
        responses = self._client.query_batch_points(
            name,
            requests=[
                models.QueryRequest(
                    query=vector.tolist(), filter=flt, limit=limit, with_payload=HIT_FIELDS
                )
                for vector in np.asarray(vectors, dtype=np.float32)
            ],
        )
        return [[hit(p.id, p.score, p.payload) for p in response.points] for response in responses]

    def count(self, scope: Scope) -> int:
        flt = self._filter(scope)
        return sum(
            self._client.count(collection_name(m), count_filter=flt, exact=True).count
            for m in self.models_in(scope)
        )

    def delete(self, scope: Scope) -> None:
        flt = self._filter(scope)
        for model in self.models_in(scope):
            self._client.delete(
                collection_name(model), points_selector=models.FilterSelector(filter=flt), wait=True
            )

    def scroll(
        self, scope: Scope, with_vectors: bool = False, fields: Sequence[str] | None = None
    ) -> list[FaceRecord]:
        flt = self._filter(scope)
        found = []
        for model in self.models_in(scope):
            offset = None
            while True:
                page, offset = self._client.scroll(
                    collection_name(model),
                    scroll_filter=flt,
                    limit=1000,
                    offset=offset,
                    with_payload=True if fields is None else list(fields) or False,
                    with_vectors=with_vectors,
                )
                found += [
                    FaceRecord(
                        id=str(p.id),
                        model=model,
                        payload=dict(p.payload or {}),
                        vector=np.asarray(p.vector, dtype=np.float32) if with_vectors else None,
                    )
                    for p in page
                ]
                if offset is None:
                    break
        return found

    def retrieve(self, model: str, ids: Sequence[str]) -> list[FaceRecord]:
        if not ids or model not in self.models():
            return []
        found = self._client.retrieve(
            collection_name(model), ids=list(ids), with_payload=True, with_vectors=False
        )
        return [FaceRecord(id=str(p.id), model=model, payload=dict(p.payload or {})) for p in found]

    def set_payload(self, model: str, ids: Sequence[str], payload: dict[str, Any]) -> None:
        if ids:
            self._client.set_payload(
                collection_name(model),
                payload=payload,
                points=models.PointIdsList(points=list(ids)),
                wait=True,
            )

    def delete_ids(self, model: str, ids: Sequence[str]) -> None:
        if ids:
            self._client.delete(
                collection_name(model),
                points_selector=models.PointIdsList(points=list(ids)),
                wait=True,
            )

    def models(self) -> list[str]:
        return sorted(
            c.name.removeprefix(COLLECTION_PREFIX)
            for c in self._client.get_collections().collections
            if c.name.startswith(COLLECTION_PREFIX)
        )

    def close(self) -> None:
        self._client.close()

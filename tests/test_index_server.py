"""The Qdrant server backend creating its collections: idempotent when several indexers
start together, and laid out (shards, replication, write consistency) as configured.

qdrant-client's local mode stands in for the server (it speaks the same API in-process and
refuses a second create of a collection as the server does, with another exception type).
"""

import threading
import uuid
from typing import Any

import numpy as np
import pytest
from facerec_indexer.index.base import FacePoint, Scope
from facerec_indexer.index.server import CollectionLayout, ServerIndex
from facerec_indexer.settings import IndexerSettings
from facerec_indexer.worker import open_index
from qdrant_client import QdrantClient

MODEL = "w600k_mbf"
DIM = 8


class RacingClient(QdrantClient):
    """A real local-mode client whose first ``collection_exists`` calls wait for each
    other, so every creator sees no collection before any of them creates it: the race of
    indexers that start together, made certain instead of likely."""

    def __init__(self, creators: int) -> None:
        super().__init__(location=":memory:")
        self.barrier = threading.Barrier(creators, timeout=10)
        self.waiting = creators
        self.lock = threading.Lock()
        self.creates: list[dict[str, Any]] = []

    def collection_exists(self, collection_name: str, **kwargs: Any) -> bool:
        with self.lock:
            race = self.waiting > 0
            self.waiting -= 1
        exists = super().collection_exists(collection_name, **kwargs)
        if race:
            self.barrier.wait()
        return exists

    # Takes every keyword the real method takes and passes them on unchanged.
    def create_collection(  # type: ignore[override]
        self, collection_name: str, **kwargs: Any
    ) -> bool:
        with self.lock:
            self.creates.append(kwargs)
        return super().create_collection(collection_name, **kwargs)


def point(tenant: str) -> FacePoint:
    vector = np.random.default_rng().standard_normal(DIM).astype(np.float32)
    return FacePoint(
        id=str(uuid.uuid4()),
        vector=vector / np.linalg.norm(vector),
        tenant=tenant,
        collection="staff",
        identity_id="",
        extra={"job_id": "job", "image": "a.jpg"},
    )


def test_two_indexers_create_the_collection_at_once() -> None:
    client = RacingClient(creators=2)
    layout = CollectionLayout(shard_number=3, replication_factor=3, write_consistency_factor=2)
    indexers = [ServerIndex(client, layout) for _ in range(2)]
    errors: list[BaseException] = []

    def write(index: ServerIndex, tenant: str) -> None:
        try:
            index.upsert(MODEL, DIM, [point(tenant)])
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(index, f"t{i}")) for i, index in enumerate(indexers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    # Both really tried to create it, and both writes landed in the one collection.
    assert len(client.creates) == 2
    for kwargs in client.creates:
        assert kwargs["shard_number"] == 3
        assert kwargs["replication_factor"] == 3
        assert kwargs["write_consistency_factor"] == 2
    assert indexers[0].count(Scope(tenant="t0")) == 1
    assert indexers[1].count(Scope(tenant="t1")) == 1


def test_a_create_that_fails_for_another_reason_still_fails() -> None:
    class Refusing(QdrantClient):
        # Refuses whatever it is asked, so the keywords are not spelled out.
        def create_collection(  # type: ignore[override]
            self, collection_name: str, **kwargs: Any
        ) -> bool:
            raise ConnectionError("qdrant is unreachable")

    index = ServerIndex(Refusing(location=":memory:"))
    with pytest.raises(ConnectionError):
        index.upsert(MODEL, DIM, [point("t")])


def test_layout_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Opening a client does not connect; nothing listens there.
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("FACEREC_INDEXER_QDRANT_SHARD_NUMBER", "3")
    monkeypatch.setenv("FACEREC_INDEXER_QDRANT_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("FACEREC_INDEXER_QDRANT_WRITE_CONSISTENCY_FACTOR", "2")
    index = open_index(IndexerSettings())
    assert isinstance(index, ServerIndex)
    assert index.layout == CollectionLayout(3, 3, 2)
    with pytest.raises(ValueError, match="write_consistency_factor"):
        CollectionLayout(shard_number=1, replication_factor=2, write_consistency_factor=3)

"""What the indexer asks of a vector index, whichever Qdrant runs it.

One Qdrant collection per recognition model (vectors of different models are not
comparable); galleries and identities are payload fields with payload indexes, the tenant
field marked as the tenant key (Qdrant's multitenancy pattern). Every query, count and
delete is scoped by tenant and gallery, so no call can reach another tenant's faces.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

COLLECTION_PREFIX = "faces_"

# Payload fields every point carries, each with a keyword index.
TENANT = "tenant"
COLLECTION = "collection"
IDENTITY = "identity_id"
# Enrolled faces belong to an identity and are matched; unassigned faces (from batches,
# matching nobody) are only grouped into people, never matched.
POOL = "pool"
ENROLLED = "enrolled"
UNASSIGNED = "unassigned"
# The person (cluster) an unassigned face was grouped into; "" while it is in none.
CLUSTER = "cluster_id"
INDEXED_FIELDS = (TENANT, COLLECTION, IDENTITY, POOL, CLUSTER)
# An enrolled face's aligned 112x112 crop (lossless WebP, base64), absent where none is
# kept. Never read by a search: hits carry only the fields below.
CROP = "crop"
HIT_FIELDS = [IDENTITY, CLUSTER]
ALL_MODELS = "*"


def collection_name(model: str) -> str:
    return f"{COLLECTION_PREFIX}{model}"


@dataclass(frozen=True)
class Scope:
    tenant: str
    collection: str | None = None
    identity_id: str | None = None
    pool: str | None = None
    cluster_id: str | None = None
    # Only the points that keep a crop (to count the crops an erasure deletes).
    with_crop: bool = False
    # Which model's collection a count, scroll or delete reads: one model, every model
    # (ALL_MODELS), or None: every model, except that a gallery read through
    # ``ServingIndex`` reads the model that serves the gallery (its other index, kept
    # during a migration, holds the same faces again).
    model: str | None = None

    def conditions(self) -> list[tuple[str, str]]:
        pairs = [(TENANT, self.tenant)]
        for key, value in (
            (COLLECTION, self.collection),
            (IDENTITY, self.identity_id),
            (POOL, self.pool),
            (CLUSTER, self.cluster_id),
        ):
            if value is not None:
                pairs.append((key, value))
        return pairs


@dataclass(frozen=True)
class FacePoint:
    id: str
    vector: npt.NDArray[np.float32]
    tenant: str
    collection: str
    identity_id: str  # "" for an unassigned face
    extra: dict[str, Any]
    pool: str = ENROLLED
    cluster_id: str = ""

    def payload(self) -> dict[str, Any]:
        return {
            **self.extra,
            TENANT: self.tenant,
            COLLECTION: self.collection,
            IDENTITY: self.identity_id,
            POOL: self.pool,
            CLUSTER: self.cluster_id,
        }


@dataclass(frozen=True)
class Hit:
    point_id: str
    identity_id: str  # "" for an unassigned face
    score: float
    cluster_id: str = ""  # unassigned faces: the person they were grouped into


def hit(point_id: Any, score: float, payload: dict[str, Any] | None) -> Hit:
    """A search result as either backend returns it: id, score and the point's payload."""
    fields = payload or {}
    return Hit(
        point_id=str(point_id),
        identity_id=str(fields.get(IDENTITY) or ""),
        score=score,
        cluster_id=str(fields.get(CLUSTER) or ""),
    )


@dataclass(frozen=True)
class FaceRecord:
    """A stored point as read back: which model's collection holds it, and its payload."""

    id: str
    model: str
    payload: dict[str, Any]
    vector: npt.NDArray[np.float32] | None = None


class FaceIndex(ABC):
    @abstractmethod
    def upsert(self, model: str, dim: int, points: Sequence[FacePoint]) -> None:
        """Insert or overwrite points; the same id twice leaves one point."""

    @abstractmethod
    def search(
        self, model: str, vectors: npt.NDArray[np.float32], scope: Scope, limit: int
    ) -> list[list[Hit]]:
        """For each vector, the ``limit`` nearest points in scope, best first (cosine)."""

    @abstractmethod
    def count(self, scope: Scope) -> int:
        """Points in scope, over every model's collection."""

    @abstractmethod
    def delete(self, scope: Scope) -> None:
        """Remove every point in scope, from every model's collection."""

    @abstractmethod
    def scroll(
        self, scope: Scope, with_vectors: bool = False, fields: Sequence[str] | None = None
    ) -> list[FaceRecord]:
        """Every point in scope, over every model's collection; with only these payload
        fields where ``fields`` names them (an empty list: ids alone), else all of them."""

    @abstractmethod
    def retrieve(self, model: str, ids: Sequence[str]) -> list[FaceRecord]:
        """The points of ``model`` with these ids that exist, with payloads (no vectors)."""

    @abstractmethod
    def set_payload(self, model: str, ids: Sequence[str], payload: dict[str, Any]) -> None:
        """Overwrite these payload keys of existing points (keys not named are kept)."""

    @abstractmethod
    def delete_ids(self, model: str, ids: Sequence[str]) -> None:
        """Remove these points."""

    @abstractmethod
    def models(self) -> list[str]:
        """Models that have a collection."""

    def models_in(self, scope: Scope) -> list[str]:
        """The models whose collections a count, scroll or delete in ``scope`` reads."""
        models = self.models()
        if scope.model is None or scope.model == ALL_MODELS:
            return models
        return [scope.model] if scope.model in models else []

    def ping(self) -> dict[str, Any]:
        """Cheap liveness facts for readiness checks; raises if the index cannot answer."""
        return {"index_ok": True, "models": self.models()}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files or connections."""

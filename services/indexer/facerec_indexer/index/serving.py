"""Reads of a gallery go to the model that serves it.

While a gallery migrates to another model, both models' collections hold its faces under
the same point ids (``facerec_common.migrations``). Every count and scroll of a gallery
that does not name a model (an identity's faces, face counts, people, export, the
enrolment's check for a repeated photo) must see each face once, as the serving model
stores it: this wrapper fills in the gallery's serving model. Deletions are not narrowed:
erasing a face, an identity or a gallery removes it from every model's collection.
"""

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from facerec_indexer.index.base import FaceIndex, FacePoint, FaceRecord, Hit, Scope

# (tenant, gallery) -> the recognition model serving it; None: the gallery has only one.
ServingModel = Callable[[str, str], str | None]


class ServingIndex(FaceIndex):
    def __init__(self, index: FaceIndex, serving_model: ServingModel) -> None:
        self._index = index
        self._serving_model = serving_model

    def _served(self, scope: Scope) -> Scope:
        if scope.model is not None or scope.collection is None:
            return scope
        model = self._serving_model(scope.tenant, scope.collection)
        return replace(scope, model=model) if model else scope

    def upsert(self, model: str, dim: int, points: Sequence[FacePoint]) -> None:
        self._index.upsert(model, dim, points)

    def search(
        self, model: str, vectors: npt.NDArray[np.float32], scope: Scope, limit: int
    ) -> list[list[Hit]]:
        return self._index.search(model, vectors, scope, limit)

    def count(self, scope: Scope) -> int:
        return self._index.count(self._served(scope))

    def delete(self, scope: Scope) -> None:
        self._index.delete(scope)

    def scroll(
        self, scope: Scope, with_vectors: bool = False, fields: Sequence[str] | None = None
    ) -> list[FaceRecord]:
        return self._index.scroll(self._served(scope), with_vectors, fields)

    def retrieve(self, model: str, ids: Sequence[str]) -> list[FaceRecord]:
        return self._index.retrieve(model, ids)

    def set_payload(self, model: str, ids: Sequence[str], payload: dict[str, Any]) -> None:
        self._index.set_payload(model, ids, payload)

    def delete_ids(self, model: str, ids: Sequence[str]) -> None:
        self._index.delete_ids(model, ids)

    def models(self) -> list[str]:
        return self._index.models()

    def ping(self) -> dict[str, Any]:
        return self._index.ping()

    def close(self) -> None:
        self._index.close()

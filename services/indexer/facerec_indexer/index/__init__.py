"""The face index: one narrow interface, two Qdrant backends."""

from facerec_indexer.index.base import FaceIndex, FacePoint, Hit, Scope

__all__ = ["FaceIndex", "FacePoint", "Hit", "Scope"]

"""Identity records: one Redis hash each, written by the gateway, read by the indexer.

The vectors of an identity live in the index; its record (name, metadata) lives here so
that the gateway can create, list and read identities without a round trip to a worker.
"""

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


def text(value: Any) -> str:
    """Redis replies are bytes unless the client decodes them; accept both."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decoded(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in fields.items()}


class IdentityState(StrEnum):
    ACTIVE = "active"
    # Set first when an identity is deleted: the indexer then refuses new faces for it,
    # so an enrolment racing the delete cannot leave vectors behind.
    DELETING = "deleting"


class IdentityRecord(BaseModel):
    id: str
    name: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float
    state: IdentityState = IdentityState.ACTIVE

    def to_hash(self) -> Mapping[Any, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "metadata": json.dumps(self.metadata),
            "created_at": repr(self.created_at),
            "state": self.state.value,
        }

    @classmethod
    def from_hash(cls, fields: Mapping[Any, Any]) -> "IdentityRecord":
        text = decoded(fields)
        return cls(
            id=text["id"],
            name=text["name"],
            metadata=json.loads(text.get("metadata") or "{}"),
            created_at=float(text["created_at"]),
            state=IdentityState(text.get("state", IdentityState.ACTIVE)),
        )

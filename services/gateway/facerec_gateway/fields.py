"""Limits on what JSON bodies may hold, shared by every request model.

A JSON body is small by nature (names, metadata, a URL): the limits keep one request from
filling Redis or the index payloads, and each refusal names the limit.
"""

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Identity metadata: the serialised JSON object, and how deeply it may nest.
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 5
# Any request body that is not an image upload (JSON): checked before it is parsed.
MAX_JSON_BODY_BYTES = 64 * 1024


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _checked_metadata(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES}")
    depth = _depth(value)
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata nests {depth} levels deep; at most {MAX_METADATA_DEPTH}")
    return value


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_checked_metadata),
    Field(
        description=(
            f"Free JSON object kept with the identity: at most {MAX_METADATA_BYTES} bytes "
            f"as JSON, {MAX_METADATA_DEPTH} levels deep"
        )
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class RequestBody(BaseModel):
    """A JSON request body: a field it does not name is refused (422), and its schema says
    so (``additionalProperties: false``), so that a misspelt field is never silently
    ignored."""

    model_config = ConfigDict(extra="forbid")


class NewIdentity(RequestBody):
    name: Name
    metadata: Metadata = Field(default_factory=dict)

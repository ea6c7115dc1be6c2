"""Gallery archives: a gallery's identities and enrolled faces with their vectors, out of one
gallery and into another (of this tenant, another tenant, or another deployment).

An archive is JSON Lines (``application/x-ndjson``): one JSON object a line, which ``jq``,
``pandas.read_json(lines=True)``, DuckDB or any text tool opens without a schema library,
and which is written and read line by line. (Parquet would need pyarrow in the gateway and
in every reader's hands, and a gallery's few thousand rows gain nothing from columns.)

    {"type": "manifest", "format": "facerec-gallery", "format_version": 1, "model": {tag},
     "metric": "cosine", "tenant": ..., "collection": ..., "exported_at": ...,
     "counts": {"identities": n, "faces": m}}
    {"type": "identity", "id", "name", "metadata", "created_at"}     n lines
    {"type": "face", "id", "identity_id", "vector", "image", "sha256", "bbox",
     "created_at", "thumbnail"}                                      m lines
    {"type": "end", "sha256": ..., "signature": ...}

``vector`` is the face's float32 vector, little-endian, in base64 (exact). The end line
holds the sha256 of every byte before it and an HMAC-SHA256 of the same bytes with the
exporting tenant's archive secret: an archive changed or cut short is refused, and so is
one signed by another tenant unless the import names that tenant's secret.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from facerec_common.embeddings import EmbeddingModel
from facerec_common.errors import InvalidInput
from facerec_common.identities import IdentityRecord, IdentityState, text
from facerec_common.messages import IndexCallOp
from facerec_common.names import (
    archive_secret_key,
    collections_key,
    identities_key,
    identity_key,
)
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from facerec_gateway.deps import Services
from facerec_gateway.indexer_calls import call_indexer
from facerec_gateway.models import gallery_model
from facerec_gateway.problems import Conflict

FORMAT = "facerec-gallery"
FORMAT_VERSION = 1
MEDIA_TYPE = "application/x-ndjson"
# Where archives are imported (``/v1/collections/{c}/import``): the request body may be as
# large as an upload, not only a JSON body's 64 KiB.
IMPORT_PATH = "/import"


class ArchiveCounts(BaseModel):
    identities: int
    faces: int


class ArchiveManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["manifest"]
    format: Literal["facerec-gallery"]
    format_version: int
    model: EmbeddingModel
    metric: Literal["cosine"]
    tenant: str
    collection: str
    exported_at: float
    counts: ArchiveCounts


class ArchivedIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["identity"]
    id: str = Field(pattern=r"^[0-9a-f-]{36}$")
    name: str = Field(min_length=1, max_length=200)
    metadata: dict[str, Any]
    created_at: float


class ArchivedFace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["face"]
    id: str
    identity_id: str
    # float32 little-endian, base64
    vector: str
    image: str | None
    sha256: str | None
    bbox: list[float] | None
    created_at: float | None
    thumbnail: str | None


class ArchiveEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["end"]
    # sha256 (hex) of every byte before this line
    sha256: str
    # HMAC-SHA256 (hex) of the same bytes with the exporting tenant's archive secret
    signature: str


class ArchiveLine(RootModel[ArchiveManifest | ArchivedIdentity | ArchivedFace | ArchiveEnd]):
    """One line of a gallery archive (JSON Lines): the manifest first, then identities,
    then faces, then the end line."""


class ImportResult(BaseModel):
    collection: str
    model: EmbeddingModel
    identities: int
    faces: int


class ArchiveSecret(BaseModel):
    secret: str


async def archive_secret(services: Services, tenant: str) -> str:
    """The tenant's archive secret, made on first use."""
    key = archive_secret_key(tenant)
    await services.redis.set(key, secrets.token_urlsafe(32), nx=True)
    return text(await services.redis.get(key))


def _line(body: BaseModel | dict[str, Any]) -> bytes:
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


async def export_lines(
    services: Services, tenant: str, collection: str
) -> tuple[ArchiveCounts, AsyncIterator[bytes]]:
    """The archive of a gallery, line by line; read before the first line is sent, so a
    failure is a problem, never half an archive."""
    model = await gallery_model(services, tenant, collection)
    ids = await services.identities.all_ids(tenant, collection)
    found = [await services.identities.get(tenant, collection, i) for i in ids]
    records = [r for r in found if r is not None and r.state is IdentityState.ACTIVE]
    answer = await call_indexer(
        services, IndexCallOp.EXPORT_FACES, tenant, collection, model=model.model
    )
    faces: list[dict[str, Any]] = answer["faces"]
    counts = ArchiveCounts(identities=len(records), faces=len(faces))
    secret = (await archive_secret(services, tenant)).encode()

    async def lines() -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        signature = hmac.new(secret, digestmod=hashlib.sha256)
        manifest = ArchiveManifest(
            type="manifest",
            format=FORMAT,
            format_version=FORMAT_VERSION,
            model=model,
            metric="cosine",
            tenant=tenant,
            collection=collection,
            exported_at=round(time.time(), 3),
            counts=counts,
        )
        body = [_line(manifest)]
        body += [_line(_identity_line(r)) for r in records]
        body += [_line({"type": "face", **face}) for face in faces]
        for chunk in body:
            digest.update(chunk)
            signature.update(chunk)
            yield chunk
        end = ArchiveEnd(type="end", sha256=digest.hexdigest(), signature=signature.hexdigest())
        yield _line(end)

    return counts, lines()


def _identity_line(record: IdentityRecord) -> ArchivedIdentity:
    return ArchivedIdentity(
        type="identity",
        id=record.id,
        name=record.name,
        metadata=record.metadata,
        created_at=record.created_at,
    )


def read_archive(
    data: bytes, secrets_to_try: list[str]
) -> tuple[ArchiveManifest, list[ArchivedIdentity], list[ArchivedFace]]:
    """Check an archive's integrity, signature, format and counts; each refusal says
    which."""
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    try:
        end = ArchiveEnd.model_validate_json(last)
    except ValidationError:
        raise InvalidInput(
            "the archive is corrupt or cut short: its last line is not the end line"
        ) from None
    if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), end.sha256):
        raise InvalidInput("the archive is corrupt: its content does not match its sha256")
    signed = any(
        hmac.compare_digest(
            hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(), end.signature
        )
        for secret in secrets_to_try
    )
    if not signed:
        raise InvalidInput(
            "the archive is signed with another tenant's archive secret: pass that "
            "secret in X-Archive-Secret (GET /v1/archive-secret of the exporting tenant)"
        )
    lines = body.splitlines()
    try:
        manifest = ArchiveManifest.model_validate_json(lines[0])
        rest = [ArchiveLine.model_validate_json(line).root for line in lines[1:]]
    except ValidationError as exc:
        raise InvalidInput(f"the archive is not a facerec gallery archive: {exc}") from None
    identities = [line for line in rest if isinstance(line, ArchivedIdentity)]
    faces = [line for line in rest if isinstance(line, ArchivedFace)]
    if manifest.format_version != FORMAT_VERSION:
        raise InvalidInput(
            f"archive format version {manifest.format_version}; this service reads {FORMAT_VERSION}"
        )
    found = ArchiveCounts(identities=len(identities), faces=len(faces))
    if found != manifest.counts or len(lines) != 1 + found.identities + found.faces:
        raise InvalidInput(
            f"the archive holds {found.identities} identities and {found.faces} faces "
            f"({len(lines) - 1} lines), its manifest says {manifest.counts.identities} and "
            f"{manifest.counts.faces}"
        )
    known = {identity.id for identity in identities}
    for face in faces:
        if face.identity_id not in known:
            raise InvalidInput(f"face {face.id} belongs to no identity of the archive")
        try:
            size = len(base64.b64decode(face.vector, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput(f"face {face.id}: its vector is not base64") from None
        if size != 4 * manifest.model.dim:
            raise InvalidInput(
                f"face {face.id}: its vector has {size // 4} values, the model {manifest.model.dim}"
            )
    return manifest, identities, faces


async def import_archive(
    services: Services, tenant: str, collection: str, data: bytes, secret: str | None
) -> ImportResult:
    own = await archive_secret(services, tenant)
    manifest, identities, faces = read_archive(data, [own, *([secret] if secret else [])])
    model = await gallery_model(services, tenant, collection)
    differences = model.differences(manifest.model)
    if differences:
        raise InvalidInput(
            "the archive's vectors are from another model than this gallery's "
            f"({model.pack} {model.model} {model.version}): "
            + "; ".join(differences)
            + "; such an archive can only be imported through a migration to this model"
        )
    if await services.identities.all_ids(tenant, collection):
        raise Conflict(
            f"gallery {collection!r} has identities already; import into a new or empty gallery"
        )
    for identity in identities:
        await services.identities.claim_name(
            tenant, collection, identity.name, identity.id, allow_duplicate=True
        )
    record_hashes = [
        IdentityRecord(id=i.id, name=i.name, metadata=i.metadata, created_at=i.created_at).to_hash()
        for i in identities
    ]
    async with services.redis.pipeline(transaction=True) as pipe:
        pipe.sadd(collections_key(tenant), collection)
        for identity, fields in zip(identities, record_hashes, strict=True):
            pipe.hset(identity_key(tenant, collection, identity.id), mapping=fields)
            pipe.zadd(identities_key(tenant, collection), {identity.id: 0})
        await pipe.execute()
    answer = await call_indexer(
        services,
        IndexCallOp.IMPORT_FACES,
        tenant,
        collection,
        model=model.model,
        dim=model.dim,
        faces=[face.model_dump(exclude={"type"}) for face in faces],
    )
    return ImportResult(
        collection=collection,
        model=model,
        identities=len(identities),
        faces=int(answer["imported"]),
    )

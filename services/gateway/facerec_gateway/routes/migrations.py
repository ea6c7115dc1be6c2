"""A gallery's model migration: start one, follow it, check it, cut over, roll back, and
finish it by dropping the old index (``facerec_common.migrations`` says what each step
does). Every step needs the admin scope: it changes what every search of the gallery
answers with."""

from typing import Any

from facerec_common.errors import InvalidInput, MigrationConflict, NotFound
from facerec_common.messages import IndexCallOp
from facerec_common.migrations import Migration, MigrationCheck
from facerec_common.names import migration_key
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from facerec_gateway.audit import Audit, AuditAction, AuditTrail, Detail
from facerec_gateway.auth import AdminKey
from facerec_gateway.deps import CollectionPath, Services, ServicesDep
from facerec_gateway.fields import RequestBody
from facerec_gateway.indexer_calls import call_indexer
from facerec_gateway.keys import ApiKey
from facerec_gateway.models import current_model, loaded_packs
from facerec_gateway.problems import CONFLICT

router = APIRouter(prefix="/v1/collections", tags=["migrations"])


class MigrationRequest(RequestBody):
    model_pack: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The pack to embed the gallery with (one the embedders loaded: their "
        "model_pack or one of FACEREC_EMBEDDER_MIGRATION_PACKS)",
    )


async def _migration(services: Services, tenant: str, collection: str) -> Migration:
    await services.identities.require_collection(tenant, collection)
    fields = await services.redis.hgetall(migration_key(tenant, collection))
    if not fields:
        raise NotFound(f"gallery {collection!r} has no model migration")
    return Migration.from_hash(fields)


def _detail(migration: Migration) -> Detail:
    return {
        "migration_id": migration.id,
        "from": migration.source.pack,
        "to": migration.target.pack,
        "faces": migration.faces,
    }


@router.post(
    "/{collection}/migration", status_code=202, response_model=Migration, responses=CONFLICT
)
async def start_migration(
    collection: CollectionPath,
    body: MigrationRequest,
    key: AdminKey,
    services: ServicesDep,
    audit: Audit,
) -> JSONResponse:
    """Start embedding the gallery with another model pack from each face's kept crop, at
    batch priority, into a new index; the old one serves every search meanwhile, and new
    faces go to both. 409 while another migration of the gallery is not finished or rolled
    back, or where faces keep no crop (keep_crops off: migration is not offered)."""
    tenant = key.tenant
    await services.identities.require_collection(tenant, collection)
    gallery = await services.identities.collection(tenant, collection)
    if not gallery["keep_crops"]:
        raise MigrationConflict(
            f"gallery {collection!r} keeps no face crops (keep_crops is off), so its faces "
            "cannot be embedded by another model: migration is not offered"
        )
    packs = await loaded_packs(services)
    target = packs.get(body.model_pack)
    if target is None:
        raise InvalidInput(
            f"model pack {body.model_pack!r} is not loaded by the embedders (loaded: "
            f"{', '.join(sorted(packs)) or 'none yet'}); list it in "
            "FACEREC_EMBEDDER_MIGRATION_PACKS"
        )
    source_pack = gallery["model_pack"] or (await current_model(services)).pack
    source = packs.get(source_pack)
    if source is None:
        raise MigrationConflict(f"the gallery's model pack {source_pack!r} is not loaded")
    if source.model == target.model:
        raise InvalidInput(f"gallery {collection!r} is embedded with {source_pack} already")
    result = await call_indexer(
        services, IndexCallOp.MIGRATION_START, tenant, collection, packs=[source, target]
    )
    migration = Migration.model_validate(result)
    detail = _detail(migration)
    await audit.record(AuditAction.MIGRATION_STARTED, detail=detail, collection=collection)
    return JSONResponse(
        migration.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/v1/collections/{collection}/migration"},
    )


@router.get("/{collection}/migration", response_model=Migration)
async def get_migration(
    collection: CollectionPath, key: AdminKey, services: ServicesDep
) -> Migration:
    """The gallery's migration, running or the last one: state, faces carried so far, the
    last check."""
    return await _migration(services, key.tenant, collection)


@router.post("/{collection}/migration/check", response_model=MigrationCheck, responses=CONFLICT)
async def check_migration(collection: CollectionPath, key: AdminKey, services: ServicesDep) -> Any:
    """Before cutover: which faces the new index lacks (sent again to be embedded), and
    whether each enrolled face finds its own identity in the new index at the new model's
    threshold, with the old index's share beside it."""
    await _migration(services, key.tenant, collection)
    return await call_indexer(services, IndexCallOp.MIGRATION_CHECK, key.tenant, collection)


async def _step(
    services: Services,
    key: ApiKey,
    collection: str,
    op: IndexCallOp,
    audit: tuple[AuditTrail, AuditAction],
) -> Migration:
    """Run one step in the indexer and record it in the audit trail."""
    await _migration(services, key.tenant, collection)
    migration = Migration.model_validate(await call_indexer(services, op, key.tenant, collection))
    trail, action = audit
    await trail.record(action, detail=_detail(migration), collection=collection)
    return migration


@router.post("/{collection}/migration/cutover", response_model=Migration, responses=CONFLICT)
async def cut_over(
    collection: CollectionPath, key: AdminKey, services: ServicesDep, audit: Audit
) -> Migration:
    """Serve the gallery from the new index, in one step: identity ids, names, metadata
    and people are kept; the new model's threshold and calibration apply (a threshold set
    on the gallery for the old model is put aside, and given back by a rollback). The old
    index is kept, and written to, until the migration is finished. 409 unless ready."""
    step = (audit, AuditAction.MIGRATION_CUT_OVER)
    return await _step(services, key, collection, IndexCallOp.MIGRATION_CUTOVER, step)


@router.post("/{collection}/migration/rollback", response_model=Migration, responses=CONFLICT)
async def roll_back(
    collection: CollectionPath, key: AdminKey, services: ServicesDep, audit: Audit
) -> Migration:
    """Serve the gallery from the old index again and drop the new one: possible until
    the migration is finished."""
    step = (audit, AuditAction.MIGRATION_ROLLED_BACK)
    return await _step(services, key, collection, IndexCallOp.MIGRATION_ROLLBACK, step)


@router.post("/{collection}/migration/finish", response_model=Migration, responses=CONFLICT)
async def finish(
    collection: CollectionPath, key: AdminKey, services: ServicesDep, audit: Audit
) -> Migration:
    """After cutover: drop the old index (its vectors and its copies of the crops). There
    is no rollback after this."""
    step = (audit, AuditAction.MIGRATION_FINISHED)
    return await _step(services, key, collection, IndexCallOp.MIGRATION_FINISH, step)

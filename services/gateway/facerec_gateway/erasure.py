"""Erasure across every store: identity records and batches in Redis, face vectors in the
index, dead letters, keys. Each function marks first, so the indexer refuses faces of an
enrolment racing the delete, then erases the vectors and confirms by counting again, then
drops the records; the answer says what was erased and what remains (which must be 0)."""

from typing import Any

from facerec_common.deadletters import AsyncDeadLetters
from facerec_common.messages import IndexCallOp
from facerec_common.names import archive_secret_key

from facerec_gateway.deps import Services
from facerec_gateway.indexer_calls import call_indexer


async def erase_identity(
    services: Services, tenant: str, gallery: str, identity_id: str
) -> dict[str, Any]:
    await services.identities.mark_deleting(tenant, gallery, identity_id)
    erased = await call_indexer(services, IndexCallOp.DELETE_IDENTITY, tenant, gallery, identity_id)
    await services.identities.remove(tenant, gallery, identity_id)
    return {
        "id": identity_id,
        "deleted_faces": erased["deleted"],
        "deleted_crops": erased["deleted_crops"],
        "remaining_faces": erased["remaining"],
    }


async def erase_gallery(services: Services, tenant: str, gallery: str) -> dict[str, Any]:
    ids = await services.identities.mark_collection_deleting(tenant, gallery)
    erased = await call_indexer(services, IndexCallOp.DELETE_COLLECTION, tenant, gallery)
    await services.identities.remove_collection(tenant, gallery, ids)
    batches = await services.batches.erase_collection(tenant, gallery)
    return {
        "collection": gallery,
        "deleted_identities": len(ids),
        "deleted_batches": batches,
        "deleted_faces": erased["deleted"],
        "deleted_crops": erased["deleted_crops"],
        "remaining_faces": erased["remaining"],
    }


async def erase_tenant(services: Services, tenant: str) -> dict[str, Any]:
    """Every gallery, identity and face vector, the webhook and archive secrets, the dead
    letters, then every key (last: until then the caller's key still works for a retry)."""
    galleries = [c["name"] for c in await services.identities.collections(tenant)]
    marked = {g: await services.identities.mark_collection_deleting(tenant, g) for g in galleries}
    erased = await call_indexer(services, IndexCallOp.DELETE_TENANT, tenant)
    for gallery, ids in marked.items():
        await services.identities.remove_collection(tenant, gallery, ids)
        await services.batches.erase_collection(tenant, gallery)
    await services.webhooks.erase(tenant)
    await services.redis.delete(archive_secret_key(tenant))
    # Dead letters hold the images and crops of their jobs: biometric data too.
    dead_letters = await AsyncDeadLetters(services.redis).erase(tenant)
    revoked = await services.keys.revoke_all(tenant)
    return {
        "tenant": tenant,
        "deleted_collections": len(galleries),
        "deleted_identities": sum(len(ids) for ids in marked.values()),
        "deleted_faces": erased["deleted"],
        "deleted_crops": erased["deleted_crops"],
        "remaining_faces": erased["remaining"],
        "deleted_dead_letters": dead_letters,
        "revoked_keys": revoked,
    }

"""Which model embeds what, as the gateway learns it: the gateway runs no model, so it reads
what the embedders record in Redis (the deployment's tag, every pack they loaded) and the
pack a gallery was migrated to."""

from facerec_common.embeddings import EmbeddingModel
from facerec_common.errors import IndexUnavailable
from facerec_common.identities import text
from facerec_common.migrations import EMBEDDER_PACKS_KEY, PACK, PackInfo
from facerec_common.names import EMBEDDER_MODEL_KEY, collection_settings_key

from facerec_gateway.deps import Services


async def current_model(services: Services) -> EmbeddingModel:
    """The tag of the model the embed workers run by default, as they record it."""
    raw = await services.redis.get(EMBEDDER_MODEL_KEY)
    if raw is None:
        raise IndexUnavailable(
            "no embed worker has recorded its model yet; start one (or send it any job)"
        )
    return EmbeddingModel.model_validate_json(raw)


async def loaded_packs(services: Services) -> dict[str, PackInfo]:
    """The packs the embedders loaded, as they record them."""
    raw = await services.redis.hgetall(EMBEDDER_PACKS_KEY)
    return {text(name): PackInfo.model_validate_json(value) for name, value in raw.items()}


async def gallery_model(services: Services, tenant: str, collection: str) -> EmbeddingModel:
    """The tag of the model a gallery's faces are embedded with: the pack a migration cut
    it over to, else the deployment's."""
    pack = await services.redis.hget(collection_settings_key(tenant, collection), PACK)
    info = (await loaded_packs(services)).get(text(pack)) if pack else None
    if info is None:
        return await current_model(services)
    return EmbeddingModel(pack=info.pack, model=info.model, version=info.version, dim=info.dim)

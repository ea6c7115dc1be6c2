"""Which model a job embeds with: a gallery's own pack, the deployment's where it has
none, and while the gallery migrates, the other pack too (``facerec_common.migrations``).

Every pack is loaded at start (``model_pack`` and ``migration_packs``), so a migration
never waits on a model load and a missing or altered model file stops the worker at once.
"""

import cv2
import numpy as np
import numpy.typing as npt
import redis
from facerec_common.codec import CROP_SIZE, pack_vectors, unpack_crops
from facerec_common.errors import InvalidInput
from facerec_common.kinds import route
from facerec_common.messages import JobKind, PipelineMessage
from facerec_common.migrations import (
    ACTIVE_STATES,
    GalleryModels,
    MigrationState,
    PackInfo,
    gallery_models,
    update_migration,
)
from facerec_common.worker import StageOutcome

from facerec_embedder.stage import EmbedStage


class GalleryEmbedding:
    def __init__(self, stages: dict[str, EmbedStage], default_pack: str) -> None:
        self._stages = stages
        self._default = default_pack

    def packs(self) -> dict[str, PackInfo]:
        """What each loaded pack embeds, as the gateway reads it before a migration."""
        infos = {}
        for pack, stage in self._stages.items():
            threshold, calibration = stage.scoring.message_fields()
            tag = stage.tag
            infos[pack] = PackInfo(
                pack=pack,
                model=tag.model,
                version=tag.version,
                dim=tag.dim,
                threshold=threshold,
                calibration=calibration,
            )
        return infos

    def stage(self, pack: str | None) -> EmbedStage:
        stage = self._stages.get(pack or self._default)
        if stage is None:
            raise InvalidInput(
                f"this embedder has not loaded model pack {pack!r} "
                f"(loaded: {', '.join(sorted(self._stages))}); "
                "list it in FACEREC_EMBEDDER_MIGRATION_PACKS"
            )
        return stage

    def run(self, client: redis.Redis, msg: PipelineMessage) -> StageOutcome:
        if msg.kind is JobKind.MIGRATE:
            return StageOutcome(forward=self._migrated(client, msg))
        collection = msg.params.collection
        models = gallery_models(client, msg.tenant, collection) if collection else GalleryModels()
        stage = self.stage(models.pack)
        # New faces of a migrating gallery go to both indexes (enrolments, batch faces).
        shadow = models.shadow_pack if route(msg.kind).keeps_crops else None
        crops = msg.crops
        outcome = stage.run(msg)
        if shadow and outcome.forward is not None:
            second = self.stage(shadow)
            forward = outcome.forward
            forward.shadow_vectors = pack_vectors(second.embedder.embed(unpack_crops(crops)))
            forward.shadow_model = second.embedder.name
            forward.shadow_dim = second.embedder.dim
        return outcome

    def _migrated(self, client: redis.Redis, msg: PipelineMessage) -> PipelineMessage:
        """A migration's kept crops embedded with its target pack; the crops stay behind
        (the indexer reads each point's payload from the old index)."""
        collection, migration = msg.params.collection, msg.params.migration_id
        if not collection or not migration:
            raise InvalidInput("a migration message names its gallery and migration")
        try:
            stage = self.stage(msg.params.model_pack)
        except InvalidInput as exc:
            # The migration cannot go on anywhere: say why on it, not only on this job.
            update_migration(
                client,
                msg.tenant,
                collection,
                migration,
                expect=ACTIVE_STATES,
                state=MigrationState.FAILED,
                error=exc.detail,
            )
            raise
        vectors = stage.embedder.embed(decoded_crops(msg.kept_crops))
        msg.kept_crops = []
        msg.vectors = pack_vectors(vectors)
        msg.model = stage.embedder.name
        msg.dim = stage.embedder.dim
        msg.default_threshold, msg.calibration = stage.scoring.message_fields()
        return msg


def decoded_crops(kept: list[bytes]) -> npt.NDArray[np.uint8]:
    """Kept crops (lossless WebP) back to the 112x112 BGR pixels the first model embedded."""
    crops = []
    for data in kept:
        crop = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if crop is None or crop.shape != (CROP_SIZE, CROP_SIZE, 3):
            raise InvalidInput("a kept crop is not a 112x112 image")
        crops.append(crop)
    return np.stack(crops) if crops else np.empty((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)

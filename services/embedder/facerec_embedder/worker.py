"""The embedder worker: consumes the ``embed`` queue, sends vectors on to ``index``."""

import logging

import redis
from facerec_common.embeddings import EmbeddingModel
from facerec_common.jobs import JobWriter
from facerec_common.kinds import EMBED
from facerec_common.logs import configure_logging
from facerec_common.messages import PipelineMessage
from facerec_common.migrations import EMBEDDER_PACKS_KEY
from facerec_common.names import EMBEDDER_MODEL_KEY, Queue
from facerec_common.scores import Calibration, Scoring
from facerec_common.worker import StageOutcome, run_worker, stage_app
from facerec_runtime.loader import load_model
from facerec_runtime.packs import KNOWN_PACKS, file_sha256, verified_path

from facerec_embedder.galleries import GalleryEmbedding
from facerec_embedder.model import Batching, FaceEmbedder
from facerec_embedder.settings import EmbedderSettings
from facerec_embedder.stage import EmbedStage

log = logging.getLogger(__name__)


def load_stage(settings: EmbedderSettings) -> EmbedStage:
    """The embed stage of ``settings.model_pack`` from ``settings.models_dir``."""
    pack = KNOWN_PACKS[settings.model_pack]
    batching = (
        Batching(settings.batch_wait_ms / 1000, settings.task_time_limit_s)
        if settings.concurrency > 1
        else None
    )
    embedder = FaceEmbedder(
        load_model(pack, pack.recognizer, "recognition", settings, max_batch=settings.batch_size),
        name=pack.recognizer_name,
        batch_size=settings.batch_size,
        batching=batching,
    )
    embedder.warm_up()
    log.info("embedder ready: %s (%d-d) on %s", embedder.name, embedder.dim, embedder.providers)
    threshold = pack.default_threshold if settings.threshold is None else settings.threshold
    calibration = Calibration(*pack.calibration) if pack.calibration else None
    path = verified_path(pack, pack.recognizer, settings.models_dir)
    tag = EmbeddingModel(
        pack=pack.name,
        model=embedder.name,
        version=file_sha256(path)[:16],
        dim=embedder.dim,
    )
    return EmbedStage(embedder, Scoring(threshold, calibration), tag)


def load_packs(settings: EmbedderSettings) -> GalleryEmbedding:
    """The deployment's pack and every migration pack, each with its own threshold (the
    threshold setting is the deployment pack's: another model's scale is its own)."""
    stages = {settings.model_pack: load_stage(settings)}
    for pack, folder in settings.migration_packs.items():
        if pack not in KNOWN_PACKS:
            raise ValueError(f"migration pack {pack!r} is not a known pack")
        if pack not in stages:
            other = settings.model_copy(
                update={"model_pack": pack, "models_dir": folder, "threshold": None}
            )
            stages[pack] = load_stage(other)
    return GalleryEmbedding(stages, settings.model_pack)


def main() -> None:
    settings = EmbedderSettings()
    configure_logging("embedder", settings.log_level, settings.log_format)
    packs = load_packs(settings)
    tag = packs.stage(None).tag.model_dump_json()

    infos = {pack: info.model_dump_json() for pack, info in packs.packs().items()}

    def record(client: redis.Redis) -> None:
        # Which models this deployment embeds with, for the gateway, which has no model
        # to ask (archives are tagged with them, migrations check their target); one
        # round trip, written again with every task, so a Redis that lost them has them
        # back with the next job.
        with client.pipeline(transaction=False) as pipe:
            pipe.set(EMBEDDER_MODEL_KEY, tag)
            pipe.hset(EMBEDDER_PACKS_KEY, mapping={k: v for k, v in infos.items()})
            pipe.execute()

    def run(msg: PipelineMessage, _jobs: JobWriter) -> StageOutcome:
        record(guard.client)
        return packs.run(guard.client, msg)

    app, guard = stage_app("facerec-embedder", settings, EMBED, run)
    try:
        record(guard.client)
    except redis.RedisError:  # Redis away at start: the first task records them
        log.warning("could not record the model tags in Redis; the first task will")
    run_worker(app, Queue.EMBED, settings, concurrency=settings.concurrency)

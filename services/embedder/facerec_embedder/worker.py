"""The embedder worker: consumes the ``embed`` queue, sends vectors on to ``index``."""

import logging

from facerec_common.embeddings import EmbeddingModel
from facerec_common.jobs import JobWriter
from facerec_common.kinds import EMBED
from facerec_common.logs import configure_logging
from facerec_common.messages import PipelineMessage
from facerec_common.names import EMBEDDER_MODEL_KEY, Queue
from facerec_common.scores import Calibration, Scoring
from facerec_common.worker import StageOutcome, run_worker, stage_app
from facerec_runtime.loader import load_model
from facerec_runtime.packs import KNOWN_PACKS, file_sha256, verified_path

from facerec_embedder.model import FaceEmbedder
from facerec_embedder.settings import EmbedderSettings
from facerec_embedder.stage import EmbedStage

log = logging.getLogger(__name__)


def load_stage(settings: EmbedderSettings) -> EmbedStage:
    pack = KNOWN_PACKS[settings.model_pack]
    embedder = FaceEmbedder(
        load_model(pack, pack.recognizer, "recognition", settings, max_batch=settings.batch_size),
        name=pack.recognizer_name,
        batch_size=settings.batch_size,
    )
    embedder.warm_up()
    log.info("embedder ready: %s (%d-d) on %s", embedder.name, embedder.dim, embedder.providers)
    threshold = settings.threshold if settings.threshold is not None else pack.default_threshold
    calibration = Calibration(*pack.calibration) if pack.calibration else None
    path = verified_path(pack, pack.recognizer, settings.models_dir)
    tag = EmbeddingModel(
        pack=pack.name,
        model=embedder.name,
        version=file_sha256(path)[:16],
        dim=embedder.dim,
    )
    return EmbedStage(embedder, Scoring(threshold, calibration), tag)


def main() -> None:
    settings = EmbedderSettings()
    configure_logging("embedder", settings.log_level, settings.log_format)
    stage = load_stage(settings)

    tag = stage.tag.model_dump_json()

    def run(msg: PipelineMessage, _jobs: JobWriter) -> StageOutcome:
        # Which model this deployment embeds with, for the gateway, which has no model to
        # ask (gallery archives are tagged with it); written again with every task, so a
        # Redis that lost it has it back with the next job.
        guard.client.set(EMBEDDER_MODEL_KEY, tag)
        return stage.run(msg)

    app, guard = stage_app("facerec-embedder", settings, EMBED, run)
    try:
        guard.client.set(EMBEDDER_MODEL_KEY, tag)
    except Exception:  # Redis away at start: the first task records it
        log.warning("could not record the model tag in Redis; the first task will")
    run_worker(app, Queue.EMBED, settings)

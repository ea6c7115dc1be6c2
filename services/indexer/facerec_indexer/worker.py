"""The indexer worker: consumes the ``index`` queue and owns the face index.

With the embedded engine this process is the only one that opens the index files, which
is why every read and write of vectors goes through this queue.
"""

import logging
from typing import Any

from celery import Task as CeleryTask
from facerec_common.jobs import JobWriter
from facerec_common.kinds import INDEX
from facerec_common.logs import configure_logging
from facerec_common.messages import IndexCall, PipelineMessage
from facerec_common.migrations import gallery_models
from facerec_common.names import BATCH_PRIORITY, Queue, Task
from facerec_common.worker import (
    StageOutcome,
    guarded,
    redis_client,
    run_worker,
    stage_app,
    unreadable_message,
)
from pydantic import ValidationError
from qdrant_client import QdrantClient

from facerec_indexer.calls import IndexCalls
from facerec_indexer.clustering import ClusterParams
from facerec_indexer.index import FaceIndex
from facerec_indexer.index.edge import EdgeIndex
from facerec_indexer.index.server import CollectionLayout, ServerIndex
from facerec_indexer.index.serving import ServingIndex
from facerec_indexer.index.tiers import Tiering
from facerec_indexer.migration import Migrations
from facerec_indexer.people import People
from facerec_indexer.settings import IndexerSettings
from facerec_indexer.stage import IndexStage

log = logging.getLogger(__name__)


def open_index(settings: IndexerSettings) -> FaceIndex:
    if settings.qdrant_url:
        log.info("face index: Qdrant server at %s", settings.qdrant_url)
        client = QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
        layout = CollectionLayout(
            settings.qdrant_shard_number,
            settings.qdrant_replication_factor,
            settings.qdrant_write_consistency_factor,
        )
        return ServerIndex(client, layout)
    root = settings.data_dir / "qdrant"
    log.info("face index: embedded Qdrant Edge in %s", root)
    return EdgeIndex(
        root,
        Tiering(
            settings.index_seal_points, settings.index_merge_factor, settings.index_max_shard_points
        ),
    )


def main() -> None:
    settings = IndexerSettings()
    configure_logging("indexer", settings.log_level, settings.log_format)
    client = redis_client(settings)
    # Reads of a gallery see the faces of the model serving it (two indexes hold them
    # while it migrates).
    index = ServingIndex(
        open_index(settings),
        lambda tenant, collection: gallery_models(client, tenant, collection).model,
    )
    people = People(
        index,
        ClusterParams(
            min_faces=settings.cluster_min_faces, max_distance=settings.cluster_max_distance
        ),
    )

    def to_embedder(msg: PipelineMessage) -> None:
        # Migration work waits behind every interactive job, as batch images do.
        app.send_task(Task.EMBED, args=[msg.to_task()], priority=BATCH_PRIORITY)

    migrations = Migrations(index, client, to_embedder, settings.migration_share_size)
    stage = IndexStage(
        index, client, settings.faces_per_candidate, settings.max_top_k, people, migrations
    )
    calls = IndexCalls(index, people, migrations)

    def run(msg: PipelineMessage, _jobs: JobWriter) -> StageOutcome:
        return StageOutcome(result=stage.run(msg))

    app, guard = stage_app(
        "facerec-indexer",
        settings,
        INDEX,
        run,
        on_batch_done=lambda batch: stage.batch_done(batch.tenant, batch.collection),
    )
    jobs = JobWriter(client, settings.job_ttl_s)

    @app.task(name=Task.INDEX_CALL, bind=True)
    def index_call(task: CeleryTask, payload: dict[str, Any]) -> None:
        try:
            msg = IndexCall.model_validate(payload)
        except ValidationError as exc:
            unreadable_message(guard, task, payload, "admin", exc)
            return
        job = (msg.job_id, msg.tenant)
        fail = lambda problem, _keep: jobs.fail(msg.job_id, problem, 0)  # noqa: E731
        with guarded(guard, task, payload, job, "admin", fail) as go:
            if go:
                jobs.finish(msg.job_id, calls.answer(msg), 0)

    try:
        run_worker(app, Queue.INDEX, settings, probe=index.ping)
    finally:
        index.close()

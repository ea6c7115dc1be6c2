from pathlib import Path

from facerec_common.settings import ServiceSettings
from facerec_runtime.settings import RuntimeSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict


class EmbedderSettings(ServiceSettings, RuntimeSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEREC_EMBEDDER_", extra="ignore", populate_by_name=True
    )

    # Prometheus metrics at http://<host>:<port>/metrics (0: off).
    metrics_port: int = Field(9102, ge=0, le=65535)

    # Crops per inference call; all faces of an image go in one call up to this many.
    batch_size: int = Field(32, ge=1, le=1024)
    # Tasks run at once (Celery's threads pool above 1). Their crops go to the model
    # together, up to batch_size a call: cross-job batching (facerec_embedder.batching).
    # On a CPU too: while the model runs one batch, the next tasks' Redis and Celery work
    # runs beside it (bench/pipeline.py: 1.65-1.68x in-process with 4, 1.53 with 1).
    concurrency: int = Field(4, ge=1, le=256)
    # With concurrency above 1: how long the model, given a first task's crops, waits
    # for more before it runs (0: never; batches form from tasks that queued meanwhile).
    batch_wait_ms: float = Field(0.0, ge=0, le=1000)
    # Overrides the model pack's default match threshold (cosine similarity).
    threshold: float | None = Field(None, ge=-1, le=1)
    # Packs besides model_pack that galleries may migrate to (or have migrated to), each
    # with the folder of its files (null: the files come with the wheel, as buffalo_sc's):
    # '{"buffalo_sc_int8": "/models/buffalo_sc_int8"}'. Loaded at start; every embedder
    # of a deployment must load the same packs.
    migration_packs: dict[str, Path | None] = Field(default_factory=dict)

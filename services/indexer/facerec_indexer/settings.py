from pathlib import Path

from facerec_common.settings import ServiceSettings
from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from facerec_indexer.index.tiers import Tiering


class IndexerSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="FACEREC_INDEXER_", extra="ignore", populate_by_name=True
    )

    # Prometheus metrics at http://<host>:<port>/metrics (0: off).
    metrics_port: int = Field(9103, ge=0, le=65535)
    # An index write may wait for a child to copy a shard it builds (seconds at most).
    task_time_limit_s: float = Field(300.0, gt=0)

    # Embedded Qdrant Edge keeps its shards here when no Qdrant server is configured.
    data_dir: Path = Path("data")
    # Set this to use a Qdrant server (compose, Kubernetes) instead of the embedded engine.
    qdrant_url: str | None = Field(
        None, validation_alias=AliasChoices("FACEREC_INDEXER_QDRANT_URL", "QDRANT_URL")
    )
    qdrant_api_key: str | None = Field(
        None, validation_alias=AliasChoices("FACEREC_INDEXER_QDRANT_API_KEY", "QDRANT_API_KEY")
    )
    # How the collections the indexer creates on a Qdrant server are laid out (existing
    # collections keep theirs). One server: 1, 1, 1. The three-node chart: 3 shards, each on
    # 3 nodes, a write acknowledged by 2 of them (a majority, so one node may be drained).
    qdrant_shard_number: int = Field(1, ge=1)
    qdrant_replication_factor: int = Field(1, ge=1)
    qdrant_write_consistency_factor: int = Field(1, ge=1)
    # Nearest faces fetched per identity asked for, so that one identity with many faces
    # cannot push the others out of the top k.
    faces_per_candidate: int = Field(8, ge=1)
    max_top_k: int = Field(20, ge=1)
    # Embedded engine: faces written to the live shard (searched by brute force) before a
    # child process builds it an HNSW index; built shards below index_max_shard_points are
    # merged once there are index_merge_factor of them (bench/index_growth.py).
    index_seal_points: int = Field(Tiering.seal_points, ge=1)
    index_merge_factor: int = Field(Tiering.merge_factor, ge=2)
    index_max_shard_points: int = Field(Tiering.max_shard_points, ge=1)
    # Grouping unassigned faces into people: a face with at least cluster_min_faces others
    # within cluster_max_distance (cosine distance, 1 - similarity) founds or joins a person.
    # Chosen on faces-dev by bench/cluster.py (see the README).
    cluster_min_faces: int = Field(2, ge=1)
    cluster_max_distance: float = Field(0.6, gt=0, le=2)
    # Model migration: kept crops per message to the embed queue. Small: a request that
    # reaches an embedder busy with a share waits for that share (about 0.15 s for 8 crops
    # on one CPU thread, 0.6 s for 32); bench/migration.py measures both.
    migration_share_size: int = Field(8, ge=1, le=1024)

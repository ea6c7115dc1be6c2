"""Prometheus metrics of the workers, served over HTTP on each worker's metrics port.

Workers run Celery's solo pool (the embedder its threads pool when it batches across jobs):
one process per worker either way, so the default registry holds every sample and no
multiprocess directory is needed.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Model calls and searches take milliseconds; tasks up to seconds on a busy CPU.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

TASK_DURATION = Histogram(
    "facerec_task_duration_seconds",
    "Time a stage spent on one task",
    ["stage"],
    buckets=TASK_BUCKETS,
)
TASKS = Counter(
    "facerec_tasks",
    "Tasks a stage ran, by outcome (done, forwarded, failed, retried)",
    ["stage", "outcome"],
)
FACES_PER_IMAGE = Histogram(
    "facerec_faces_per_image",
    "Faces the detector found in one image",
    buckets=(0, 1, 2, 3, 5, 10, 20, 50, 100),
)
MODEL_INFERENCE = Histogram(
    "facerec_model_inference_seconds",
    "One model call (a whole batch for recognition)",
    ["model"],
    buckets=FAST_BUCKETS,
)
EMBED_BATCH_FACES = Histogram(
    "facerec_embed_batch_faces",
    "Embedder with cross-job batching: crops in one model call",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
EMBED_BATCH_TASKS = Histogram(
    "facerec_embed_batch_tasks",
    "Embedder with cross-job batching: tasks whose crops went into one model call",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
)
INDEX_SEARCH = Histogram(
    "facerec_index_search_seconds",
    "One search of the face index (all faces of an image)",
    buckets=FAST_BUCKETS,
)

INDEX_BUILD = Histogram(
    "facerec_index_build_seconds",
    "Embedded index: a child process building a shard, from its start to its swap",
    ["kind"],
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
INDEX_SWAP_PAUSE = Histogram(
    "facerec_index_swap_pause_seconds",
    "Embedded index: the indexer's pause to load a built shard and put it in place",
    buckets=FAST_BUCKETS,
)
INDEX_SHARDS = Gauge("facerec_index_shards", "Embedded index: shards in use", ["model"])


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - start)


def serve_metrics(port: int) -> None:
    """Serve /metrics on ``port`` in a daemon thread (0: don't)."""
    if port:
        start_http_server(port)

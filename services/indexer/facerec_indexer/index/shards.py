"""How every Qdrant Edge shard of the embedded index is configured, read and written.

Shared by the indexer process (live shards) and the build process (built shards), so a
shard built elsewhere is configured exactly like one created here.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from facerec_indexer.index.base import INDEXED_FIELDS, TENANT

# HNSW as Qdrant's defaults (m 16, ef_construct 100); vectors also kept as int8 in RAM.
# Building over int8 is ~3x faster than over float32 (30k faces: 5.8 s against 17.6 s on
# two cores); a search walks the graph with ef 256 and rescores an oversampled int8
# candidate list with the float vectors (on a merged shard of 200k faces recall@1 was
# 0.945 at ef 128, 0.99 at 256; bench/index_growth.py measures it at every size).
HNSW = qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1_000)
QUANTIZATION = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True)
# What a build (the only caller of optimize()) makes of a shard: one segment (as large as
# it gets: the indexer caps shards), so that a search walks one graph per shard; an HNSW
# graph however few its points; and no deleted point left in its files (Qdrant only
# marks a deleted point until its segment is written again).
OPTIMIZERS = qe.EdgeOptimizersConfig(
    default_segment_number=1,
    max_segment_size=1 << 30,
    indexing_threshold=1_000,
    deleted_threshold=0.0,
    vacuum_min_vector_number=0,
)
SEARCH_PARAMS = qe.SearchParams(
    hnsw_ef=256, quantization=qe.QuantizationSearchParams(rescore=True, oversampling=2.0)
)
# Edge's own marker file: a folder holding it is one shard.
SHARD_MARKER = "edge_config.json"
PAGE = 1000


def shard_config(dim: int) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(
            size=dim, distance=qe.Distance.Cosine, quantization_config=QUANTIZATION
        ),
        hnsw_config=HNSW,
        optimizers=OPTIMIZERS,
        # One segment per built shard: a search needs no pool of threads to spread over
        # segments, and handing it to one cost more than it saved (0.28 against 0.35 ms
        # a shard of 5k faces).
        max_search_threads=1,
    )


def create_shard(path: Path, dim: int) -> qe.EdgeShard:
    shard = qe.EdgeShard.create(str(path), shard_config(dim))
    for field in INDEXED_FIELDS:
        params = qe.KeywordIndexParams(is_tenant=field == TENANT)
        shard.update(qe.UpdateOperation.create_field_index(field, params))
    return shard


def count(shard: qe.EdgeShard, flt: qe.Filter | None = None) -> int:
    return int(shard.count(qe.CountRequest(exact=True, filter=flt)))


def pages(
    shard: qe.EdgeShard,
    flt: qe.Filter | None = None,
    with_payload: bool | list[str] = True,
    with_vector: bool = False,
) -> Iterator[list[qe.Record]]:
    """Every point of ``shard`` (in ``flt``), a page at a time."""
    offset = None
    while True:
        page, offset = shard.scroll(
            qe.ScrollRequest(
                offset=offset,
                limit=PAGE,
                filter=flt,
                with_payload=with_payload,
                with_vector=with_vector,
            )
        )
        yield page
        if offset is None:
            return


def stored_vector(stored: Any) -> list[float]:
    """A point's vector as Edge returns it: the default (unnamed) vector as a list, or a
    dict keyed by ""."""
    values = stored.get("", next(iter(stored.values()))) if isinstance(stored, dict) else stored
    return list(values)

"""The embedded index growing to a million faces, a job (two faces) at a time.

    .venv/bin/python bench/index_growth.py [--faces 1000000] [--every 100000] [--rate 1000]

Measures ``EdgeIndex`` as the indexer opens it (the settings' defaults: live shard sealed
at 10,000 faces, shards built by a child process, merged four at a time) while faces
arrive at ``--rate`` faces/s, one upsert of two faces per job, with a search of the
gallery every ``--search-every`` jobs. Every ``--every`` faces it prints, over that
stretch: search p50/p95/worst, upsert p99/worst, recall@1 of 200 probes against an exact
search (numpy, over every stored vector), the shards and builds at that moment, and how
long the index takes to open after a restart (a copy of its files opened by a new
process). Then the same for the previous release's layout (one shard, ``optimize()``
inline every 2,000 updates) up to ``--baseline-faces``, and the ratio of worst upserts.

Faces are synthetic: unit vectors around one centre per identity (four faces each), with
the spread of ArcFace embeddings (two faces of one person ~0.65 cosine, of two people ~0).
Probes are fresh faces of stored identities.
"""

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import qdrant_edge as qe
from facerec_indexer.index.base import FacePoint, Scope
from facerec_indexer.index.edge import EdgeIndex
from facerec_indexer.index.tiers import MANIFEST, Tiering
from facerec_indexer.settings import IndexerSettings

DIM = 512
MODEL = "w600k_mbf"
SCOPE = Scope("bench", "gallery")
FACES_PER_IDENTITY = 4
# Per-dimension noise: |noise| ~ 0.73, so two faces of one identity score ~1/(1+0.73^2).
SPREAD = 0.73 / np.sqrt(DIM)
PROBES = 200


def unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    normed: npt.NDArray[np.float32] = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return normed


@dataclass
class Faces:
    """Every face stored so far (for the exact search), and new ones on demand."""

    total: int
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))
    stored: int = 0

    def __post_init__(self) -> None:
        identities = self.total // FACES_PER_IDENTITY + 1
        self.centres = unit(self.rng.standard_normal((identities, DIM), dtype=np.float32))
        self.vectors = np.empty((self.total, DIM), dtype=np.float32)

    def face_of(self, identity: int) -> npt.NDArray[np.float32]:
        noise = self.rng.standard_normal(DIM, dtype=np.float32) * SPREAD
        return unit(self.centres[identity] + noise)

    def next_job(self, size: int = 2) -> list[FacePoint]:
        points = []
        for _ in range(size):
            number = self.stored
            vector = self.face_of(number // FACES_PER_IDENTITY)
            self.vectors[number] = vector
            self.stored += 1
            points.append(
                FacePoint(
                    id=str(uuid.UUID(int=number + 1)),
                    vector=vector,
                    tenant=SCOPE.tenant,
                    collection=str(SCOPE.collection),
                    identity_id=f"person-{number // FACES_PER_IDENTITY}",
                    extra={},
                )
            )
        return points

    def probe(self) -> npt.NDArray[np.float32]:
        stored_identities = max(1, self.stored // FACES_PER_IDENTITY)
        return self.face_of(int(self.rng.integers(stored_identities)))

    def exact_top1(self, probes: npt.NDArray[np.float32]) -> list[str]:
        scores = probes @ self.vectors[: self.stored].T
        return [str(uuid.UUID(int=int(i) + 1)) for i in np.argmax(scores, axis=1)]


@dataclass
class Stretch:
    upserts: list[float] = field(default_factory=list)
    searches: list[float] = field(default_factory=list)

    def row(self) -> str:
        up, se = np.array(self.upserts) * 1000, np.array(self.searches) * 1000
        return (
            f"search p50 {np.percentile(se, 50):6.2f} ms  p95 {np.percentile(se, 95):6.2f}  "
            f"worst {se.max():7.1f} | upsert p99 {np.percentile(up, 99):6.2f} ms  "
            f"worst {up.max():7.1f}"
        )


def recall_at_1(search: Callable[[npt.NDArray[np.float32]], list[str]], faces: Faces) -> float:
    probes = np.stack([faces.probe() for _ in range(PROBES)])
    found = search(probes)
    return float(np.mean([a == b for a, b in zip(found, faces.exact_top1(probes), strict=True)]))


def reopen_seconds(index: EdgeIndex, root: Path) -> float:
    """Open a copy of the index's files in a new process, as a restarted indexer would."""
    index.flush()
    with tempfile.TemporaryDirectory(dir=root.parent) as copy_name:
        copy = Path(copy_name) / "qdrant"
        for folder in root.iterdir():
            manifest = json.loads((folder / MANIFEST).read_text())
            (copy / folder.name).mkdir(parents=True)
            shutil.copy2(folder / MANIFEST, copy / folder.name / MANIFEST)
            for entry in manifest["shards"]:
                shutil.copytree(folder / entry["name"], copy / folder.name / entry["name"])
        code = (
            "import sys, time\n"
            "from pathlib import Path\n"
            "from facerec_indexer.index.edge import EdgeIndex\n"
            "start = time.perf_counter()\n"
            "index = EdgeIndex(Path(sys.argv[1]))\n"
            "print(time.perf_counter() - start)\n"
            "index.close()\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(copy)], capture_output=True, text=True, check=True
        )
        return float(done.stdout.strip().splitlines()[-1])


class OneShardInline:
    """The previous release's layout: one shard, ``optimize()`` inline every 2,000 updates."""

    def __init__(self, path: Path) -> None:
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine))
        self.shard = qe.EdgeShard.create(str(path), config)
        self.updates = 0

    def upsert(self, points: list[FacePoint]) -> None:
        self.shard.update(
            qe.UpdateOperation.upsert_points(
                [qe.Point(p.id, p.vector.tolist(), p.payload()) for p in points]
            )
        )
        self.updates += len(points)
        if self.updates >= 2000:
            self.shard.optimize()
            self.updates = 0

    def search(self, probes: npt.NDArray[np.float32]) -> list[str]:
        return [
            str(
                self.shard.query(qe.QueryRequest(query=qe.Query.Nearest(p.tolist()), limit=1))[0].id
            )
            for p in probes
        ]


def grow(
    total: int,
    every: int,
    rate: float,
    search_every: int,
    upsert: Callable[[list[FacePoint]], None],
    search: Callable[[npt.NDArray[np.float32]], list[str]],
    at_checkpoint: Callable[[int, Stretch, Faces], str],
) -> Stretch:
    faces = Faces(total)
    overall, stretch = Stretch(), Stretch()
    start = time.perf_counter()
    jobs = 0
    while faces.stored < total:
        points = faces.next_job()
        began = time.perf_counter()
        upsert(points)
        stretch.upserts.append(time.perf_counter() - began)
        jobs += 1
        if jobs % search_every == 0:
            probe = faces.probe()[None, :]
            began = time.perf_counter()
            search(probe)
            stretch.searches.append(time.perf_counter() - began)
        if faces.stored % every == 0:
            paused = time.perf_counter()
            facts = at_checkpoint(faces.stored, stretch, faces)
            print(f"{faces.stored:>9,} faces | {stretch.row()} | {facts}", flush=True)
            overall.upserts += stretch.upserts
            overall.searches += stretch.searches
            stretch = Stretch()
            start += time.perf_counter() - paused  # checkpoints are not arrival time
        ahead = start + faces.stored / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
    return overall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="faces/s arriving")
    parser.add_argument("--search-every", type=int, default=20, help="jobs between searches")
    parser.add_argument("--baseline-faces", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--log", type=Path, help="write the index's own log lines here")
    args = parser.parse_args()
    if args.log:
        logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(message)s")
    settings = IndexerSettings()
    # As the indexer searches for one identity (recognise with top_k 1).
    limit = settings.faces_per_candidate
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    print(
        f"EdgeIndex as the indexer opens it: seal at {settings.index_seal_points} faces, "
        f"merge factor {settings.index_merge_factor}, shards capped at "
        f"{settings.index_max_shard_points}; {args.rate:.0f} faces/s arriving, "
        f"2 faces a job, a search (limit {limit}) every {args.search_every} jobs; recall@1 "
        f"over {PROBES} probes"
    )
    scratch = Path(tempfile.mkdtemp(dir=args.data_dir, prefix="index-growth-"))
    try:
        root = scratch / "qdrant"
        index = EdgeIndex(
            root,
            Tiering(
                settings.index_seal_points,
                settings.index_merge_factor,
                settings.index_max_shard_points,
            ),
        )

        def search(probes: npt.NDArray[np.float32]) -> list[str]:
            found = index.search(MODEL, probes, SCOPE, limit)
            return [hits[0].point_id if hits else "" for hits in found]

        rows: dict[int, tuple[Stretch, float, float]] = {}

        def checkpoint(stored: int, stretch: Stretch, faces: Faces) -> str:
            recall = recall_at_1(search, faces)
            reopen = reopen_seconds(index, root)
            rows[stored] = (stretch, recall, reopen)
            facts = index.ping()
            return (
                f"recall@1 {recall:.3f} | shards {facts.get('index_shards', 0)}, "
                f"builds {facts.get('index_builds', 0)} | reopen {reopen:.2f} s"
            )

        tiered = grow(
            args.faces,
            args.every,
            args.rate,
            args.search_every,
            lambda points: index.upsert(MODEL, DIM, points),
            search,
            checkpoint,
        )
        stored = index.count(SCOPE)
        index.close()

        baseline: Stretch | None = None
        if args.baseline_faces:
            print("previous layout: one shard, optimize() inline every 2,000 updates")
            old = OneShardInline(scratch / "one-shard")

            def old_checkpoint(stored: int, stretch: Stretch, faces: Faces) -> str:
                return f"recall@1 {recall_at_1(old.search, faces):.3f}"

            baseline = grow(
                args.baseline_faces,
                min(args.every, args.baseline_faces),
                args.rate,
                args.search_every,
                old.upsert,
                old.search,
                old_checkpoint,
            )
            old.shard.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    last = max(rows)
    print("=== summary: bench/index_growth.py ===")
    print(f"date (UTC)            {started:%Y-%m-%d %H:%M:%S}")
    print(
        f"machine               {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (at start "
        f"{' '.join(f'{x:.2f}' for x in load_start)})"
    )
    print(f"faces                 {last:,} at {args.rate:.0f}/s, 2 a job; {stored:,} in the index")
    stretch, recall, reopen = rows[last]
    print(f"at {last:,}: search    {stretch.row()}")
    print(f"at {last:,}: recall@1  {recall:.3f}; reopen {reopen:.2f} s")
    up = np.array(tiered.upserts) * 1000
    se = np.array(tiered.searches) * 1000
    print(
        f"whole run             upsert worst {up.max():.1f} ms, p99 {np.percentile(up, 99):.2f}; "
        f"search worst {se.max():.1f} ms, p95 {np.percentile(se, 95):.2f}; "
        f"upserts over 100 ms: {int((up > 100).sum())}, "
        f"searches over 100 ms: {int((se > 100).sum())}"
    )
    if baseline is not None:
        old_up = np.array(baseline.upserts) * 1000
        new_up = np.array(tiered.upserts[: len(baseline.upserts)]) * 1000
        print(
            f"first {args.baseline_faces:,} faces   worst upsert: one shard inline "
            f"{old_up.max():.0f} ms, tiered {new_up.max():.0f} ms, "
            f"ratio {old_up.max() / new_up.max():.1f}x; "
            f"time in upserts over 100 ms: {old_up[old_up > 100].sum() / 1000:.1f} s vs "
            f"{new_up[new_up > 100].sum() / 1000:.1f} s"
        )


if __name__ == "__main__":
    main()

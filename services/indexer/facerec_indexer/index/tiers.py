"""One model's embedded index: a live shard taking writes, built shards searched beside it.

Qdrant Edge builds HNSW only when asked (``optimize()``), and holds the GIL until it is
done (40 s for 30k faces on two cores), so building inline stops every search and
upsert of the indexer. The layout here is a log-structured one, as Lucene and RocksDB
keep theirs:

- new points go to a small *live* shard, searched by brute force;
- at ``seal_points`` it is frozen (a new live shard takes the writes) and a child
  process (``facerec_indexer.index.build``) builds an HNSW-indexed copy of it, which
  replaces it when done;
- when ``merge_factor`` built shards below ``max_shard_points`` exist, a child merges
  them into one (adding the smaller ones to the largest one's graph);
- a built shard that lost points to a deletion is written again without them by a child
  (Qdrant only marks a deleted point until its segment is rewritten).

Every search asks every shard and keeps the best hits; a point lives in exactly one
shard (an upsert first removes its id from the others). While a child copies a shard's
folder, that shard takes no writes (a write waits for the copy); after the copy a write
goes to the shard and to a replay list that is applied to the built shard before it
replaces its inputs. ``manifest.json`` (replaced atomically) names the shards in use, so
a crash mid-build loses only the unfinished build: its inputs are still listed and hold
every write.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from facerec_common.metrics import INDEX_BUILD, INDEX_SHARDS, INDEX_SWAP_PAUSE

from facerec_indexer.index.base import COLLECTION_PREFIX
from facerec_indexer.index.build import COPIED
from facerec_indexer.index.shards import SHARD_MARKER, count, create_shard

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ADOPTING = ".adopting"
FIRST_SHARD = "shard-000001"
PointId = int | uuid.UUID | str
# A failed build is tried again after this long, not at every write.
RETRY_AFTER_S = 30.0


@dataclass(frozen=True)
class Tiering:
    # Points in the live shard before it is frozen and built; it is searched by brute
    # force until then (5k faces: ~0.7 ms a search, against ~0.3 ms for a built shard).
    seal_points: int = 5_000
    # Built shards below max_shard_points merged into one once there are this many: the
    # build adds the smaller ones to the largest one's graph.
    merge_factor: int = 4
    # A shard this large takes no more merges: the indexer loads a built shard before
    # it replaces its inputs, and that load holds the process (~2.3 ms per 1,000 faces).
    max_shard_points: int = 200_000


@dataclass(frozen=True)
class Hit:
    point_id: str
    score: float
    payload: dict[str, Any]


@dataclass
class Member:
    name: str
    shard: qe.EdgeShard
    points: int
    built: bool
    # Holds points deleted since it was built: to be written again without them.
    erased: bool = False


@dataclass
class Build:
    inputs: list[str]
    output: str
    work: Path
    process: subprocess.Popen[bytes]
    merge: bool  # of built shards; else a build of frozen ones
    started: float = field(default_factory=time.monotonic)
    copied: bool = False
    # Writes that reached the inputs after they were copied, for the built shard.
    replay: list[qe.UpdateOperation] = field(default_factory=list)
    erased: bool = False  # some of them deleted points


class ShardSet:
    """Every shard of one model's collection, in ``folder``."""

    def __init__(self, folder: Path, dim: int, tiering: Tiering) -> None:
        self.folder = folder
        self.dim = dim
        self._tiering = tiering
        self._members: dict[str, Member] = {}
        self._live = ""
        self._next = 0
        self._builds: list[Build] = []
        self._retry_at = 0.0
        # The next live shard, made empty by a child ahead of the seal that needs it.
        self._spare: tuple[str, subprocess.Popen[bytes]] | None = None

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def create(cls, folder: Path, dim: int, tiering: Tiering) -> "ShardSet":
        folder.mkdir(parents=True, exist_ok=True)
        shards = cls(folder, dim, tiering)
        shards._new_live()
        shards._save()
        return shards

    @classmethod
    def open(cls, folder: Path, tiering: Tiering) -> "ShardSet":
        manifest = json.loads((folder / MANIFEST).read_text())
        shards = cls(folder, int(manifest["dim"]), tiering)
        shards._next = int(manifest["next"])
        shards._live = str(manifest["live"])
        for entry in manifest["shards"]:
            shard = qe.EdgeShard.load(str(folder / entry["name"]))
            shards._members[entry["name"]] = Member(
                entry["name"],
                shard,
                int(entry["points"]),
                bool(entry["built"]),
                bool(entry.get("erased", False)),
            )
        if shards._live not in shards._members:
            shards._new_live()
            shards._save()
        listed = set(shards._members) | {MANIFEST}
        # An unfinished build's output or work folder, a spare live shard, a manifest
        # half written: what a crash left. The inputs of a build are listed.
        _remove([p for p in folder.iterdir() if p.name not in listed])
        shards._schedule()
        return shards

    def _new_live(self) -> None:
        if self._spare is not None and self._spare[1].poll() == 0:
            name = self._spare[0]
            shard = qe.EdgeShard.load(str(self.folder / name))
        else:
            self._drop_spare()
            name = self._new_name()
            shard = create_shard(self.folder / name, self.dim)
        self._members[name] = Member(name, shard, 0, False)
        self._live = name
        spare = self._new_name()
        self._spare = (spare, self._spawn(self.folder / spare, []))

    def _drop_spare(self) -> None:
        if self._spare is not None:
            self._spare[1].kill()
            self._spare[1].wait()
            shutil.rmtree(self.folder / self._spare[0], ignore_errors=True)
            self._spare = None

    def _new_name(self) -> str:
        self._next += 1
        return f"shard-{self._next:06d}"

    def _save(self) -> None:
        INDEX_SHARDS.labels(self.folder.name.removeprefix(COLLECTION_PREFIX)).set(
            len(self._members)
        )
        manifest = {
            "dim": self.dim,
            "next": self._next,
            "live": self._live,
            "shards": [
                {"name": m.name, "points": m.points, "built": m.built, "erased": m.erased}
                for m in self._members.values()
            ],
        }
        temporary = self.folder / f"{MANIFEST}.new"
        with temporary.open("w") as out:
            json.dump(manifest, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.folder / MANIFEST)

    # -- reads ------------------------------------------------------------------------

    def query(
        self, requests: list[qe.QueryRequest], limit: int, fields: list[str]
    ) -> list[list[Hit]]:
        """The best ``limit`` hits of each request over every shard, with these payload
        fields. The requests ask for no payload: a shard's hits that do not make the
        final list would cost their payload reads for nothing (~0.5 ms a shard)."""
        self._advance()
        found: list[list[tuple[float, str, str]]] = [[] for _ in requests]
        for member in self._members.values():
            answers = member.shard.query_batch(qe.QueryBatchRequest(requests))
            for hits, points in zip(found, answers, strict=True):
                hits += [(p.score, str(p.id), member.name) for p in points]
        best = [sorted(hits, reverse=True)[:limit] for hits in found]
        wanted: dict[str, list[PointId]] = {}
        for hits in best:
            for _, point_id, name in hits:
                wanted.setdefault(name, []).append(point_id)
        payloads = {
            str(record.id): record.payload or {}
            for name, ids in wanted.items()
            for record in self._members[name].shard.retrieve(ids, fields, False)
        }
        return [[Hit(pid, score, payloads.get(pid, {})) for score, pid, _ in hits] for hits in best]

    def count(self, flt: qe.Filter) -> int:
        self._advance()
        return sum(count(m.shard, flt) for m in self._members.values())

    def shards(self) -> Iterator[qe.EdgeShard]:
        self._advance()
        for member in list(self._members.values()):
            yield member.shard

    def retrieve(self, ids: Sequence[str], with_payload: bool = True) -> list[qe.Record]:
        self._advance()
        found: list[qe.Record] = []
        for member in self._members.values():
            found += member.shard.retrieve([*ids], with_payload, False)
        return found

    # -- writes -----------------------------------------------------------------------

    def upsert(self, points: list[qe.Point]) -> None:
        self._advance()
        ids = [str(p.id) for p in points]
        # An id already stored elsewhere (a redelivered task, a re-embedded face) moves.
        self._write_where_found(ids, lambda found: qe.UpdateOperation.delete_points(found))
        live = self._members[self._live]
        live.shard.update(qe.UpdateOperation.upsert_points(points))
        live.points += len(points)
        if live.points >= self._tiering.seal_points:
            self._seal()

    def set_payload(self, ids: Sequence[str], payload: dict[str, Any]) -> None:
        self._advance()
        # Edge refuses the whole call if one id is missing: each shard gets its own ids.
        self._write_where_found(
            ids, lambda found: qe.UpdateOperation.set_payload(found, payload), live_too=True
        )

    def delete_ids(self, ids: Sequence[str]) -> None:
        self._erase(qe.UpdateOperation.delete_points([*ids]))

    def delete(self, flt: qe.Filter) -> None:
        self._erase(qe.UpdateOperation.delete_points_by_filter(flt))

    def _erase(self, operation: qe.UpdateOperation) -> None:
        """Delete, flushed (erasure must reach the disk before the call returns); a built
        shard that lost points is then written again without them, by a child."""
        self._advance()
        erased = False
        for member in list(self._members.values()):
            # Only a built shard is written again; the live and frozen ones are not counted.
            before = count(member.shard) if member.built else 0
            self._write(member, operation, deleting=True)
            member.shard.flush()
            if member.built and count(member.shard) < before:
                member.erased = erased = True
        if erased:
            self._save()
            self._schedule()

    def _write_where_found(
        self,
        ids: Sequence[str],
        operation: Callable[[list[PointId]], qe.UpdateOperation],
        live_too: bool = False,
    ) -> None:
        for member in list(self._members.values()):
            if member.name == self._live and not live_too:
                continue
            found: list[PointId] = [p.id for p in member.shard.retrieve([*ids], False, False)]
            if found:
                self._write(member, operation(found))

    def _write(self, member: Member, operation: qe.UpdateOperation, deleting: bool = False) -> None:
        build = self._build_of(member.name)
        if build is not None:
            self._await_copy(build)
        member.shard.update(operation)
        if build is not None and build.copied:
            build.replay.append(operation)
            build.erased |= deleting

    def flush(self) -> None:
        for member in self._members.values():
            member.shard.flush()

    # -- building ---------------------------------------------------------------------

    def _seal(self) -> None:
        frozen = self._members[self._live]
        self._new_live()
        self._save()
        log.info("index %s: %s frozen at %d points", self.folder.name, frozen.name, frozen.points)
        self._schedule()

    def _advance(self) -> None:
        """Put finished builds in place of their inputs, and start the next ones."""
        for build in list(self._builds):
            if build.process.poll() is not None:
                self._builds.remove(build)
                self._finish(build)
        self._schedule()

    def _schedule(self) -> None:
        if time.monotonic() < self._retry_at:
            return
        building = {name for build in self._builds for name in build.inputs}
        idle = [
            m for m in self._members.values() if m.name != self._live and m.name not in building
        ]
        # Frozen live shards first (searched by brute force until built), all in one build.
        if not any(not build.merge for build in self._builds):
            frozen = [m.name for m in idle if not m.built]
            if frozen:
                self._start(frozen, merge=False)
        if any(build.merge for build in self._builds):
            return  # one merge at a time: merges compete for the same cores
        small = [m.name for m in idle if m.built and m.points < self._tiering.max_shard_points]
        erased = [m.name for m in idle if m.built and m.erased]
        if len(small) >= self._tiering.merge_factor:
            self._start(small, merge=True)
        elif erased:
            self._start(erased[:1], merge=True)  # a merge would have written it again too

    def _start(self, inputs: list[str], merge: bool) -> None:
        for name in inputs:
            self._members[name].shard.flush()
        output = self._new_name()
        self._save()  # the name is never given again, even to a shard after a crash
        work = self.folder / f"{output}.work"
        process = self._spawn(self.folder / output, [self.folder / name for name in inputs], work)
        self._builds.append(Build(inputs, output, work, process, merge))
        log.info("index %s: building %s from %s", self.folder.name, output, ", ".join(inputs))

    def _spawn(
        self, output: Path, inputs: list[Path], work: Path | None = None
    ) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "facerec_indexer.index.build"]
        command += ["--output", str(output), "--dim", str(self.dim)]
        command += ["--work", str(work or output.with_suffix(".work")), *map(str, inputs)]
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _build_of(self, name: str) -> Build | None:
        return next((b for b in self._builds if name in b.inputs), None)

    def _await_copy(self, build: Build) -> None:
        while not build.copied:
            if (build.work / COPIED).exists():
                build.copied = True
            elif build.process.poll() is not None:
                return  # failed before copying: nothing to replay to
            else:
                time.sleep(0.002)

    def _finish(self, build: Build) -> None:
        output = self.folder / build.output
        if build.process.returncode != 0:
            stderr = (
                build.process.stderr.read().decode(errors="replace") if build.process.stderr else ""
            )
            log.error(
                "index %s: building %s failed (exit %s), its inputs stay in use: %s",
                self.folder.name,
                build.output,
                build.process.returncode,
                stderr[-2000:],
            )
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            _remove([output, build.work])
            return
        if build.process.stderr:
            build.process.stderr.close()
        opening = time.monotonic()
        shard = qe.EdgeShard.load(str(output))
        opened = time.monotonic() - opening
        for operation in build.replay:
            shard.update(operation)
        shard.flush()
        INDEX_SWAP_PAUSE.observe(time.monotonic() - opening)
        INDEX_BUILD.labels("merge" if build.merge else "seal").observe(
            time.monotonic() - build.started
        )
        points = sum(self._members[name].points for name in build.inputs)
        self._members[build.output] = Member(
            build.output, shard, count(shard), True, erased=build.erased
        )
        for name in build.inputs:
            self._members.pop(name).shard.close()
        self._save()
        # Deleting gigabytes of files takes a while; the GIL is free meanwhile.
        unused = [build.work, *(self.folder / name for name in build.inputs)]
        threading.Thread(target=_remove, args=(unused,), daemon=True).start()
        log.info(
            "index %s: %s in place of %s (%d points, built in %.1f s, opened in %.3f s, "
            "%d writes replayed)",
            self.folder.name,
            build.output,
            ", ".join(build.inputs),
            points,
            time.monotonic() - build.started,
            opened,
            len(build.replay),
        )

    # -- state ------------------------------------------------------------------------

    def settle(self, timeout_s: float) -> bool:
        """Wait until every frozen shard is built and no merge is due (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._retry_at = 0.0
            self._advance()
            if not self._builds:
                return True
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, int]:
        return {"shards": len(self._members), "builds": len(self._builds)}

    def close(self) -> None:
        for build in self._builds:
            build.process.kill()
            build.process.wait()
            if build.process.stderr:
                build.process.stderr.close()
            _remove([self.folder / build.output, build.work])
        self._builds.clear()
        self._drop_spare()
        for member in self._members.values():
            member.shard.flush()
            member.shard.close()
        self._members.clear()


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def adopt_older_shards(root: Path) -> None:
    """Move each shard written by an older release (one shard per model, the model's
    folder itself) into the layout above as its first shard, to be rebuilt like a frozen
    one; and complete a move a crash interrupted."""
    for staged in root.glob(f"*{ADOPTING}"):
        folder = staged.with_name(staged.name.removesuffix(ADOPTING))
        if folder.exists():
            shutil.rmtree(staged)  # the shard had not moved yet
        else:
            _complete_adoption(staged, folder)
    for marker in root.glob(f"*/{SHARD_MARKER}"):
        folder = marker.parent
        staged = folder.with_name(f"{folder.name}{ADOPTING}")
        staged.mkdir()
        folder.rename(staged / FIRST_SHARD)
        _complete_adoption(staged, folder)


def _complete_adoption(staged: Path, folder: Path) -> None:
    config = json.loads((staged / FIRST_SHARD / SHARD_MARKER).read_text())
    manifest = {
        "dim": int(config["vectors"][""]["size"]),
        "next": 1,
        "live": "",  # ShardSet.open creates one
        "shards": [{"name": FIRST_SHARD, "points": 0, "built": False}],
    }
    (staged / MANIFEST).write_text(json.dumps(manifest))
    staged.rename(folder)

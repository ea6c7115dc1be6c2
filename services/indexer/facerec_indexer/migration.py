"""A gallery's model migration, as the indexer carries it out (``facerec_common.migrations``
says what one is).

Every step that touches the index runs here, on the index queue, so it never interleaves
with another index task of this indexer. The new index is filled by sending each face's
kept crop to the embed queue at batch priority (``JobKind.MIGRATE``); each share comes back
here and is stored under the face's own id with the old point's payload, so a share that
is delivered twice (its worker was killed) stores nothing twice, and a face deleted
meanwhile is not brought back. When the new index holds every face the migration is ready;
a check finds any face still missing and sends it again.
"""

import base64
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import redis
from facerec_common.codec import unpack_vectors
from facerec_common.errors import InvalidInput, MigrationConflict, NotFound
from facerec_common.identities import text
from facerec_common.messages import (
    IndexCall,
    IndexCallOp,
    JobKind,
    JobParams,
    PipelineMessage,
)
from facerec_common.migrations import (
    ACTIVE_STATES,
    MODEL,
    PACK,
    SHADOW_MODEL,
    SHADOW_PACK,
    THRESHOLD,
    MatchShare,
    Migration,
    MigrationCheck,
    MigrationState,
    Transition,
    read_migration,
    switch_migration,
    update_migration,
)
from facerec_common.names import collection_settings_key
from facerec_common.results import MigratedFaces

from facerec_indexer.index import FaceIndex, FacePoint, Scope
from facerec_indexer.index.base import CLUSTER, CROP, ENROLLED, IDENTITY, POOL, FaceRecord

log = logging.getLogger(__name__)

# The payload fields people and naming change after a face is stored; carried from the
# serving index to the other at cutover and rollback.
SYNCED_FIELDS = (IDENTITY, POOL, CLUSTER)

RUNNING = frozenset({MigrationState.RUNNING})
FILLING = frozenset({MigrationState.RUNNING, MigrationState.READY})
Send = Callable[[PipelineMessage], None]


class Migrations:
    def __init__(
        self, index: FaceIndex, client: redis.Redis, send: Send, share_size: int = 8
    ) -> None:
        self._index = index
        self._redis = client
        # Puts a message on the embed queue at batch priority.
        self._send = send
        # Kept crops per message: one embedder batch.
        self._share_size = share_size

    def answer(self, call: IndexCall) -> Migration | MigrationCheck:
        tenant, collection = call.tenant, call.collection or ""
        if not collection:
            raise InvalidInput("collection is required")
        if call.op is IndexCallOp.MIGRATION_START:
            return self.start(call)
        migration = read_migration(self._redis, tenant, collection)
        if migration is None:
            raise NotFound(f"gallery {collection!r} has no model migration")
        if call.op is IndexCallOp.MIGRATION_CHECK:
            return self.check(tenant, migration)
        if call.op is IndexCallOp.MIGRATION_CUTOVER:
            return self.cut_over(tenant, migration)
        if call.op is IndexCallOp.MIGRATION_ROLLBACK:
            return self.roll_back(tenant, migration)
        return self.finish(tenant, migration)

    # -- start and fill ------------------------------------------------------------------

    def start(self, call: IndexCall) -> Migration:
        tenant, collection = call.tenant, call.collection or ""
        if len(call.packs) != 2:
            raise InvalidInput("a migration names the pack it leaves and the one it goes to")
        source, target = call.packs
        running = read_migration(self._redis, tenant, collection)
        if running is not None and running.state in ACTIVE_STATES:
            # Checked before anything is touched: the new index of a migration that was cut
            # over is the old one of the next, and must survive a refused second start.
            raise MigrationConflict(
                f"gallery {collection!r} is migrating already ({running.state.value}); "
                "finish or roll back that migration first"
            )
        scope = Scope(tenant, collection, model=source.model)
        faces = self._index.count(scope)
        without = faces - self._index.count(replace(scope, with_crop=True))
        if without:
            raise MigrationConflict(
                f"{without} of the gallery's {faces} faces keep no aligned crop "
                "(stored before crops were kept, imported from an archive, or kept with "
                "keep_crops off), so they cannot be embedded by another model; delete or "
                "enrol them again first"
            )
        migration_id = str(uuid.uuid4())
        # A stale new index of an earlier, abandoned migration to the same model goes.
        self._index.delete(Scope(tenant, collection, model=target.model))
        now = repr(time.time())
        started = switch_migration(
            self._redis,
            tenant,
            collection,
            None,
            ACTIVE_STATES,
            Transition(
                state=MigrationState.RUNNING,
                record={
                    "id": migration_id,
                    "collection": collection,
                    "source_pack": source.pack,
                    "source_model": source.model,
                    "target_pack": target.pack,
                    "target_model": target.model,
                    # The old model is judged as the gallery judges it now: by its own
                    # threshold where it has one; the new one by its pack's.
                    "source_threshold": self._gallery_threshold(tenant, collection)
                    or repr(source.threshold),
                    "target_threshold": repr(target.threshold),
                    "faces": str(faces),
                    "embedded": "0",
                    "started_at": now,
                },
                # From now on new faces are embedded with both models.
                gallery=_serving(source.pack, source.model, target.pack, target.model),
            ),
        )
        if started is None:
            raise MigrationConflict(f"gallery {collection!r} is migrating already")
        self._fill(tenant, started)
        return self._current(tenant, collection)

    def _fill(self, tenant: str, migration: Migration) -> int:
        """Send every face the new index lacks to be embedded; the number sent. A gallery
        with none missing is ready."""
        source, _ = self._models(migration)
        collection = migration.collection
        missing = self._missing(tenant, migration)
        for start in range(0, len(missing), self._share_size):
            # Read a share's crops at a time: a gallery's crops together may not fit.
            found = self._index.retrieve(source, missing[start : start + self._share_size])
            share = [r for r in found if r.payload.get(CROP)]
            if not share:
                continue
            self._send(
                PipelineMessage(
                    job_id=str(uuid.uuid4()),
                    kind=JobKind.MIGRATE,
                    tenant=tenant,
                    params=JobParams(
                        collection=collection,
                        model_pack=migration.target.pack,
                        migration_id=migration.id,
                    ),
                    images=[],
                    point_ids=[r.id for r in share],
                    kept_crops=[base64.b64decode(str(r.payload[CROP])) for r in share],
                )
            )
        self._progress(tenant, migration)
        return len(missing)

    def store(self, msg: PipelineMessage) -> MigratedFaces:
        """A share embedded by the new model: stored under each face's id with its old
        point's payload; faces deleted from the gallery since are skipped."""
        collection, migration_id = msg.params.collection or "", msg.params.migration_id or ""
        migration = read_migration(self._redis, msg.tenant, collection)
        if (
            migration is None
            or migration.id != migration_id
            or migration.state is not MigrationState.RUNNING
            or msg.model is None
        ):
            # Rolled back, failed or replaced while the share waited: nothing is written
            # into an index that was dropped.
            return MigratedFaces(migration_id=migration_id, stored=0, skipped=len(msg.point_ids))
        source, target = self._models(migration)
        if msg.model != target:
            raise InvalidInput(f"the share was embedded by {msg.model}, not {target}")
        old = {r.id: r for r in self._index.retrieve(source, msg.point_ids)}
        vectors = unpack_vectors(msg.vectors, msg.dim)
        points = [
            _copied(old[point_id], vector, target)
            for point_id, vector in zip(msg.point_ids, vectors, strict=True)
            if point_id in old
        ]
        self._index.upsert(target, msg.dim, points)
        self._progress(msg.tenant, migration)
        return MigratedFaces(
            migration_id=migration_id, stored=len(points), skipped=len(msg.point_ids) - len(points)
        )

    def _progress(self, tenant: str, migration: Migration) -> None:
        """Count the faces of both indexes; with none missing, the migration is ready."""
        source, target = self._models(migration)
        collection = migration.collection
        faces = self._index.count(Scope(tenant, collection, model=source))
        embedded = self._index.count(Scope(tenant, collection, model=target))
        ready = faces <= embedded and not self._missing(tenant, migration)
        state = MigrationState.READY if ready else MigrationState.RUNNING
        update_migration(
            self._redis,
            tenant,
            collection,
            migration.id,
            expect=FILLING,
            faces=faces,
            embedded=min(embedded, faces),
            state=state,
        )

    def _missing(self, tenant: str, migration: Migration) -> list[str]:
        """Ids of the faces the old index holds and the new one lacks (ids alone are read)."""
        source, target = self._models(migration)
        collection = migration.collection
        have = {r.id for r in self._ids(tenant, collection, target)}
        return [r.id for r in self._ids(tenant, collection, source) if r.id not in have]

    def _ids(self, tenant: str, collection: str, model: str) -> list[FaceRecord]:
        return self._index.scroll(Scope(tenant, collection, model=model), fields=[])

    # -- check, cutover, rollback, finish ------------------------------------------------

    def check(self, tenant: str, migration: Migration) -> MigrationCheck:
        if migration.state not in FILLING:
            raise MigrationConflict(
                f"the migration is {migration.state.value}; a check comes before cutover"
            )
        source, target = self._models(migration)
        collection = migration.collection
        orphans = self._sync(tenant, collection, source, target)
        missing = self._missing(tenant, migration)
        resumed = 0
        if missing:
            # Shares lost for good (their jobs failed on every try): sent again.
            update_migration(
                self._redis, tenant, collection, migration.id, expect=FILLING, state="running"
            )
            resumed = self._fill(tenant, migration)
        target_threshold = migration.target_threshold or 0.0
        source_threshold = migration.source_threshold or 0.0
        self_match, leave_one_out = self._matches(tenant, collection, target, target_threshold)
        _, source_loo = self._matches(tenant, collection, source, source_threshold)
        faces = self._index.count(Scope(tenant, collection, model=source))
        report = MigrationCheck(
            faces=faces,
            in_shadow=faces - len(missing),
            missing=len(missing),
            orphans=orphans,
            resumed=resumed,
            threshold=target_threshold,
            self_match=self_match,
            leave_one_out=leave_one_out,
            source_threshold=source_threshold,
            source_leave_one_out=source_loo,
            checked_at=time.time(),
        )
        update_migration(self._redis, tenant, collection, migration.id, check=report)
        return report

    def cut_over(self, tenant: str, migration: Migration) -> Migration:
        if migration.state is not MigrationState.READY:
            raise MigrationConflict(
                f"the migration is {migration.state.value}; cutover needs it ready "
                "(every face in the new index)"
            )
        source, target = self._models(migration)
        collection = migration.collection
        self._sync(tenant, collection, source, target)
        missing = self._missing(tenant, migration)
        if missing:
            update_migration(
                self._redis, tenant, collection, migration.id, expect=FILLING, state="running"
            )
            self._fill(tenant, migration)
            raise MigrationConflict(
                f"{len(missing)} faces were not in the new index yet; they were sent to be "
                "embedded: cut over when the migration is ready again"
            )
        return self._switch(
            tenant,
            migration,
            frozenset({MigrationState.READY}),
            Transition(
                state=MigrationState.CUT_OVER,
                record={"cut_over_at": repr(time.time())},
                # The target serves; the source keeps being written until finished.
                gallery=_serving(migration.target.pack, target, migration.source.pack, source),
                threshold="stash",
            ),
        )

    def roll_back(self, tenant: str, migration: Migration) -> Migration:
        if migration.state in (MigrationState.FINISHED, MigrationState.ROLLED_BACK):
            raise MigrationConflict(
                f"the migration is {migration.state.value}: nothing to roll back"
            )
        source, target = self._models(migration)
        collection = migration.collection
        after_cutover = migration.state is MigrationState.CUT_OVER
        if after_cutover:
            # Names given and people changed since cutover were written to the target.
            self._sync(tenant, collection, target, source)
        done = self._switch(
            tenant,
            migration,
            frozenset({migration.state}),
            Transition(
                state=MigrationState.ROLLED_BACK,
                record={"finished_at": repr(time.time())},
                gallery=_serving(migration.source.pack, source, None, None),
                threshold="restore" if after_cutover else "keep",
            ),
        )
        self._index.delete(Scope(tenant, collection, model=target))
        return done

    def finish(self, tenant: str, migration: Migration) -> Migration:
        if migration.state is not MigrationState.CUT_OVER:
            raise MigrationConflict(
                f"the migration is {migration.state.value}; the old index is dropped after cutover"
            )
        source, _ = self._models(migration)
        done = self._switch(
            tenant,
            migration,
            frozenset({MigrationState.CUT_OVER}),
            Transition(
                state=MigrationState.FINISHED,
                record={"finished_at": repr(time.time())},
                gallery={SHADOW_PACK: None, SHADOW_MODEL: None},
            ),
        )
        self._index.delete(Scope(tenant, migration.collection, model=source))
        return done

    # -- helpers -------------------------------------------------------------------------

    def _switch(
        self,
        tenant: str,
        migration: Migration,
        expect: frozenset[MigrationState],
        step: Transition,
    ) -> Migration:
        done = switch_migration(
            self._redis, tenant, migration.collection, migration.id, expect, step
        )
        if done is None:
            raise MigrationConflict(
                f"the migration changed state before it could be {step.state.value}; read it"
            )
        return done

    def _current(self, tenant: str, collection: str) -> Migration:
        migration = read_migration(self._redis, tenant, collection)
        if migration is None:
            raise NotFound(f"gallery {collection!r} has no model migration")
        return migration

    def _gallery_threshold(self, tenant: str, collection: str) -> str:
        """The gallery's own threshold ("" where it has none)."""
        return text(self._redis.hget(collection_settings_key(tenant, collection), THRESHOLD) or b"")

    @staticmethod
    def _models(migration: Migration) -> tuple[str, str]:
        if not migration.source.model or not migration.target.model:
            raise InvalidInput("the migration record names no models")
        return migration.source.model, migration.target.model

    def _sync(self, tenant: str, collection: str, serving: str, other: str) -> int:
        """Make the other index agree with the serving one: identity, pool and person of
        each face as the serving index has them, and no face the serving index lost.
        Returns how many faces the other index held that the serving one no longer has."""

        def read(model: str) -> dict[str, FaceRecord]:
            scope = Scope(tenant, collection, model=model)
            return {r.id: r for r in self._index.scroll(scope, fields=SYNCED_FIELDS)}

        theirs, ours = read(other), read(serving)
        orphans = [point_id for point_id in theirs if point_id not in ours]
        if orphans:
            self._index.delete_ids(other, orphans)
        changes: dict[tuple[tuple[str, str], ...], list[str]] = {}
        for point_id, record in ours.items():
            copy = theirs.get(point_id)
            if copy is None:
                continue
            wanted = tuple((f, str(record.payload.get(f, ""))) for f in SYNCED_FIELDS)
            if wanted != tuple((f, str(copy.payload.get(f, ""))) for f in SYNCED_FIELDS):
                changes.setdefault(wanted, []).append(point_id)
        for fields, ids in changes.items():
            self._index.set_payload(other, ids, dict(fields))
        return len(orphans)

    def _matches(
        self, tenant: str, collection: str, model: str, threshold: float
    ) -> tuple[MatchShare, MatchShare]:
        """Each enrolled face searched in ``model``'s index: does it find its own identity
        (itself included: ``self``; itself left out, for identities with several faces:
        ``leave one out``) at or over the threshold?"""
        scope = Scope(tenant, collection, pool=ENROLLED, model=model)
        records = self._index.scroll(scope, with_vectors=True, fields=[IDENTITY])
        faces_of: dict[str, int] = {}
        for r in records:
            identity = str(r.payload.get(IDENTITY, ""))
            faces_of[identity] = faces_of.get(identity, 0) + 1
        self_matched = loo_checked = loo_matched = 0
        for chunk in _chunks(records, 256):
            vectors = np.stack([_vector(r) for r in chunk])
            hits = self._index.search(model, vectors, scope, limit=2)
            for record, found in zip(chunk, hits, strict=True):
                identity = str(record.payload.get(IDENTITY, ""))
                if found and found[0].identity_id == identity and found[0].score >= threshold:
                    self_matched += 1
                if faces_of[identity] < 2:
                    continue
                loo_checked += 1
                other = next((h for h in found if h.point_id != record.id), None)
                if other is not None and other.identity_id == identity and other.score >= threshold:
                    loo_matched += 1
        return MatchShare.of(len(records), self_matched), MatchShare.of(loo_checked, loo_matched)


def _serving(
    pack: str, model: str, shadow_pack: str | None, shadow_model: str | None
) -> dict[str, str | None]:
    """The gallery settings that say which model serves it and which is written beside."""
    return {PACK: pack, MODEL: model, SHADOW_PACK: shadow_pack, SHADOW_MODEL: shadow_model}


def _copied(record: FaceRecord, vector: npt.NDArray[np.float32], model: str) -> FacePoint:
    payload = dict(record.payload)
    identity = str(payload.pop(IDENTITY, ""))
    pool = str(payload.pop(POOL, ENROLLED))
    cluster = str(payload.pop(CLUSTER, ""))
    tenant = str(payload.pop("tenant"))
    collection = str(payload.pop("collection"))
    return FacePoint(
        id=record.id,
        vector=vector,
        tenant=tenant,
        collection=collection,
        identity_id=identity,
        extra={**payload, "model": model},
        pool=pool,
        cluster_id=cluster,
    )


def _vector(record: FaceRecord) -> npt.NDArray[np.float32]:
    if record.vector is None:
        raise InvalidInput(f"face {record.id} was read without its vector")
    return record.vector


def _chunks(records: list[FaceRecord], size: int) -> Iterable[list[FaceRecord]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]

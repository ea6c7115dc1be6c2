"""A gallery's model, and its migration to another: what the gateway, the embedder and the
indexer read and write in Redis.

A gallery's faces are embedded with one model pack: the gallery's ``pack`` setting, or the
deployment's (the embedder's ``model_pack``) where it has none. A migration re-embeds the
faces' kept crops with another pack into a shadow index (the target model's Qdrant
collection, under the same point ids) while the old index serves; meanwhile new faces are
embedded with both (the gallery's ``shadow_pack``). At cutover the gallery's pack becomes
the target in one write. The old index is kept, and still written to, until the migration
is finished, so a rollback loses nothing.
"""

import time
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from facerec_common.identities import text
from facerec_common.names import PREFIX, collection_settings_key, migration_key

# Gallery settings: the pack (and its recognition model, the name of its Qdrant
# collection) that serves the gallery; the pack its new faces are also embedded with while
# a migration keeps a second index. No field: the deployment's pack, no second index.
PACK = "pack"
MODEL = "model"
SHADOW_PACK = "shadow_pack"
SHADOW_MODEL = "shadow_model"
# The gallery's own match threshold (a similarity on its model's scale).
THRESHOLD = "threshold"

# Hash pack -> what an embedder can embed with (``PackInfo`` as JSON), written by each
# embedder at start for every pack it loaded.
EMBEDDER_PACKS_KEY = f"{PREFIX}:embedder:packs"


class MigrationState(StrEnum):
    # The target's index is being filled from the kept crops; the source serves.
    RUNNING = "running"
    # Every face is in the target's index; the source serves until cutover.
    READY = "ready"
    # The target serves; the source is kept (and written to) until finished.
    CUT_OVER = "cut_over"
    # The source's index was dropped: nothing to roll back to.
    FINISHED = "finished"
    # The target's index was dropped; the source serves as before.
    ROLLED_BACK = "rolled_back"
    # Stopped on an error (its reason in ``error``); the source serves. Roll back to retry.
    FAILED = "failed"


# A migration in these states holds the gallery: no second one may start.
ACTIVE_STATES = frozenset({MigrationState.RUNNING, MigrationState.READY, MigrationState.CUT_OVER})


class ModelRef(BaseModel):
    pack: str
    model: str | None = None


class PackInfo(BaseModel):
    """A pack an embedder can embed with, as it records it in Redis."""

    pack: str
    model: str
    version: str
    dim: int
    threshold: float
    calibration: tuple[float, float] | None = None


class MatchShare(BaseModel):
    """How many of the faces checked found their own identity, and the share."""

    checked: int
    matched: int
    share: float | None = Field(description="matched / checked; null when none was checked")

    @classmethod
    def of(cls, checked: int, matched: int) -> "MatchShare":
        return cls(
            checked=checked,
            matched=matched,
            share=round(matched / checked, 4) if checked else None,
        )


class MigrationCheck(BaseModel):
    """The check before cutover. ``self_match``: each face's new vector, searched in the
    new index, finds its own identity at or over the new threshold (a face missing there
    or stored under another identity fails it). ``leave_one_out``: each face of an identity
    with several faces, its own point left out, still finds its identity at the new
    threshold; ``source_leave_one_out`` is the same measure on the old index, for
    comparison."""

    faces: int = Field(description="faces the serving index holds for the gallery")
    in_shadow: int = Field(description="of them, faces the new index holds")
    missing: int
    # Faces the new index held that the serving index no longer has (removed at check).
    orphans: int
    # Faces sent to be embedded again because they were missing.
    resumed: int
    threshold: float = Field(description="the new model's threshold the check applied")
    self_match: MatchShare
    leave_one_out: MatchShare
    source_threshold: float
    source_leave_one_out: MatchShare
    checked_at: float


class Migration(BaseModel):
    """A gallery's model migration: the running one, or the last."""

    id: str
    collection: str
    state: MigrationState
    source: ModelRef
    target: ModelRef
    # Faces to carry (those of the serving index), and those the new index holds so far.
    faces: int
    embedded: int
    progress: float = Field(description="embedded / faces, 0..1")
    started_at: float
    updated_at: float
    cut_over_at: float | None = None
    finished_at: float | None = None
    # Why a failed migration stopped.
    error: str | None = None
    # The last check, and the thresholds each model is judged by.
    check: MigrationCheck | None = None
    source_threshold: float | None = None
    target_threshold: float | None = None

    @classmethod
    def from_hash(cls, fields: dict[Any, Any]) -> "Migration":
        values = {text(k): text(v) for k, v in fields.items()}
        faces, embedded = int(values.get("faces", 0)), int(values.get("embedded", 0))

        def number(name: str) -> float | None:
            return float(values[name]) if values.get(name) else None

        return cls(
            id=values["id"],
            collection=values["collection"],
            state=MigrationState(values["state"]),
            source=ModelRef(pack=values["source_pack"], model=values.get("source_model")),
            target=ModelRef(pack=values["target_pack"], model=values.get("target_model")),
            faces=faces,
            embedded=embedded,
            progress=round(min(embedded / faces, 1.0), 4) if faces else 1.0,
            started_at=float(values["started_at"]),
            updated_at=float(values["updated_at"]),
            cut_over_at=number("cut_over_at"),
            finished_at=number("finished_at"),
            error=values.get("error") or None,
            check=MigrationCheck.model_validate_json(values["check"])
            if values.get("check")
            else None,
            source_threshold=number("source_threshold"),
            target_threshold=number("target_threshold"),
        )


class GalleryModels(BaseModel):
    """What a gallery's jobs embed with: the serving pack (None: the deployment's) and,
    while a migration keeps a second index, the pack new faces are also embedded with."""

    pack: str | None = None
    model: str | None = None
    shadow_pack: str | None = None
    shadow_model: str | None = None


def gallery_models(client: redis.Redis, tenant: str, collection: str) -> GalleryModels:
    values = client.hmget(
        collection_settings_key(tenant, collection), [PACK, MODEL, SHADOW_PACK, SHADOW_MODEL]
    )
    pack, model, shadow_pack, shadow_model = (text(v) if v else None for v in values)
    return GalleryModels(pack=pack, model=model, shadow_pack=shadow_pack, shadow_model=shadow_model)


def read_migration(client: redis.Redis, tenant: str, collection: str) -> Migration | None:
    fields = client.hgetall(migration_key(tenant, collection))
    return Migration.from_hash(fields) if fields else None


def update_migration(
    client: redis.Redis,
    tenant: str,
    collection: str,
    migration_id: str,
    expect: frozenset[MigrationState] | None = None,
    **fields: Any,
) -> bool:
    """Write fields of the migration ``migration_id`` while it is in one of the ``expect``
    states (any where None); False, nothing written, where the gallery's migration is
    another one now, none, or in another state (a rollback won a race)."""
    values = {
        name: v.model_dump_json() if isinstance(v, BaseModel) else ("" if v is None else str(v))
        for name, v in fields.items()
    }
    values["updated_at"] = repr(time.time())
    allowed = ",".join(sorted(expect)) if expect is not None else ""
    written = _UPDATE_IF_CURRENT(
        keys=[migration_key(tenant, collection)],
        args=[migration_id, allowed, *[item for pair in values.items() for item in pair]],
        client=client,
    )
    return bool(written)


_UPDATE_IF_CURRENT = redis.Redis().register_script(
    """
    if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
    if ARGV[2] ~= '' then
      local state = redis.call('HGET', KEYS[1], 'state')
      if not string.find(',' .. ARGV[2] .. ',', ',' .. state .. ',', 1, true) then
        return 0
      end
    end
    for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
    return 1
    """
)


class Transition(BaseModel):
    """One step of a migration, written in one Redis transaction with the gallery's
    settings: the record's new state and fields, the gallery fields set (None: removed),
    and what becomes of the gallery's own threshold, which belongs to the model it was set
    for: ``stash`` keeps it in the record (cutover), ``restore`` gives it back (rollback
    after cutover), ``keep`` leaves it."""

    state: MigrationState
    record: dict[str, str] = Field(default_factory=dict)
    gallery: dict[str, str | None] = Field(default_factory=dict)
    threshold: str = "keep"


def switch_migration(
    client: redis.Redis,
    tenant: str,
    collection: str,
    migration_id: str | None,
    expect: frozenset[MigrationState],
    step: Transition,
) -> Migration | None:
    """Apply ``step`` if the gallery's migration is ``migration_id`` in one of ``expect``
    (``migration_id`` None: a new one, while none is active); the migration as written,
    or None where the state did not allow it."""
    mkey, skey = migration_key(tenant, collection), collection_settings_key(tenant, collection)

    def apply(pipe: Any) -> None:
        current = pipe.hgetall(mkey)
        old = Migration.from_hash(current) if current else None
        if migration_id is None:
            if old is not None and old.state in ACTIVE_STATES:
                return
        elif old is None or old.id != migration_id or old.state not in expect:
            return
        threshold = text(pipe.hget(skey, THRESHOLD) or b"")
        stashed = text(current.get(b"gallery_threshold", b""))
        record = {**step.record, "state": step.state.value, "updated_at": repr(time.time())}
        pipe.multi()
        if migration_id is None:
            pipe.delete(mkey)
        if step.threshold == "stash":
            record["gallery_threshold"] = threshold
            pipe.hdel(skey, THRESHOLD)
        elif step.threshold == "restore":
            if stashed:
                pipe.hset(skey, THRESHOLD, stashed)
            else:
                pipe.hdel(skey, THRESHOLD)
        pipe.hset(mkey, mapping=record)
        for name, value in step.gallery.items():
            if value is None:
                pipe.hdel(skey, name)
            else:
                pipe.hset(skey, name, value)

    client.transaction(apply, mkey, skey)
    after = read_migration(client, tenant, collection)
    wanted = migration_id or step.record.get("id")
    if after is None or after.id != wanted or after.state is not step.state:
        return None
    return after

"""Queue names, task names and Redis keys: the contract between the services.

The gateway sends tasks by these names and never imports worker code, so renaming one
here is a protocol change for every service at once.
"""

from enum import StrEnum


class Queue(StrEnum):
    """One queue per pipeline stage; each worker consumes only its own."""

    DETECT = "detect"
    EMBED = "embed"
    INDEX = "index"


# Batch work is sent with this Celery priority (0 is the highest on Redis), so interactive
# requests overtake a running archive import. Celery's Redis transport keeps each priority
# level of a queue in its own list: "detect" for interactive work, "detect:9" for batches.
BATCH_PRIORITY = 9
PRIORITY_STEPS = [0, BATCH_PRIORITY]
PRIORITY_SEPARATOR = ":"


def batch_list(queue: Queue) -> str:
    """The Redis list in which a queue's batch tasks wait."""
    return f"{queue}{PRIORITY_SEPARATOR}{BATCH_PRIORITY}"


def queue_lists() -> list[str]:
    """Every Redis list that holds waiting tasks, interactive and batch."""
    return [name for queue in Queue for name in (str(queue), batch_list(queue))]


class Task(StrEnum):
    DETECT = "facerec.detect"
    EMBED = "facerec.embed"
    INDEX_FACES = "facerec.index.faces"
    # The indexer's calls that carry no image (counts, erasure, people); the task keeps
    # its original name on the wire, so workers and gateways of either age agree.
    INDEX_CALL = "facerec.index.admin"


TASK_QUEUES: dict[str, Queue] = {
    Task.DETECT: Queue.DETECT,
    Task.EMBED: Queue.EMBED,
    Task.INDEX_FACES: Queue.INDEX,
    Task.INDEX_CALL: Queue.INDEX,
}

PREFIX = "facerec"

# Workers announce completion of every job on this channel; the gateway holds a single
# subscription and wakes only the requests that wait for that job.
JOBS_DONE_CHANNEL = f"{PREFIX}:jobs:done"


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def image_key(job_id: str, index: int) -> str:
    return f"{PREFIX}:img:{job_id}:{index}"


def workers_key(queue: str) -> str:
    """Hash of the workers that consume ``queue``: worker name -> JSON heartbeat. One key
    per queue, so whoever asks which workers live reads O(workers), never the keyspace."""
    return f"{PREFIX}:workers:{queue}"


# kombu's Redis transport: delivery tag -> time, of every message handed to a consumer
# and not yet acknowledged (its default ``unacked_index_key``).
UNACKED_INDEX = "unacked_index"


def reaping_key(tag: str) -> str:
    """Held for a while by the one reaper restoring an unclaimed message."""
    return f"{PREFIX}:reaping:{tag}"


def inflight_key() -> str:
    """Hash of the task each worker is running: worker name -> JSON (queue, delivery tag,
    job id). A task whose worker's heartbeat stopped is sent again from here."""
    return f"{PREFIX}:inflight"


def attempts_key(job_id: str, stage: str) -> str:
    """How many times a stage of a job was started: a message that kills its worker is
    stopped after a set number of tries."""
    return f"{PREFIX}:attempts:{job_id}:{stage}"


def dead_letters_key(tenant: str) -> str:
    """Hash of a tenant's messages that ended their job as failed after every try:
    job id -> entry, for an admin to list and send again."""
    return f"{PREFIX}:t:{tenant}:dead-letters"


def collections_key(tenant: str) -> str:
    """Set of the tenant's collection (gallery) names."""
    return f"{PREFIX}:t:{tenant}:collections"


def identities_key(tenant: str, collection: str) -> str:
    """Sorted set of identity ids of one collection, all with score 0, so that ids (which
    start with a timestamp) come back in creation order and serve as pagination cursors."""
    return f"{PREFIX}:t:{tenant}:c:{collection}:identities"


def identity_key(tenant: str, collection: str, identity_id: str) -> str:
    """Hash with one identity's record: name, metadata (JSON), created_at, state."""
    return f"{PREFIX}:t:{tenant}:c:{collection}:identity:{identity_id}"


def api_key_key(prefix: str) -> str:
    """Hash of one API key: tenant, scopes, name, sha256 digest; never the key itself."""
    return f"{PREFIX}:key:{prefix}"


def tenant_keys_key(tenant: str) -> str:
    return f"{PREFIX}:t:{tenant}:keys"


def rate_key(key_prefix: str, window: int) -> str:
    return f"{PREFIX}:rate:{key_prefix}:{window}"


def collection_settings_key(tenant: str, collection: str) -> str:
    """Hash of a gallery's own settings: match threshold, quality bar, keep_crops, and
    the model pack its faces are embedded with (``facerec_common.migrations``)."""
    return f"{PREFIX}:t:{tenant}:c:{collection}:settings"


def migration_key(tenant: str, collection: str) -> str:
    """Hash of a gallery's model migration, the running one or the last (see
    ``facerec_common.migrations``)."""
    return f"{PREFIX}:t:{tenant}:c:{collection}:migration"


def batch_key(batch_id: str) -> str:
    """Hash of one batch: tenant, collection, status, counts, callback."""
    return f"{PREFIX}:batch:{batch_id}"


def batch_results_key(batch_id: str) -> str:
    """List of the batch's per-image results (JSON), in the order they finished."""
    return f"{PREFIX}:batch:{batch_id}:results"


def batch_recorded_key(batch_id: str) -> str:
    """Set of job ids already counted, so a redelivered task is not counted twice."""
    return f"{PREFIX}:batch:{batch_id}:recorded"


def batches_key(tenant: str, collection: str) -> str:
    """Sorted set of a gallery's batch ids by creation time."""
    return f"{PREFIX}:t:{tenant}:c:{collection}:batches"


def batch_images_key(tenant: str, collection: str) -> str:
    """Hash sha256 of an image -> the batch it was submitted in: one image, one submission."""
    return f"{PREFIX}:t:{tenant}:c:{collection}:images"


def webhook_secret_key(tenant: str) -> str:
    return f"{PREFIX}:t:{tenant}:webhook-secret"


def bootstrap_key_key(key_digest: str) -> str:
    """Hash recording the fate of a bootstrap admin key (by its sha256): its tenant and
    prefix, when it was created and, once revoked, when; a revoked one is never re-created."""
    return f"{PREFIX}:bootstrap:{key_digest}"


def audit_key(tenant: str) -> str:
    """Stream of the tenant's audit records (admin and erasure actions), append-only and
    trimmed by age; kept when the tenant is erased."""
    return f"{PREFIX}:t:{tenant}:audit"


# Sorted set of batch ids whose callback is due, scored by the time it is due.
CALLBACKS_KEY = f"{PREFIX}:callbacks"

# The tag of the model the embed workers run (facerec_common.embeddings.EmbeddingModel as
# JSON), written by each embedder when it starts: gallery archives are tagged with it and
# checked against it.
EMBEDDER_MODEL_KEY = f"{PREFIX}:embedder:model"


def archive_secret_key(tenant: str) -> str:
    """The secret a tenant's gallery archives are signed with (HMAC-SHA256)."""
    return f"{PREFIX}:t:{tenant}:archive-secret"

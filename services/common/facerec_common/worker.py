"""What every worker does the same way: heartbeats, claims and the reaper, metrics, the
Celery worker loop, and turning a stage's errors into a failed job instead of a dead or
looping task.

Every task runs under ``guarded``: it counts the tries of its stage of its job (a try that
never ended means its worker died on it), stops after ``max_attempts`` tries with the job
failed and the message kept as a dead letter, and stops a task that runs past the stage's
hard time limit.
"""

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import task_postrun, task_received, worker_ready, worker_shutdown
from pydantic import ValidationError

from facerec_common.batches import BatchImage, BatchLedger
from facerec_common.celery_app import make_celery
from facerec_common.deadletters import DeadLetterStore, new_letter
from facerec_common.errors import FaceRecError, StageFailed, StageTimeout, WorkerCrashed
from facerec_common.heartbeat import MISSED_BEATS, start_heartbeat
from facerec_common.jobs import JobWriter, problem_of
from facerec_common.kinds import StageName, route
from facerec_common.logs import job_context
from facerec_common.messages import JobKind, PipelineMessage
from facerec_common.metrics import TASK_DURATION, TASKS, serve_metrics
from facerec_common.names import BATCH_PRIORITY, attempts_key
from facerec_common.reaper import Claims, reap
from facerec_common.results import BatchImageResult, JobResult
from facerec_common.settings import ServiceSettings

log = logging.getLogger(__name__)

# Retries of an error that may pass (Redis or the index unreachable), with backoff.
MAX_RETRIES = 5


def redis_client(settings: ServiceSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, health_check_interval=30)


@contextmanager
def hard_time_limit(seconds: float) -> Iterator[None]:
    """Raise ``StageTimeout`` in this task once it has run ``seconds``.

    Celery enforces time limits only in its prefork pool; the workers run the solo pool,
    so the limit is a timer signal to the main thread, where solo runs every task. A
    model call in native code is interrupted when it returns to Python.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise StageTimeout(f"the stage ran past its limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Guard:
    """What ``guarded`` needs to end a job for good: the settings, where job records and
    dead letters go."""

    client: redis.Redis
    settings: ServiceSettings
    dead_letters: DeadLetterStore

    def started(self, job_id: str, stage: str) -> int:
        """Count one more try of this stage of this job; the count is dropped when the try
        ends, so what is left counts the tries whose worker died."""
        key = attempts_key(job_id, stage)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.settings.job_ttl_s)
            tries, _ = pipe.execute()
        return int(tries)

    def ended(self, job_id: str, stage: str) -> None:
        self.client.delete(attempts_key(job_id, stage))


@contextmanager
def guarded(
    guard: Guard,
    task: Task,
    payload: dict[str, Any],
    job: tuple[str, str],
    stage: str,
    fail: Callable[[dict[str, Any], bool], None],
) -> Iterator[bool]:
    """Run one try of a stage of a job (``job``: its id and tenant); whatever goes wrong
    ends the job, not the worker. Yields False when the job was ended before running.

    A domain error fails the job with its problem. A retryable one (index or Redis
    unreachable) is retried with backoff, then fails the job. Anything else is logged with
    its traceback and tried again up to ``max_attempts`` tries in all, as is a try whose
    worker died; the last ends the job (stage-error, worker-crashed) and keeps its message
    as a dead letter. Every log line written meanwhile carries the job id.
    """
    job_id, tenant = job
    limit = guard.settings.max_attempts

    def give_up(error: FaceRecError, tries: int) -> None:
        problem = problem_of(error)
        fail(problem, True)  # the images stay with the dead letter, for a re-drive
        guard.dead_letters.add(
            new_letter(payload, tenant, job_id, stage, task.name, problem, tries)
        )
        TASKS.labels(stage, "dead-lettered").inc()
        log.error("%s: job failed after %d tries, kept as a dead letter: %s", stage, tries, error)

    with job_context(job_id):
        tries = guard.started(job_id, stage)
        if tries > limit:
            guard.ended(job_id, stage)
            give_up(WorkerCrashed(f"the {stage} worker died on each of {limit} tries"), limit)
            yield False
            return
        try:
            with hard_time_limit(guard.settings.task_time_limit_s):
                yield True
        except StageTimeout as exc:
            TASKS.labels(stage, "failed").inc()
            give_up(exc, tries)
        except FaceRecError as exc:
            if exc.retryable and task.request.retries < MAX_RETRIES:
                TASKS.labels(stage, "retried").inc()
                log.warning("%s: %s; retrying", task.name, exc)
                guard.ended(job_id, stage)  # waiting for a dependency is not a failed try
                raise task.retry(exc=exc, countdown=2**task.request.retries) from exc
            TASKS.labels(stage, "failed").inc()
            log.info("%s: job failed: %s", task.name, exc)
            fail(problem_of(exc), False)
        except redis.ConnectionError as exc:
            if task.request.retries < MAX_RETRIES:
                TASKS.labels(stage, "retried").inc()
                log.warning("%s: Redis unreachable; retrying", task.name)
                with contextlib.suppress(redis.RedisError):
                    guard.ended(job_id, stage)
                raise task.retry(exc=exc, countdown=2**task.request.retries) from exc
            raise
        except Exception as exc:
            TASKS.labels(stage, "failed").inc()
            log.exception("%s failed on try %d of %d", task.name, tries, limit)
            if tries < limit:
                # Counted as a try of its own: the attempts key must not be dropped below.
                raise task.retry(exc=exc, countdown=1, max_retries=None) from exc
            give_up(StageFailed(f"{type(exc).__name__}: {exc}"[:500]), tries)
        guard.ended(job_id, stage)


def unreadable_message(
    guard: Guard, task: Task, payload: Any, stage: str, error: ValidationError
) -> None:
    """A message that does not parse can never succeed: end its job (when it names one)
    and keep it as a dead letter, instead of a task that fails silently forever."""
    job_id = payload.get("job_id") if isinstance(payload, dict) else None
    tenant = payload.get("tenant") if isinstance(payload, dict) else None
    log.error("%s: unreadable message for job %s: %s", task.name, job_id, error)
    TASKS.labels(stage, "dead-lettered").inc()
    if not isinstance(job_id, str) or not isinstance(tenant, str):
        return  # nothing to end, nobody to show it to
    problem = problem_of(StageFailed(f"the {stage} stage could not read its message"))
    JobWriter(guard.client, guard.settings.job_ttl_s).fail(job_id, problem, 0, keep_images=True)
    guard.dead_letters.add(new_letter(payload, tenant, job_id, stage, task.name, problem, 1))


def run_worker(
    app: Celery,
    queue: str,
    settings: ServiceSettings,
    probe: Callable[[], dict[str, Any]] | None = None,
    concurrency: int = 1,
) -> None:
    """Consume ``queue`` in this process (solo pool) until stopped.

    Solo pool: the models are loaded once in this process and every task runs here, so
    nothing is forked after loading and metrics stay in one process. Scale by running
    more worker processes (or pods). SIGTERM is Celery's warm shutdown: the running task
    finishes and is acknowledged, then the process exits. With ``concurrency`` above 1,
    Celery's threads pool runs that many tasks at once in this process (the embedder's
    cross-job batching); each holds its own claim.
    """
    hostname = f"{queue}@{socket.gethostname()}-{os.getpid()}"
    client = redis_client(settings)
    claims = Claims(client, hostname, queue)
    stoppers = []

    def restore(tag: str) -> None:
        with app.connection_for_write() as connection:
            connection.default_channel.qos.restore_by_tag(tag)

    def on_received(request: Any = None, **_: Any) -> None:
        args = getattr(request, "args", None) or [{}]
        job_id = args[0].get("job_id") if isinstance(args[0], dict) else None
        claims.claim(request.id, request.message.delivery_tag, job_id)

    def on_postrun(task_id: str = "", **_: Any) -> None:
        claims.release(task_id)

    # An unclaimed delivery is given up on once every live worker has beaten since.
    unclaimed_grace_s = (MISSED_BEATS + 1) * settings.heartbeat_interval_s

    def reap_dead() -> None:
        reap(client, restore, unclaimed_grace_s)

    def facts() -> dict[str, Any]:
        # The claims this worker still holds ride in its beat: a claim it no longer holds
        # (its task failed while Redis was away, so neither the ack nor the release got
        # through) is restored by the reaper although the worker lives.
        return {**(probe() if probe is not None else {}), **claims.holding()}

    def on_ready(**_: Any) -> None:
        stoppers.append(
            start_heartbeat(
                client,
                queue,
                hostname,
                settings.heartbeat_interval_s,
                facts,
                on_beat=reap_dead,
            )
        )

    def on_shutdown(**_: Any) -> None:
        for stop in stoppers:
            stop.set()

    task_received.connect(on_received, weak=False)
    task_postrun.connect(on_postrun, weak=False)
    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
    serve_metrics(settings.metrics_port)
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            *(
                # Solo keeps Celery's own prefetch (its multiplier times the CPU count):
                # a slot left over lets a worker whose ack or reject failed while Redis
                # was away go on consuming (with exactly one it took nothing more).
                ["--pool", "solo"]
                if concurrency == 1
                else ["--pool", "threads", "--concurrency", str(concurrency)]
            ),
            "--hostname",
            hostname,
            "--loglevel",
            settings.log_level,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def worker_celery(name: str, settings: ServiceSettings) -> tuple[Celery, Guard]:
    """A worker's Celery app and the guard its tasks run under."""
    app = make_celery(name, settings.redis_url, settings.visibility_timeout_s)
    client = redis_client(settings)
    return app, Guard(client, settings, DeadLetterStore(client, settings.dead_letter_ttl_s))


def batch_image(msg: PipelineMessage) -> BatchImage | None:
    """The batch this job's image belongs to, if it came in a batch."""
    if msg.params.batch_id is None or not msg.images or msg.params.collection is None:
        return None
    image = msg.images[0]
    return BatchImage(
        msg.params.batch_id, msg.tenant, msg.params.collection, image.name, image.sha256 or ""
    )


@dataclass(frozen=True)
class StageOutcome:
    """What a pipeline stage decided: the job's final result, or the next stage's message."""

    result: JobResult | None = None
    forward: PipelineMessage | None = None


def stage_app(
    name: str,
    settings: ServiceSettings,
    stage: StageName,
    run: Callable[[PipelineMessage, JobWriter], StageOutcome],
    on_batch_done: Callable[[BatchImage], None] | None = None,
) -> tuple[Celery, Guard]:
    """A Celery app (and its guard) with the one task of a pipeline stage: run it on a
    message, then end the job with its result or pass the message on to the stage its
    kind goes to next (``kinds.ROUTES``). A job of a batch is counted into its batch;
    ``on_batch_done`` runs when that finished the batch."""
    stage_name = stage.name
    app, guard = worker_celery(name, settings)
    client = guard.client
    jobs = JobWriter(client, settings.job_ttl_s)
    ledger = BatchLedger(client)

    @app.task(name=stage.task, bind=True)
    def run_stage(task: Task, payload: dict[str, Any]) -> None:
        try:
            msg = PipelineMessage.model_validate(payload)
        except ValidationError as exc:
            unreadable_message(guard, task, payload, stage_name, exc)
            return
        batch = batch_image(msg)

        def count_into_batch(
            result: JobResult | None, problem: dict[str, Any] | None = None
        ) -> None:
            if batch is None or not ledger.record(batch, msg.job_id, result, problem):
                return
            log.info("batch %s done", batch.batch_id)
            if on_batch_done is not None:
                try:
                    on_batch_done(batch)
                except Exception:  # the job has ended already; this must not end it again
                    log.exception("after batch %s", batch.batch_id)

        if jobs.ended(msg.job_id):
            # A second delivery of a task whose job has ended (a dead worker's task can be
            # given back by the reaper after another worker already took it, or a worker
            # died between ending the job and counting it): running it again could only
            # end the job a second time, with its images gone. Its batch still counts it
            # (the ledger counts a job once), from the outcome the job was ended with.
            log.warning(
                "%s: job %s has ended already; this delivery is dropped", stage_name, msg.job_id
            )
            TASKS.labels(stage_name, "duplicate").inc()
            if batch is not None:
                stored, problem = jobs.outcome(msg.job_id)
                done = BatchImageResult.model_validate(stored) if stored and not problem else None
                count_into_batch(done, problem)
            return
        start = time.perf_counter()

        def fail(problem: dict[str, Any], keep_images: bool) -> None:
            jobs.fail(msg.job_id, problem, len(msg.images), keep_images)
            count_into_batch(None, problem)

        with guarded(guard, task, payload, (msg.job_id, msg.tenant), stage_name, fail) as go:
            if not go:
                return
            outcome = run(msg, jobs)
            if outcome.result is not None:
                jobs.finish(msg.job_id, outcome.result, len(msg.images))
                count_into_batch(outcome.result)
                TASKS.labels(stage_name, "done").inc()
            elif outcome.forward is not None:
                after = route(msg.kind).after(stage)
                if after is None:
                    raise StageFailed(f"{msg.kind} jobs end at the {stage_name} stage")
                # Batch and migration work keep their low priority at every stage.
                background = batch is not None or msg.kind is JobKind.MIGRATE
                priority = BATCH_PRIORITY if background else 0
                app.send_task(after.task, args=[outcome.forward.to_task()], priority=priority)
                TASKS.labels(stage_name, "forwarded").inc()
            elapsed = time.perf_counter() - start
            log.info("%s %s job: %.1f ms", stage_name, msg.kind, elapsed * 1000)
        TASK_DURATION.labels(stage_name).observe(time.perf_counter() - start)

    return app, guard

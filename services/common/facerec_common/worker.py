"""What every worker does the same way: heartbeats, metrics, the Celery worker loop, and
turning a stage's errors into a failed job instead of a dead or looping task."""

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import worker_ready, worker_shutdown

from facerec_common.batches import BatchImage, BatchLedger
from facerec_common.celery_app import make_celery
from facerec_common.errors import FaceRecError
from facerec_common.heartbeat import start_heartbeat
from facerec_common.jobs import JobWriter, problem_of
from facerec_common.logs import job_context
from facerec_common.messages import PipelineMessage
from facerec_common.metrics import TASK_DURATION, TASKS, serve_metrics
from facerec_common.names import BATCH_PRIORITY
from facerec_common.settings import ServiceSettings

log = logging.getLogger(__name__)

MAX_RETRIES = 5


def redis_client(settings: ServiceSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, health_check_interval=30)


@contextmanager
def job_guard(
    task: Task, job_id: str, stage: str, fail: Callable[[dict[str, Any]], None]
) -> Iterator[None]:
    """Run one stage of one job; whatever goes wrong ends the job, not the worker.

    A domain error fails the job with its problem. A retryable one (index or Redis
    unreachable) is retried with backoff, then fails the job. Anything else is a bug: it
    is logged with its traceback and the job fails as an internal error. ``fail`` ends
    the job with a problem. Every log line written meanwhile carries the job id.
    """
    with job_context(job_id):
        try:
            yield
        except FaceRecError as exc:
            if exc.retryable and task.request.retries < MAX_RETRIES:
                TASKS.labels(stage, "retried").inc()
                log.warning("%s: %s; retrying", task.name, exc)
                raise task.retry(exc=exc, countdown=2**task.request.retries) from exc
            TASKS.labels(stage, "failed").inc()
            log.info("%s: job failed: %s", task.name, exc)
            fail(problem_of(exc))
        except redis.ConnectionError as exc:
            if task.request.retries < MAX_RETRIES:
                TASKS.labels(stage, "retried").inc()
                log.warning("%s: Redis unreachable; retrying", task.name)
                raise task.retry(exc=exc, countdown=2**task.request.retries) from exc
            raise
        except Exception:
            TASKS.labels(stage, "failed").inc()
            log.exception("job failed in %s", task.name)
            fail({"code": "internal-error", "title": "Internal error", "detail": "see the log"})


def run_worker(
    app: Celery,
    queue: str,
    settings: ServiceSettings,
    probe: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Consume ``queue`` in this process (solo pool) until stopped.

    Solo pool: the models are loaded once in this process and every task runs here, so
    nothing is forked after loading and metrics stay in one process. Scale by running
    more worker processes (or pods).
    """
    hostname = f"{queue}@{socket.gethostname()}-{os.getpid()}"
    client = redis_client(settings)
    stoppers = []

    def on_ready(**_: Any) -> None:
        stoppers.append(
            start_heartbeat(client, queue, hostname, settings.heartbeat_interval_s, probe)
        )

    def on_shutdown(**_: Any) -> None:
        for stop in stoppers:
            stop.set()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
    serve_metrics(settings.metrics_port)
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            "--pool",
            "solo",
            "--hostname",
            hostname,
            "--loglevel",
            settings.log_level,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


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

    result: dict[str, Any] | None = None
    forward: PipelineMessage | None = None


def stage_app(
    name: str,
    settings: ServiceSettings,
    stage_name: str,
    task_name: str,
    next_task: str | None,
    run: Callable[[PipelineMessage, JobWriter], StageOutcome],
    on_batch_done: Callable[[BatchImage], None] | None = None,
) -> Celery:
    """A Celery app with the one task of a pipeline stage: run it on a message, then end
    the job with its result or pass the message on to ``next_task``. A job of a batch is
    counted into its batch; ``on_batch_done`` runs when that finished the batch."""
    app = make_celery(name, settings.redis_url)
    client = redis_client(settings)
    jobs = JobWriter(client, settings.job_ttl_s)
    ledger = BatchLedger(client)

    @app.task(name=task_name, bind=True)
    def stage(task: Task, payload: dict[str, Any]) -> None:
        msg = PipelineMessage.model_validate(payload)
        batch = batch_image(msg)
        start = time.perf_counter()

        def count_into_batch(
            result: dict[str, Any] | None, problem: dict[str, Any] | None = None
        ) -> None:
            if batch is None or not ledger.record(batch, msg.job_id, result, problem):
                return
            log.info("batch %s done", batch.batch_id)
            if on_batch_done is not None:
                try:
                    on_batch_done(batch)
                except Exception:  # the job has ended already; this must not end it again
                    log.exception("after batch %s", batch.batch_id)

        def fail(problem: dict[str, Any]) -> None:
            jobs.fail(msg.job_id, problem, len(msg.images))
            count_into_batch(None, problem)

        with job_guard(task, msg.job_id, stage_name, fail):
            outcome = run(msg, jobs)
            if outcome.result is not None:
                jobs.finish(msg.job_id, outcome.result, len(msg.images))
                count_into_batch(outcome.result)
                TASKS.labels(stage_name, "done").inc()
            elif outcome.forward is not None and next_task is not None:
                # Batch work keeps its low priority at every stage.
                priority = BATCH_PRIORITY if batch is not None else 0
                app.send_task(next_task, args=[outcome.forward.to_task()], priority=priority)
                TASKS.labels(stage_name, "forwarded").inc()
            elapsed = time.perf_counter() - start
            log.info("%s %s job: %.1f ms", stage_name, msg.kind, elapsed * 1000)
        TASK_DURATION.labels(stage_name).observe(time.perf_counter() - start)

    return app

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

from facerec_common.celery_app import make_celery
from facerec_common.errors import FaceRecError
from facerec_common.heartbeat import start_heartbeat
from facerec_common.jobs import JobWriter, problem_of
from facerec_common.logs import job_context
from facerec_common.messages import PipelineMessage
from facerec_common.metrics import TASK_DURATION, TASKS, serve_metrics
from facerec_common.settings import ServiceSettings

log = logging.getLogger(__name__)

MAX_RETRIES = 5


def redis_client(settings: ServiceSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, health_check_interval=30)


@contextmanager
def job_guard(
    task: Task, jobs: JobWriter, job_id: str, image_count: int, stage: str
) -> Iterator[None]:
    """Run one stage of one job; whatever goes wrong ends the job, not the worker.

    A domain error fails the job with its problem. A retryable one (index or Redis
    unreachable) is retried with backoff, then fails the job. Anything else is a bug: it
    is logged with its traceback and the job fails as an internal error. Every log line
    written meanwhile carries the job id.
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
            jobs.fail(job_id, problem_of(exc), image_count)
        except redis.ConnectionError as exc:
            if task.request.retries < MAX_RETRIES:
                TASKS.labels(stage, "retried").inc()
                log.warning("%s: Redis unreachable; retrying", task.name)
                raise task.retry(exc=exc, countdown=2**task.request.retries) from exc
            raise
        except Exception:
            TASKS.labels(stage, "failed").inc()
            log.exception("job failed in %s", task.name)
            jobs.fail(
                job_id,
                {
                    "code": "internal-error",
                    "title": "Internal error",
                    "detail": "see the worker log",
                },
                image_count,
            )


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
) -> Celery:
    """A Celery app with the one task of a pipeline stage: run it on a message, then end
    the job with its result or pass the message on to ``next_task``."""
    app = make_celery(name, settings.redis_url)
    jobs = JobWriter(redis_client(settings), settings.job_ttl_s)

    @app.task(name=task_name, bind=True)
    def stage(task: Task, payload: dict[str, Any]) -> None:
        msg = PipelineMessage.model_validate(payload)
        start = time.perf_counter()
        with job_guard(task, jobs, msg.job_id, len(msg.images), stage_name):
            outcome = run(msg, jobs)
            if outcome.result is not None:
                jobs.finish(msg.job_id, outcome.result, len(msg.images))
                TASKS.labels(stage_name, "done").inc()
            elif outcome.forward is not None and next_task is not None:
                app.send_task(next_task, args=[outcome.forward.to_task()])
                TASKS.labels(stage_name, "forwarded").inc()
            elapsed = time.perf_counter() - start
            log.info("%s %s job: %.1f ms", stage_name, msg.kind, elapsed * 1000)
        TASK_DURATION.labels(stage_name).observe(time.perf_counter() - start)

    return app

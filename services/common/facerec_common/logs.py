"""Logging for every service: one JSON object a line, with the job id on every line that
concerns a job, so one job can be followed from the gateway through each worker.

The job id lives in a context variable: the gateway sets it when it creates or reads a
job, a worker while it runs a job's task. A filter copies it onto each record, so library
loggers (Celery, uvicorn) get it too.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

current_job: ContextVar[str | None] = ContextVar("current_job", default=None)

LogFormat = Literal["json", "text"]


class JobContext(logging.Filter):
    """Adds ``job_id`` and ``service`` to every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job.get()
        record.service = self._service
        return True


def configure_logging(service: str, level: str, fmt: LogFormat = "json") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(JobContext(service))
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{service}{name}{job_id}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(service)s [%(job_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = current_job.set(job_id)
    try:
        yield
    finally:
        current_job.reset(token)

"""Prometheus metrics of the gateway, and the middleware that records them and writes one
access log line per request (with the job id when the request made or read a job)."""

import logging
import time

from facerec_common.logs import current_job
from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("facerec.access")

REQUESTS = Counter(
    "facerec_http_requests",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
)
REQUEST_DURATION = Histogram(
    "facerec_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_LENGTH = Gauge("facerec_queue_length", "Tasks waiting in a queue list", ["queue"])


class MetricsMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware), so the job id an endpoint sets in the context
    is still visible here when the access line is written."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        token = current_job.set(None)

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            # Route templates, not raw paths: ids in paths would make a series per request.
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            REQUESTS.labels(template, method, str(status)).inc()
            REQUEST_DURATION.labels(template, method).observe(elapsed)
            log.info(
                "%s %s %d %.1f ms",
                method,
                scope["path"],
                status,
                elapsed * 1000,
                extra={"route": template, "status": status, "duration_ms": elapsed * 1000},
            )
            current_job.reset(token)

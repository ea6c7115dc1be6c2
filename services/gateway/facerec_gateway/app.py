"""The FastAPI application: wiring, lifespan, metrics, and the request-size guard."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from facerec_common.celery_app import make_celery
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facerec_gateway.archives import IMPORT_PATH as ARCHIVE_IMPORT_PATH
from facerec_gateway.batch_store import BatchStore
from facerec_gateway.bootstrap import bootstrap_admin_key
from facerec_gateway.callbacks import CallbackSender, WebhookSecrets
from facerec_gateway.contract import document_problems, link_created_resources
from facerec_gateway.deps import Services
from facerec_gateway.fields import MAX_JSON_BODY_BYTES
from facerec_gateway.http_metrics import MetricsMiddleware
from facerec_gateway.identity_store import IdentityStore
from facerec_gateway.job_store import JobStore, JobWaiter
from facerec_gateway.keys import KeyStore
from facerec_gateway.limits import RateLimiter
from facerec_gateway.problems import install_handlers, problem_response
from facerec_gateway.routes import (
    archives,
    audit,
    batches,
    collections,
    dead_letters,
    embeddings,
    health,
    images,
    jobs,
    keys,
    migrations,
    people,
    tenant,
    web,
    webhooks,
)
from facerec_gateway.settings import GatewaySettings

# Multipart framing and form fields on top of the images themselves.
_MULTIPART_OVERHEAD = 1024 * 1024


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A blocking pool: under a burst, a request waits for a free connection instead of
        # failing at redis-py's default cap of 100 ("Too many connections").
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_pool_timeout_s,
            health_check_interval=30,
            # A pooled connection to a Redis that has since restarted fails its first
            # command ("Connection closed by server"): a reconnect and a second try answer
            # it, instead of a 503 for a request made after Redis is back.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
        )
        client = aioredis.Redis(connection_pool=pool)
        celery = make_celery("facerec-gateway", settings.redis_url)
        waiter = JobWaiter(client)
        app.state.services = Services(
            settings=settings,
            redis=client,
            celery=celery,
            jobs=JobStore(client, celery, settings.job_ttl_s, settings.image_ttl_s),
            waiter=waiter,
            identities=IdentityStore(client),
            keys=KeyStore(client),
            limiter=RateLimiter(client),
            batches=BatchStore(client),
            webhooks=WebhookSecrets(client),
        )
        sender = CallbackSender(
            client,
            app.state.services.webhooks,
            settings.callback_attempts,
            settings.callback_backoff_s,
            settings.callback_timeout_s,
            settings.egress(),
        )
        await bootstrap_admin_key(app.state.services)
        background = [asyncio.create_task(waiter.listen()), asyncio.create_task(sender.run())]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await client.aclose()

    # /docs and /redoc with their scripts served from the package, not a CDN: the page
    # works on a host without internet access.
    app = FastAPIOffline(
        title="facerec",
        version="0.1.0",
        summary="Face detection, recognition and verification over HTTP",
        lifespan=lifespan,
    )
    install_handlers(app)
    max_body = settings.max_image_bytes * settings.max_images_per_request + _MULTIPART_OVERHEAD

    routers = (health, jobs, images, collections, batches, webhooks, people, keys, tenant, audit)
    for module in (*routers, dead_letters, embeddings, archives, migrations):
        app.include_router(module.router)
    app.include_router(web.router)  # the web page at /
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = generated()
        return link_created_resources(document_problems(schema)) if fresh else schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodySizeLimit, max_body=max_body)
    app.add_middleware(MetricsMiddleware)
    return app


class BodySizeLimit:
    """Refuses a body larger than the request may carry: image uploads (multipart) up to
    the images a request may hold, any other body (JSON) up to ``MAX_JSON_BODY_BYTES``.
    A declared Content-Length is checked before anything is read; a body sent without one
    (chunked) is counted as it arrives. Pure ASGI, so the endpoint's context (the job id)
    reaches the metrics middleware around it."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        multipart = headers.get("content-type", "").startswith("multipart/")
        # A gallery archive (import) is as large as an upload may be, not a JSON body.
        archive = scope["path"].endswith(ARCHIVE_IMPORT_PATH)
        limit = self.max_body if multipart or archive else MAX_JSON_BODY_BYTES
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            response = problem_response(
                "request-too-large",
                "Request too large",
                f"the request body has {length} bytes; the limit is {limit} bytes",
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                # An HTTPException passes FastAPI's body parsing unchanged (any other error
                # would become a 400), and the problem handlers answer it as a 413.
                raise HTTPException(413, f"the request body passed the limit of {limit} bytes")
            return message

        await self.app(scope, counted, send)

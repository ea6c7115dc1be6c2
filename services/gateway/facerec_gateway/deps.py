"""Typed dependencies for the routes."""

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Depends, Path, Request
from starlette.convertors import Convertor, register_url_convertor

from facerec_gateway.batch_store import BatchStore
from facerec_gateway.callbacks import WebhookSecrets
from facerec_gateway.identity_store import IdentityStore
from facerec_gateway.job_store import JobStore, JobWaiter
from facerec_gateway.keys import KeyStore
from facerec_gateway.limits import RateLimiter
from facerec_gateway.settings import GatewaySettings

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


@dataclass
class Services:
    settings: GatewaySettings
    redis: "aioredis.Redis"
    celery: Celery
    jobs: JobStore
    waiter: JobWaiter
    identities: IdentityStore
    keys: KeyStore
    limiter: RateLimiter
    batches: BatchStore
    webhooks: WebhookSecrets


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
CollectionPath = Annotated[
    str,
    Path(
        pattern=NAME_PATTERN,
        description="Gallery name: letters, digits, '_', '.', '-'; created on first use",
    ),
]
IdentityPath = Annotated[str, Path(max_length=64, pattern=r"^[0-9a-f-]{36}$")]
# Batches, people and faces are named by UUIDs too.
UuidPath = Annotated[str, Path(max_length=36, pattern=r"^[0-9a-f-]{36}$")]


class IdConvertor(Convertor[str]):
    """A path segment shaped like an id, for a route whose id sits where a sibling route has
    a word: with it, GET /people/cluster is no person but a method /cluster lacks (405)."""

    regex = "[0-9a-f-]{36}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", IdConvertor())

# Jobs are named by UUIDv7s (ids.sortable_id).
JobIdPath = UuidPath

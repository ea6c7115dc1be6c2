"""Liveness, readiness, the pipeline's state, and Prometheus metrics.

Readiness is about this process only: a gateway pod can do its own work (accept uploads,
answer job status, list galleries) while Redis answers, whatever the workers are doing. A
stage without a live consumer is reported by ``/v1/status``, never by turning the gateway
unready: that would take the whole API out of the Service during a worker rollout, a node
drain or a lost GPU node, and work sent meanwhile simply waits in its queue.
"""

from typing import Any

from facerec_common.heartbeat import parse_beats
from facerec_common.names import BATCH_PRIORITY, PRIORITY_SEPARATOR, Queue, workers_key
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from facerec_gateway.auth import ReadKey
from facerec_gateway.deps import ServicesDep
from facerec_gateway.http_metrics import QUEUE_LENGTH
from facerec_gateway.limits import queue_lengths
from facerec_gateway.problems import problem_response

router = APIRouter(tags=["health"])

# How soon a client (or a load balancer) should ask again while Redis does not answer.
NOT_READY_RETRY_AFTER_S = 5


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The gateway process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(services: ServicesDep) -> JSONResponse | dict[str, Any]:
    """Ready while Redis answers: one PING, whatever the size of the keyspace and whether
    or not any worker runs (``/v1/status`` reports those)."""
    try:
        await services.redis.ping()
    except RedisError as exc:
        response = problem_response(
            "not-ready",
            "Not ready",
            "Redis does not answer",
            status=503,
            checks={"redis": f"unreachable: {exc}"},
        )
        response.headers["Retry-After"] = str(NOT_READY_RETRY_AFTER_S)
        return response
    return {"status": "ready", "checks": {"redis": "ok"}}


class StageStatus(BaseModel):
    consumers: int = Field(description="workers of this stage whose heartbeat is live")
    waiting: int = Field(description="interactive tasks waiting in the stage's queue")
    waiting_batch: int = Field(description="batch tasks waiting in the stage's batch list")
    index_ok: bool | None = Field(
        None, description="index stage only: at least one indexer reaches its index"
    )


class PipelineStatus(BaseModel):
    workers_ready: bool = Field(
        description="every stage has a live consumer and the index answers; when false, "
        "new work is still accepted and waits in its queue"
    )
    stages: dict[str, StageStatus]


@router.get("/v1/status", response_model=PipelineStatus)
async def pipeline_status(services: ServicesDep, _key: ReadKey) -> PipelineStatus:
    """Live consumers and waiting tasks of each stage. Each stage's workers are one Redis
    hash (read in O(workers)) and each queue a list (LLEN), so this costs the same with a
    million unrelated keys in Redis as with none."""
    lengths = await queue_lengths(services.redis)
    async with services.redis.pipeline(transaction=False) as pipe:
        for queue in Queue:
            pipe.hgetall(workers_key(queue))
        hashes = await pipe.execute()
    stages: dict[str, StageStatus] = {}
    for queue, fields in zip(Queue, hashes, strict=True):
        live, _ = parse_beats(fields)
        stages[str(queue)] = StageStatus(
            consumers=len(live),
            waiting=lengths[str(queue)],
            waiting_batch=lengths[f"{queue}{PRIORITY_SEPARATOR}{BATCH_PRIORITY}"],
            index_ok=any(beat.get("index_ok") for beat in live.values())
            if queue is Queue.INDEX
            else None,
        )
    ready = all(stage.consumers > 0 for stage in stages.values()) and bool(
        stages[str(Queue.INDEX)].index_ok
    )
    return PipelineStatus(workers_ready=ready, stages=stages)


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics: requests, latencies, and the length of every queue list."""
    try:
        for queue, length in (await queue_lengths(services.redis)).items():
            QUEUE_LENGTH.labels(queue).set(length)
    except RedisError:
        pass  # the request metrics are still worth serving; /readyz reports Redis
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

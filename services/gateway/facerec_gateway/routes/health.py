from typing import Any

from facerec_common.heartbeat import parse_beats
from facerec_common.names import Queue, workers_key
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from facerec_gateway.deps import ServicesDep
from facerec_gateway.limits import queue_lengths
from facerec_gateway.metrics import QUEUE_LENGTH
from facerec_gateway.problems import problem_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The gateway process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(services: ServicesDep) -> JSONResponse | dict[str, Any]:
    """Redis answers, every queue has a live consumer, and the index answers."""
    checks: dict[str, Any] = {}
    try:
        await services.redis.ping()
        checks["redis"] = "ok"
        for queue in Queue:
            live, _ = parse_beats(await services.redis.hgetall(workers_key(queue)))
            beats = list(live.values())
            checks[f"queue:{queue}"] = "ok" if beats else "no live consumer"
            if queue is Queue.INDEX:
                ok = any(beat.get("index_ok") for beat in beats)
                checks["index"] = "ok" if ok else "not answering"
    except RedisError as exc:
        checks["redis"] = f"unreachable: {exc}"
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        return problem_response(
            "not-ready", "Not ready", f"failing: {', '.join(failing)}", status=503, checks=checks
        )
    return {"status": "ready", "checks": checks}


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics: requests, latencies, and the length of every queue list."""
    try:
        for queue, length in (await queue_lengths(services.redis)).items():
            QUEUE_LENGTH.labels(queue).set(length)
    except RedisError:
        pass  # the request metrics are still worth serving; /readyz reports Redis
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""Errors as RFC 9457 problem+json with a stable ``type`` per kind of error.

Only here do domain errors meet HTTP: each error code maps to one status.
"""

import functools
import logging
import re
from typing import Any

from facerec_common.errors import FaceRecError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from pydantic import BaseModel, ConfigDict
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

STATUS_BY_CODE: dict[str, int] = {
    "invalid-input": 422,
    "empty-image": 400,
    "malformed-body": 400,
    "image-undecodable": 422,
    "unsupported-image-type": 415,
    "image-too-large": 413,
    "request-too-large": 413,
    "too-many-pixels": 413,
    "no-face": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "rate-limited": 429,
    "overloaded": 429,
    "not-found": 404,
    "conflict": 409,
    "identity-not-found": 404,
    "collection-not-found": 404,
    "face-not-found": 404,
    "batch-cancelled": 409,
    "migration-conflict": 409,
    "method-not-allowed": 405,
    "invalid-request": 422,
    "unsupported-media-type": 415,
    "job-not-found": 404,
    "image-expired": 410,
    "index-unavailable": 503,
    "not-ready": 503,
    "service-unavailable": 503,
    "stage-error": 500,
    "worker-crashed": 500,
    "stage-timeout": 500,
    "model-file-mismatch": 500,
    "internal-error": 500,
}


class Problem(BaseModel):
    """An error as RFC 9457 problem+json; some carry more fields (``errors`` of an invalid
    request, ``job_id`` of a failed job)."""

    model_config = ConfigDict(extra="allow")

    type: str  # /problems/<code>
    code: str
    title: str
    status: int
    detail: str


def problem_type(code: str) -> str:
    return f"/problems/{code}"


def problem_body(code: str, title: str, detail: str, status: int) -> dict[str, Any]:
    # ``code`` is the last part of ``type``: the same word a failed job's ``error.code``
    # and a batch image's error carry, so one vocabulary serves every error.
    return {
        "type": problem_type(code),
        "code": code,
        "title": title,
        "status": status,
        "detail": detail,
    }


def stored_problem(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem a worker stored (code, title, detail) in the shape of an HTTP problem."""
    code = str(problem.get("code", "internal-error"))
    status = int(problem.get("status") or STATUS_BY_CODE.get(code, 500))
    body = problem_body(
        code, str(problem.get("title", "Error")), str(problem.get("detail", "")), status
    )
    return {**problem, **body}


def problem_response(
    code: str, title: str, detail: str, status: int | None = None, **extra: Any
) -> JSONResponse:
    status = status or STATUS_BY_CODE.get(code, 500)
    body = {**problem_body(code, title, detail, status), **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def problem_from_stored(problem: dict[str, Any], **extra: Any) -> JSONResponse:
    """A failed job's problem, as a worker stored it, answered over HTTP."""
    code = str(problem.get("code", "internal-error"))
    return problem_response(
        code, str(problem.get("title", "Error")), str(problem.get("detail", "")), **extra
    )


class GatewayError(FaceRecError):
    """An error only the HTTP layer knows; may carry response headers."""

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.headers = headers or {}


class Unauthorized(GatewayError):
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(GatewayError):
    code = "forbidden"
    title = "Forbidden"


class RateLimited(GatewayError):
    code = "rate-limited"
    title = "Too many requests"


class Overloaded(GatewayError):
    code = "overloaded"
    title = "Too much work waiting"


class Conflict(GatewayError):
    code = "conflict"
    title = "Conflict"


# Marks an operation that may raise Conflict; facerec_gateway.contract documents it (and
# every other error status) as problem+json.
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem}}


class JobNotFound(FaceRecError):
    code = "job-not-found"
    title = "Job not found"


# Seconds a client is told to wait when Redis cannot be reached or refuses writes.
OUTAGE_RETRY_AFTER_S = 5


def outage_response(exc: Exception) -> JSONResponse:
    """Redis (the queue and job store) unreachable, restarting or full: the request was not
    taken, nothing was half-done that a retry would duplicate, and the client should retry."""
    if isinstance(exc, ResponseError) and str(exc).startswith("OOM"):
        detail = "the job store is full and refuses new work; retry later"
    else:
        detail = "the job store (Redis) cannot be reached; retry later"
    log.warning("answering 503: %s: %s", type(exc).__name__, exc)
    response = problem_response("service-unavailable", "Service unavailable", detail)
    response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER_S)
    return response


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis being away or refusing writes, rather than a bug."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OperationalError):
        return True
    text = str(exc)
    # Full (maxmemory), still loading its data after a restart, or a replica promoted.
    return isinstance(exc, ResponseError) and text.startswith(("OOM", "LOADING", "READONLY"))


def _body_not_json(exc: RequestValidationError, content_type: str) -> bool:
    """FastAPI reads a body as JSON only when its content type says so; any other body
    fails as 'not an object', which hides the cause."""
    if "json" in content_type.lower() or content_type.lower().startswith("multipart/"):
        return False
    return any(
        tuple(e.get("loc", ())) == ("body",) and e.get("type") == "model_attributes_type"
        for e in exc.errors()
    )


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(FaceRecError)
    async def domain_error(_: Request, exc: FaceRecError) -> JSONResponse:
        response = problem_response(exc.code, exc.title, exc.detail)
        if isinstance(exc, GatewayError):
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        sent = request.headers.get("content-type", "")
        if _body_not_json(exc, sent):
            return problem_response(
                "unsupported-media-type",
                "Body is not JSON",
                "this route takes a JSON body: send it with 'Content-Type: application/json' "
                f"(the request had {sent or 'no content type'!r})",
            )
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        return problem_response(
            "invalid-request", "Invalid request", detail, status=422, errors=errors
        )

    @app.exception_handler(RedisError)
    @app.exception_handler(OperationalError)
    async def redis_error(request: Request, exc: Exception) -> JSONResponse:
        if is_outage(exc):
            return outage_response(exc)
        return await unexpected_error(request, exc)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        if is_outage(exc):  # wrapped, e.g. in an exception group from a task group
            return outage_response(exc)
        # A bug, not a refusal: logged with its traceback, answered as problem+json.
        log.exception("unhandled error", exc_info=exc)
        return problem_response("internal-error", "Internal error", "see the gateway log")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_PROBLEMS.get(exc.status_code, ("http-error", str(exc.detail)))
        detail = str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
            detail = f"{request.method} is not allowed here; use {headers['Allow']}"
        response = problem_response(code, title, detail, status=exc.status_code)
        response.headers.update(headers)
        return response


def allowed_methods(request: Request) -> list[str]:
    """Every method the API documents at the request's path (RFC 9110's ``Allow``), read
    from the OpenAPI document: a path may have several routes, and Starlette names only the
    methods of the first one that matched."""
    matching = [
        (template.count("{"), template, operations)
        for template, operations in request.app.openapi().get("paths", {}).items()
        if _path_pattern(template).fullmatch(request.url.path)
    ]
    if not matching:
        return []
    # A literal segment wins over a parameter, as in routing: /people/cluster is not
    # /people/{person_id}.
    fewest = min(params for params, _, _ in matching)
    methods = {method.upper() for params, _, ops in matching if params == fewest for method in ops}
    return sorted(methods)


@functools.cache
def _path_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


_HTTP_PROBLEMS: dict[int, tuple[str, str]] = {
    400: ("malformed-body", "Malformed body"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("request-too-large", "Request too large"),
}

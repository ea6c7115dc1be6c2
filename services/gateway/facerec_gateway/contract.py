"""Every answer an operation can give, in the OpenAPI: each refusal and failure as a status
of its own, with the problem+json schema and the problem types behind it.

A status is declared where the operation can produce it, read from what the operation
takes: a key (401, 403, 429), path parameters (404), parameters or a body (422), a body
(413, 415; uploads also 400), a job it answers (the statuses a failed job carries). Every
operation may meet Redis away (503) or a bug (500). A route declares anything else itself
(409 where it refuses a conflicting change). No ``4XX`` ranges: a client generated from the
document knows each status it must handle.
"""

from typing import Any

from facerec_gateway.problems import PROBLEM_JSON, STATUS_BY_CODE, Problem

PROBLEM_REF = "#/components/schemas/Problem"

_TITLES: dict[int, str] = {
    400: "Bad request",
    401: "No API key, or an unknown, revoked or expired one",
    403: "The key lacks the scope this operation needs",
    404: "No such resource in the caller's tenant",
    409: "The change conflicts with the resource's state",
    410: "The job's image expired before a worker read it",
    413: "The request or an image is too large",
    415: "The body or an image is of a type this operation does not take",
    422: "A parameter or the body is invalid, or the job's input could not be used",
    429: "Too many requests for this key, or too much work waiting",
    500: "The job or the request failed",
    503: "The job store (Redis) or the index cannot be reached; retry after Retry-After",
}

# The statuses a failed job answers with when the request waited for it (its stored
# problem's status), besides 500 and 503 that every operation declares.
_JOB_FAILURES = frozenset({404, 410, 413, 415, 422})
_ALWAYS = frozenset({500, 503})
_KEYED = frozenset({401, 403, 429})


def problem_codes(status: int) -> list[str]:
    return sorted(code for code, code_status in STATUS_BY_CODE.items() if code_status == status)


def problem_response(status: int) -> dict[str, Any]:
    codes = ", ".join(problem_codes(status)) or "see type and detail"
    response: dict[str, Any] = {
        "description": f"{_TITLES.get(status, 'Refused')} (problem codes: {codes})",
        "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"description": "The scheme to use", "schema": {"type": "string"}}
        }
    return response


def error_statuses(operation: dict[str, Any]) -> set[int]:
    """The statuses other than success that ``operation`` (an OpenAPI operation) may answer."""
    statuses = set(_ALWAYS)
    parameters = operation.get("parameters", [])
    body = operation.get("requestBody")
    if operation.get("security"):
        statuses |= _KEYED
    if any(p.get("in") == "path" for p in parameters):
        statuses.add(404)
    if parameters or body:
        statuses.add(422)
    if body:
        statuses |= {400, 413, 415}  # a body that cannot be parsed, or an empty image
    if "202" in operation.get("responses", {}):
        statuses |= _JOB_FAILURES
    return statuses


def _pointer(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _has_id(schema: dict[str, Any], response: dict[str, Any]) -> bool:
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    model = schema["components"]["schemas"].get(str(ref).rsplit("/", 1)[-1], {})
    return "id" in model.get("properties", {})


def link_created_resources(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI links from each operation that creates a resource (POST, 201, a body with
    ``id``) to every operation under it (``<path>/{x_id}...``): a client, or a stateful
    tester, learns that the new id goes there."""
    paths = schema.get("paths", {})
    for path, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None or not _has_id(schema, created):
            continue
        links: dict[str, Any] = {}
        for target, target_operations in paths.items():
            rest = target.removeprefix(path + "/")
            if rest == target or not rest.startswith("{"):
                continue
            id_param = rest[1 : rest.index("}")]
            for method, operation in target_operations.items():
                names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
                if any(name != id_param and f"{{{name}}}" not in path for name in names):
                    continue  # it needs an id the creating request does not know
                parameters = {
                    name: "$response.body#/id" if name == id_param else f"$request.path.{name}"
                    for name in names
                }
                links[operation["operationId"]] = {
                    "operationRef": _pointer(target, method),
                    "parameters": parameters,
                }
        if links:
            created["links"] = links
    return schema


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (FastAPI's OpenAPI) with every operation's error statuses declared as
    problem+json."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            # What the operation takes, and what its route declared itself (409), each as
            # problem+json; FastAPI's own 422 (HTTPValidationError) is not what it answers.
            declared = {int(status) for status in responses if int(status) >= 400}
            for status in sorted(error_statuses(operation) | declared):
                responses[str(status)] = problem_response(status)
    return schema

"""Schema-driven fuzzing of the gateway: valid and malformed requests generated from its own
OpenAPI schema. Nothing may answer 5xx, every refusal must be problem+json, every answer
must match the schema documented for its status and content type, and every worker must
still be alive afterwards."""

from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from facerec_gateway.app import create_app
from facerec_gateway.settings import GatewaySettings
from helpers import cli
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance
from schemathesis.specs.openapi.checks import response_schema_conformance
from stack import Stack

# The schema is the app's own; no server is needed to read it.
full_schema = schemathesis.openapi.from_dict(create_app(GatewaySettings()).openapi())
full_schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=120
)
# Erasing the whole tenant would only lock the fuzzer out; it has its own test.
schema = full_schema.exclude(path="/v1/tenant")
SENT: list[int] = []  # status of every request the fuzzer sent


@pytest.fixture(scope="module")
def fuzz_key(stack: Stack) -> str:
    """A key of its own tenant with every scope and no practical rate limit."""
    created = cli(
        stack,
        "create",
        "--tenant",
        "fuzz",
        "--scopes",
        "read,write,admin",
        "--rate-limit",
        "1000000",
    )
    return str(created["key"])


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_gets_a_server_error(
    case: schemathesis.Case[Any], stack: Stack, fuzz_key: str
) -> None:
    headers: dict[str, Any] = dict(case.headers or {})
    headers["X-API-Key"] = fuzz_key
    if case.query:
        # Waiting is legal but slows the run; the fuzzer is after the answers, not the waits.
        case.query.pop("wait", None)
    response = case.call(base_url=stack.url, headers=headers, timeout=60)
    SENT.append(response.status_code)
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        [content_type] = response.headers["content-type"]  # schemathesis lists header values
        assert content_type.startswith("application/problem+json"), response.text
        body = response.json()
        assert body["status"] == response.status_code and body["type"].startswith("/problems/")
    # The body a client generated from the schema would expect, success or problem.
    case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])


def test_every_worker_is_alive_after_the_fuzzing(stack: Stack) -> None:
    assert len(SENT) >= 2000, f"only {len(SENT)} requests were generated"
    print(f"fuzzing sent {len(SENT)} requests: {sorted(Counter(SENT).items())}")
    assert all(stack.alive().values()), stack.alive()
    assert httpx.get(f"{stack.url}/readyz", timeout=10).status_code == 200

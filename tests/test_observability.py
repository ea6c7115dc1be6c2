"""Metrics on the gateway and every worker, and JSON logs that follow one job through
every service, asserted against the running stack."""

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import images
from prometheus_client.parser import text_string_to_metric_families
from stack import Stack

JPEG = "image/jpeg"


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics page, keyed by name and labels."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def recognize_once(api: httpx.Client) -> str:
    collection = f"metrics-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/v1/collections/{collection}").status_code == 201
    response = api.post(
        f"/v1/collections/{collection}/recognize",
        params={"wait": 30},
        files={"image": ("group.jpg", images.group_photo(), JPEG)},
    )
    assert response.status_code == 200, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def test_the_gateway_counts_requests_by_route_and_reports_queue_lengths(
    stack: Stack, api: httpx.Client
) -> None:
    route = "/v1/collections/{collection}/recognize"
    before = samples(f"{stack.url}/metrics")
    recognize_once(api)
    missing_job = "00000000-0000-7000-8000-000000000000"
    assert api.get(f"/v1/jobs/{missing_job}").status_code == 404
    after = samples(f"{stack.url}/metrics")

    counted = "facerec_http_requests_total"
    assert value(after, counted, route=route, method="POST", status="200") == (
        value(before, counted, route=route, method="POST", status="200") + 1
    )
    assert value(after, counted, route="/v1/jobs/{job_id}", method="GET", status="404") >= 1
    assert value(
        after, "facerec_http_request_duration_seconds_count", route=route, method="POST"
    ) > value(before, "facerec_http_request_duration_seconds_count", route=route, method="POST")
    for queue in ("detect", "embed", "index", "detect:9", "embed:9", "index:9"):
        assert ("facerec_queue_length", frozenset({("queue", queue)})) in after, queue
    # Raw paths never become labels: one series per route template, not per job id.
    assert not any(missing_job in str(labels) for _, labels in after)


def test_every_worker_reports_its_stage_its_model_and_its_index(
    stack: Stack, api: httpx.Client
) -> None:
    before = {name: samples(url) for name, url in stack.metrics_urls.items()}
    recognize_once(api)
    after = {name: samples(url) for name, url in stack.metrics_urls.items()}

    def grew(worker: str, name: str, **labels: str) -> bool:
        return value(after[worker], name, **labels) > value(before[worker], name, **labels)

    assert grew("facerec_detector", "facerec_task_duration_seconds_count", stage="detect")
    assert grew("facerec_detector", "facerec_tasks_total", stage="detect", outcome="forwarded")
    assert grew("facerec_detector", "facerec_model_inference_seconds_count", model="detection")
    assert grew("facerec_detector", "facerec_faces_per_image_count")
    # The group photo has six faces: they all land above the 5-face bucket.
    faces_above_five = value(after["facerec_detector"], "facerec_faces_per_image_count") - value(
        after["facerec_detector"], "facerec_faces_per_image_bucket", le="5.0"
    )
    assert faces_above_five >= 1
    assert grew("facerec_embedder", "facerec_task_duration_seconds_count", stage="embed")
    assert grew("facerec_embedder", "facerec_model_inference_seconds_count", model="recognition")
    assert grew("facerec_indexer", "facerec_tasks_total", stage="index", outcome="done")
    assert grew("facerec_indexer", "facerec_index_search_seconds_count")


def json_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def eventually(check: Callable[[], bool], timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_one_job_can_be_followed_through_every_service_in_json_logs(
    stack: Stack, api: httpx.Client
) -> None:
    job_id = recognize_once(api)

    def services_that_logged_it() -> set[str]:
        found = set()
        for module in (
            "facerec_gateway",
            "facerec_detector",
            "facerec_embedder",
            "facerec_indexer",
        ):
            for line in json_lines(stack.logs / f"{module}.log"):
                if line.get("job_id") == job_id:
                    assert {"time", "level", "service", "logger", "message"} <= line.keys()
                    found.add(str(line["service"]))
        return found

    assert eventually(
        lambda: services_that_logged_it() == {"gateway", "detector", "embedder", "indexer"}
    ), services_that_logged_it()

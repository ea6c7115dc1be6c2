"""API keys, scopes, tenant isolation, erasure, rate and queue limits."""

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import images
import pytest
import redis
from facerec_common.names import api_key_key
from helpers import assert_problem, cli, client_for, done, enroll, new_identity, recognize, upload
from stack import Stack, free_port, wait_until


@pytest.fixture
def tenant_a(stack: Stack) -> Iterator[httpx.Client]:
    key = cli(stack, "create", "--tenant", "tenant-a", "--scopes", "read,write,admin")["key"]
    with client_for(stack, str(key)) as client:
        yield client


@pytest.fixture
def tenant_b(stack: Stack) -> Iterator[httpx.Client]:
    key = cli(stack, "create", "--tenant", "tenant-b", "--scopes", "read,write,admin")["key"]
    with client_for(stack, str(key)) as client:
        yield client


def test_every_v1_route_wants_a_key_and_health_does_not(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        missing = anonymous.get("/v1/collections")
        assert_problem(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        for headers in ({"X-API-Key": "frk_0123456789_" + "x" * 43}, {"X-API-Key": "nonsense"}):
            assert_problem(anonymous.get("/v1/collections", headers=headers), 401, "unauthorized")
        ok = anonymous.get(
            "/v1/collections", headers={"Authorization": f"Bearer {stack.admin_key}"}
        )
        assert ok.status_code == 200


def test_scopes_limit_what_a_key_may_do(stack: Stack, api: httpx.Client) -> None:
    reader = api.post("/v1/keys", json={"name": "reader", "scopes": ["read"]}).json()["key"]
    writer = api.post("/v1/keys", json={"name": "writer", "scopes": ["write"]}).json()["key"]
    with client_for(stack, reader) as read_only, client_for(stack, writer) as write_only:
        assert read_only.get("/v1/collections").status_code == 200
        forbidden = read_only.post("/v1/collections/s/identities", json={"name": "x"})
        assert_problem(forbidden, 403, "forbidden")
        assert_problem(read_only.get("/v1/keys"), 403, "forbidden")
        assert (
            write_only.post("/v1/collections/s/identities", json={"name": "x"}).status_code == 201
        )
        assert_problem(
            write_only.post("/v1/detect", files=upload(images.portrait())), 403, "forbidden"
        )
    other_tenant = api.post("/v1/keys", json={"name": "x", "scopes": ["read"], "tenant": "other"})
    assert_problem(other_tenant, 403, "forbidden")


def test_keys_are_stored_as_digests_listed_by_prefix_and_revoked(
    stack: Stack, api: httpx.Client
) -> None:
    created = api.post("/v1/keys", json={"name": "phone app", "scopes": ["read"]})
    assert created.status_code == 201
    key, prefix = created.json()["key"], created.json()["prefix"]
    assert key.startswith(prefix + "_")

    stored = redis.Redis.from_url(stack.redis_url).hgetall(api_key_key(prefix.removeprefix("frk_")))
    assert stored[b"digest"] == hashlib.sha256(key.encode()).hexdigest().encode()
    assert all(key.encode() not in value for value in stored.values())

    listed = api.get("/v1/keys", params={"prefix": prefix}).json()["keys"]
    assert [k["prefix"] for k in listed] == [prefix]
    assert "key" not in listed[0] and "digest" not in listed[0]

    with client_for(stack, key) as phone:
        assert phone.get("/v1/collections").status_code == 200
        assert api.delete(f"/v1/keys/{prefix}").json() == {"prefix": prefix, "revoked": True}
        assert_problem(phone.get("/v1/collections"), 401, "unauthorized")
    assert_problem(api.delete(f"/v1/keys/{prefix}"), 404, "not-found")


def test_two_tenants_with_the_same_names_never_see_each_other(
    tenant_a: httpx.Client, tenant_b: httpx.Client
) -> None:
    yao_a = new_identity(tenant_a, "staff", "Yao Ming")
    yao_b = new_identity(tenant_b, "staff", "Yao Ming")
    enroll(tenant_a, "staff", yao_a, images.portrait())
    group = images.group_photo()
    enroll(tenant_b, "staff", yao_b, images.variant(group, box=(380, 190, 660, 490)))

    # Recognise: B's gallery has only B's "Yao Ming", whose face is someone else.
    face_b = recognize(tenant_b, "staff", images.portrait())["faces"][0]
    assert face_b["identity"] is None
    assert [c["id"] for c in face_b["candidates"]] == [yao_b]
    assert recognize(tenant_a, "staff", images.portrait())["faces"][0]["identity"]["id"] == yao_a

    # List, read, verify against, delete: A's identity does not exist for B.
    listed = tenant_b.get("/v1/collections/staff/identities").json()["identities"]
    assert [i["id"] for i in listed] == [yao_b]
    assert_problem(
        tenant_b.get(f"/v1/collections/staff/identities/{yao_a}"), 404, "identity-not-found"
    )
    verify = tenant_b.post(
        f"/v1/collections/staff/identities/{yao_a}/verify",
        params={"wait": 30},
        files=upload(images.portrait()),
    )
    assert_problem(verify, 404, "identity-not-found")
    assert_problem(
        tenant_b.delete(f"/v1/collections/staff/identities/{yao_a}"), 404, "identity-not-found"
    )
    assert tenant_a.get(f"/v1/collections/staff/identities/{yao_a}").json()["face_count"] == 1
    same = done(
        tenant_a.post(
            f"/v1/collections/staff/identities/{yao_a}/verify",
            params={"wait": 30},
            files=upload(images.variant(images.portrait(), flip=True)),
        )
    )
    assert same["same"] is True and same["identity"]["id"] == yao_a

    # Jobs: another tenant's job id answers 404.
    job = tenant_a.post("/v1/detect", files=upload(images.portrait())).json()["job_id"]
    assert_problem(tenant_b.get(f"/v1/jobs/{job}"), 404, "job-not-found")
    assert tenant_a.get(f"/v1/jobs/{job}", params={"wait": 30}).json()["status"] == "done"


def test_erasing_a_tenant_removes_every_face_and_key(
    tenant_a: httpx.Client, tenant_b: httpx.Client
) -> None:
    person = new_identity(tenant_b, "erase-me", "Yao Ming")
    enroll(
        tenant_b,
        "erase-me",
        person,
        images.portrait(),
        images.variant(images.portrait(), flip=True),
    )
    other = new_identity(tenant_b, "also-me", "Yao Ming")
    enroll(tenant_b, "also-me", other, images.portrait())
    keep = new_identity(tenant_a, "keep", "Yao Ming")
    enroll(tenant_a, "keep", keep, images.portrait())

    erased = tenant_b.delete("/v1/tenant")
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["deleted_faces"] >= 3 and body["remaining_faces"] == 0
    assert body["deleted_collections"] >= 2 and body["revoked_keys"] >= 1
    assert_problem(tenant_b.get("/v1/collections"), 401, "unauthorized")
    assert tenant_a.get(f"/v1/collections/keep/identities/{keep}").json()["face_count"] == 1


def test_a_key_over_its_rate_gets_429_with_retry_after(stack: Stack, api: httpx.Client) -> None:
    key = api.post(
        "/v1/keys", json={"name": "slow", "scopes": ["read"], "rate_limit_per_minute": 3}
    ).json()["key"]
    with client_for(stack, key) as slow:
        assert [slow.get("/v1/collections").status_code for _ in range(3)] == [200, 200, 200]
        limited = slow.get("/v1/collections")
    assert_problem(limited, 429, "rate-limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 61


def test_a_full_queue_turns_new_images_away_with_429(tmp_path: Path, redis_url: str) -> None:
    """A gateway whose Redis database has no workers: its detect queue only grows."""
    from facerec_gateway.keys import new_key

    key, port = new_key(), free_port()
    env = {
        **os.environ,
        "FACEREC_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/1",
        "FACEREC_GATEWAY_PORT": str(port),
        "FACEREC_GATEWAY_BOOTSTRAP_ADMIN_KEY": key,
        "FACEREC_GATEWAY_MAX_QUEUE_LENGTH": "2",
        "FACEREC_GATEWAY_RETRY_AFTER_S": "7",
    }
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "facerec_gateway"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, "second gateway")
        with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": key}) as client:
            accepted = [
                client.post("/v1/detect", files=upload(images.portrait())) for _ in range(3)
            ]
            assert [r.status_code for r in accepted] == [202, 202, 202]
            refused = client.post("/v1/detect", files=upload(images.portrait()))
        assert_problem(refused, 429, "overloaded")
        assert refused.headers["retry-after"] == "7"
    finally:
        proc.terminate()
        proc.wait(10)
        redis.Redis.from_url(env["FACEREC_REDIS_URL"]).flushdb()


def test_exif_orientation_is_applied_before_detection(api: httpx.Client) -> None:
    """A phone photo stored sideways with an EXIF 'rotate' tag is found upright."""
    import io

    from PIL import Image

    upright = Image.open(io.BytesIO(images.portrait()))
    sideways = upright.rotate(90, expand=True)  # what the sensor stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = io.BytesIO()
    sideways.save(out, format="JPEG", exif=exif, quality=92)
    result = done(api.post("/v1/detect", params={"wait": 30}, files=upload(out.getvalue())))
    assert (result["image"]["width"], result["image"]["height"]) == upright.size
    assert len(result["faces"]) == 1

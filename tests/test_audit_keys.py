"""Keys that last and end (revocation across restarts, expiry, last use, rotation) and the
audit trail of admin and erasure actions, against real processes."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import images
import pytest
import redis
from facerec_common.names import api_key_key
from facerec_gateway.keys import new_key
from helpers import (
    assert_problem,
    cli,
    client_for,
    enroll,
    make_gallery,
    new_batch,
    new_identity,
    unique,
)
from stack import Stack, free_port, redis_server, wait_until


@dataclass
class Gateway:
    """One gateway process, alone on its own Redis, that a test stops and starts again."""

    url: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "facerec_gateway"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, "the gateway")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"X-API-Key": key})


@contextmanager
def lone_gateway(workdir: Path, bootstrap_key: str) -> Iterator[Gateway]:
    with redis_server(workdir / "redis") as url:
        port = free_port()
        env = {
            **os.environ,
            "FACEREC_REDIS_URL": url,
            "FACEREC_GATEWAY_PORT": str(port),
            "FACEREC_GATEWAY_BOOTSTRAP_ADMIN_KEY": bootstrap_key,
            "FACEREC_LOG_FORMAT": "text",
        }
        gateway = Gateway(f"http://127.0.0.1:{port}", env, workdir / "gateway.log")
        gateway.start()
        try:
            yield gateway
        finally:
            gateway.stop()


def trail(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every record of the caller's trail, newest first, page by page."""
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/audit", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        records += page["records"]
        cursor = page["next_cursor"]
        if cursor is None:
            return records


def actions(records: list[dict[str, Any]]) -> list[str]:
    return [r["action"] for r in records]


def admin_of(stack: Stack, tenant: str) -> httpx.Client:
    key = cli(stack, "create", "--tenant", tenant, "--scopes", "read,write,admin")["key"]
    return client_for(stack, str(key))


def test_a_revoked_bootstrap_key_stays_revoked_after_a_restart(tmp_path: Path) -> None:
    bootstrap = new_key()
    prefix = bootstrap[:14]
    with lone_gateway(tmp_path, bootstrap) as gateway:
        assert (
            f"bootstrap admin key {prefix} created for tenant 'default'" in gateway.log.read_text()
        )
        with gateway.client(bootstrap) as first:
            created = first.post("/v1/keys", json={"name": "ops", "scopes": ["admin"]})
            assert created.status_code == 201, created.text
            ops_key = created.json()["key"]

        gateway.restart()  # still valid: kept, not made again
        assert f"bootstrap admin key {prefix} of tenant 'default' already present" in (
            gateway.log.read_text()
        )
        with gateway.client(bootstrap) as first, gateway.client(ops_key) as ops:
            assert first.get("/v1/keys").status_code == 200
            assert ops.delete(f"/v1/keys/{prefix}").json() == {"prefix": prefix, "revoked": True}
            assert_problem(first.get("/v1/keys"), 401, "unauthorized")

        gateway.restart()
        log = gateway.log.read_text()
        assert f"bootstrap admin key {prefix} of tenant 'default' was revoked at" in log
        assert "not re-created" in log
        with gateway.client(bootstrap) as first, gateway.client(ops_key) as ops:
            assert_problem(first.get("/v1/keys"), 401, "unauthorized")
            assert prefix not in [k["prefix"] for k in ops.get("/v1/keys").json()["keys"]]
            # The trail outlived both restarts: who made and revoked what, oldest last.
            records = trail(ops)
        assert [(r["action"], r["actor"], r["target"]["key_prefix"]) for r in records] == [
            ("key.revoked", ops_key[:14], prefix),
            ("key.created", prefix, ops_key[:14]),
            ("key.created", "bootstrap", prefix),
        ]
        assert all(r["outcome"] == "ok" for r in records)


def test_the_bootstrap_key_is_not_made_for_a_tenant_that_has_an_admin_key(
    tmp_path: Path,
) -> None:
    bootstrap = new_key()
    with lone_gateway(tmp_path, bootstrap) as gateway:
        with gateway.client(bootstrap) as first:
            other = first.post("/v1/keys", json={"name": "ops", "scopes": ["admin"]}).json()
        # A new bootstrap key for the same tenant: the tenant has admin keys already.
        replacement = new_key()
        gateway.env["FACEREC_GATEWAY_BOOTSTRAP_ADMIN_KEY"] = replacement
        gateway.restart()
        assert (
            f"tenant 'default' has an admin key already; bootstrap admin key "
            f"{replacement[:14]} not created" in gateway.log.read_text()
        )
        with gateway.client(replacement) as refused, gateway.client(other["key"]) as ops:
            assert_problem(refused.get("/v1/keys"), 401, "unauthorized")
            assert ops.get("/v1/keys").status_code == 200


def test_the_trail_pages_newest_first_and_refuses_a_bad_cursor(stack: Stack) -> None:
    with admin_of(stack, unique("pages")) as admin:
        made = [
            admin.post("/v1/keys", json={"name": f"k{i}", "scopes": ["read"]}).json()["prefix"]
            for i in range(5)
        ]
        everything = admin.get("/v1/audit").json()
        assert everything["next_cursor"] is None
        paged = trail(admin, limit=2)
        assert paged == everything["records"]
        # Five keys made by the admin, after the admin's own key made by the operator.
        assert [r["target"]["key_prefix"] for r in paged[:5]] == made[::-1]
        assert [r["actor"] for r in paged] == [admin.headers["x-api-key"][:14]] * 5 + ["operator"]
        assert [r["id"] for r in paged] == sorted(
            (r["id"] for r in paged), key=lambda i: tuple(map(int, i.split("-"))), reverse=True
        )
        first = admin.get("/v1/audit", params={"limit": 2}).json()
        assert len(first["records"]) == 2 and first["next_cursor"] == first["records"][1]["id"]

        # Not a stream id at all, or one Redis would refuse: 422, never a Redis error.
        bad_ids = ("abc", "1-2-3", "-1", "1-", "1-2 ", "0x1-0")
        for bad in (*bad_ids, "99999999999999999999-0", "0-18446744073709551616"):
            assert_problem(admin.get("/v1/audit", params={"cursor": bad}), 422, "invalid-request")
        # The first possible id: nothing is older.
        oldest = admin.get("/v1/audit", params={"cursor": "0-0"})
        assert oldest.status_code == 200 and oldest.json()["records"] == [], oldest.text
        assert_problem(admin.get("/v1/audit", params={"limit": 0}), 422, "invalid-request")
        reader = admin.post("/v1/keys", json={"name": "r", "scopes": ["read", "write"]}).json()
    with client_for(stack, reader["key"]) as not_admin:
        assert_problem(not_admin.get("/v1/audit"), 403, "forbidden")


def test_a_tenant_reads_only_its_own_trail(stack: Stack) -> None:
    tenant_a, tenant_b = unique("audit-a"), unique("audit-b")
    with admin_of(stack, tenant_a) as a, admin_of(stack, tenant_b) as b:
        a_key = a.post("/v1/keys", json={"name": "a's", "scopes": ["read"]}).json()["prefix"]
        make_gallery(a, "secret-gallery")
        assert a.patch("/v1/collections/secret-gallery", json={"threshold": 0.5}).status_code == 200
        a_records = trail(a)
        assert {"key.created", "collection.threshold_changed"} <= set(actions(a_records))

        b_records = trail(b)
        assert actions(b_records) == ["key.created"]  # its own admin key, by the operator
        seen = json.dumps(b_records)
        assert a_key not in seen and "secret-gallery" not in seen
        assert b_records[0]["target"]["key_prefix"] == b.headers["x-api-key"][:14]
        # A's record ids as B's cursor read B's own (older) records, never A's.
        for record in a_records:
            page = b.get("/v1/audit", params={"cursor": record["id"]}).json()["records"]
            assert {r["id"] for r in page} <= {r["id"] for r in b_records}


def test_keys_expire_and_show_when_they_were_last_used(stack: Stack, api: httpx.Client) -> None:
    made = api.post("/v1/keys", json={"name": "short", "scopes": ["read"], "expires_in_s": 5})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["expires_at"] == pytest.approx(body["created_at"] + 5, abs=1)
    assert body["last_used_at"] is None
    prefix = body["prefix"]

    def listed() -> dict[str, Any]:
        [record] = api.get("/v1/keys", params={"prefix": prefix}).json()["keys"]
        return dict(record)

    assert listed()["last_used_at"] is None
    store = redis.Redis.from_url(stack.redis_url)
    with client_for(stack, body["key"]) as short:
        assert short.get("/v1/collections").status_code == 200
        used = listed()["last_used_at"]
        assert used is not None and time.time() - used < 10
        # Written at most once a minute, not on every request.
        assert short.get("/v1/collections").status_code == 200
        assert listed()["last_used_at"] == used
        stored = store.hget(api_key_key(prefix.removeprefix("frk_")), "last_used_at")
        assert stored is not None and float(stored) == used

        wait_until(lambda: time.time() > body["expires_at"] + 0.5, 10, "the key's expiry")
        expired = assert_problem(short.get("/v1/collections"), 401, "unauthorized")
    assert "expired" in expired["detail"]
    # Still listed, with its expiry, until an admin revokes it.
    assert listed()["expires_at"] == body["expires_at"]
    assert api.delete(f"/v1/keys/{prefix}").status_code == 200
    assert_problem(
        api.post("/v1/keys", json={"name": "x", "scopes": ["read"], "expires_in_s": 0}),
        422,
        "invalid-request",
    )


def test_facerec_keys_rotates_a_key(stack: Stack) -> None:
    tenant = unique("rotate")
    old = cli(
        stack,
        "create",
        "--tenant",
        tenant,
        "--scopes",
        "read,write",
        "--name",
        "scanner",
        "--rate-limit",
        "77",
        "--expires-in-days",
        "30",
    )
    assert old["expires_at"] == pytest.approx(float(str(old["created_at"])) + 30 * 86400, abs=5)
    new = cli(stack, "rotate", "--tenant", tenant, str(old["prefix"]))
    assert new["replaces"] == old["prefix"] and new["prefix"] != old["prefix"]
    for field in ("tenant", "scopes", "name", "rate_limit_per_minute"):
        assert new[field] == old[field], field
    # The same lifetime, counted from the rotation.
    assert new["expires_at"] == pytest.approx(float(str(new["created_at"])) + 30 * 86400, abs=5)
    with client_for(stack, str(old["key"])) as stale, client_for(stack, str(new["key"])) as fresh:
        assert_problem(stale.get("/v1/collections"), 401, "unauthorized")
        assert fresh.get("/v1/collections").status_code == 200
    with admin_of(stack, tenant) as admin:
        records = trail(admin)
        listed = [k["prefix"] for k in admin.get("/v1/keys").json()["keys"]]
    assert old["prefix"] not in listed and new["prefix"] in listed
    assert [(r["action"], r["actor"], r["target"]["key_prefix"]) for r in records[1:]] == [
        ("key.revoked", "operator", old["prefix"]),
        ("key.created", "operator", new["prefix"]),
        ("key.created", "operator", old["prefix"]),
    ]
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "facerec_gateway.cli",
            "rotate",
            "--tenant",
            tenant,
            "frk_nokey00000",
        ],
        env={**os.environ, "FACEREC_REDIS_URL": stack.redis_url},
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "no key" in missing.stderr


def test_every_admin_and_erasure_action_is_audited_and_outlives_the_tenant(
    stack: Stack,
) -> None:
    tenant = unique("audited")
    gallery = "audited"
    with admin_of(stack, tenant) as admin:
        actor = admin.headers["x-api-key"][:14]
        spare = admin.post("/v1/keys", json={"name": "spare", "scopes": ["read"]}).json()["prefix"]
        assert admin.delete(f"/v1/keys/{spare}").status_code == 200
        make_gallery(admin, gallery)
        assert admin.patch(f"/v1/collections/{gallery}", json={"threshold": 0.4}).status_code == 200
        settings = {"quality_filter": "low", "keep_crops": False}
        assert admin.patch(f"/v1/collections/{gallery}", json=settings).status_code == 200
        person = new_identity(admin, gallery, "Ada Lovelace")
        enrolled = enroll(
            admin, gallery, person, images.portrait(), images.variant(images.portrait(), flip=True)
        )
        face = enrolled["faces"][0]["face_id"]
        url = f"/v1/collections/{gallery}/identities/{person}"
        assert admin.delete(f"{url}/faces/{face}").json()["remaining_faces"] == 0
        assert admin.delete(url).json()["remaining_faces"] == 0
        closed, cancelled, deleted = (new_batch(admin, gallery) for _ in range(3))
        batches = f"/v1/collections/{gallery}/batches"
        assert admin.post(f"{batches}/{closed}/close").status_code == 200
        assert admin.post(f"{batches}/{cancelled}/cancel").status_code == 200
        assert admin.delete(f"{batches}/{deleted}").status_code == 200
        assert admin.post("/v1/webhook-secret").status_code == 200
        make_gallery(admin, "second")
        assert admin.delete("/v1/collections/second").json()["remaining_faces"] == 0
        before_erasure = trail(admin)
        erased = admin.delete("/v1/tenant")
        assert erased.status_code == 200, erased.text
        assert_problem(admin.get("/v1/audit"), 401, "unauthorized")

    # The tenant is gone, its trail is not: a new admin of the same name reads it.
    with admin_of(stack, tenant) as successor:
        records = trail(successor)
    assert records[2:] == before_erasure
    assert (records[0]["action"], records[0]["actor"]) == ("key.created", "operator")
    # The newest of each, before the successor's key was made.
    by_action = {r["action"]: r for r in reversed(records[1:])}
    expected = [
        ("tenant.deleted", {}),
        ("collection.deleted", {"collection": "second"}),
        ("webhook_secret.rotated", {}),
        ("batch.deleted", {"collection": gallery, "batch_id": deleted}),
        ("batch.cancelled", {"collection": gallery, "batch_id": cancelled}),
        ("batch.closed", {"collection": gallery, "batch_id": closed}),
        ("identity.deleted", {"collection": gallery, "identity_id": person}),
        ("face.deleted", {"collection": gallery, "identity_id": person, "face_id": face}),
        ("collection.quality_filter_changed", {"collection": gallery}),
        ("collection.keep_crops_changed", {"collection": gallery}),
        ("collection.threshold_changed", {"collection": gallery}),
        ("key.revoked", {"key_prefix": spare}),
        ("key.created", {"key_prefix": spare}),
    ]
    newest = len(expected) - 1  # all but the spare key's creation
    assert [a for a in actions(records) if a != "key.created"][:newest] == [
        a for a, _ in expected[:newest]
    ]
    for action, target in expected:
        record = by_action[action]
        assert record["actor"] == actor, record
        assert record["outcome"] == "ok", record
        assert {k: v for k, v in record["target"].items() if v is not None} == target, record
    assert by_action["tenant.deleted"]["detail"]["remaining_faces"] == 0
    assert by_action["tenant.deleted"]["detail"]["revoked_keys"] >= 1
    assert by_action["face.deleted"]["detail"]["deleted_faces"] == 1
    assert by_action["identity.deleted"]["detail"]["deleted_faces"] == 1
    assert by_action["collection.threshold_changed"]["detail"] == {"before": None, "after": 0.4}
    changed_level = by_action["collection.quality_filter_changed"]["detail"]
    assert changed_level == {"before": None, "after": "low"}
    assert by_action["collection.keep_crops_changed"]["detail"] == {"before": True, "after": False}
    # Nothing of the person but the identity id: no name, no face, no vector.
    text = json.dumps(records)
    assert "Ada" not in text and "Lovelace" not in text
    assert not any(field in text for field in ("embedding", "vector", "thumbnail", "bbox"))

"""Manage API keys from a shell with access to Redis:
``facerec-keys create|list|revoke|rotate``.

Unlike ``/v1/keys`` this can act for any tenant: it is the operator's tool. What it makes
and revokes goes into the tenant's audit trail, done by ``operator``.
"""

import argparse
import asyncio
import json
import sys
import time

import redis.asyncio as aioredis

from facerec_gateway.audit import OPERATOR, AuditAction, AuditLog
from facerec_gateway.keys import ApiKey, KeyScope, KeyStore
from facerec_gateway.settings import GatewaySettings

_DAY_S = 86400


def _days(value: str) -> float:
    days = float(value)
    if not days > 0:
        raise argparse.ArgumentTypeError("a number of days above 0")
    return days


def _expiry(days: float | None) -> float | None:
    return time.time() + days * _DAY_S if days is not None else None


async def _created(audit: AuditLog, record: ApiKey) -> None:
    detail = {
        "name": record.name,
        "scopes": ",".join(sorted(record.scopes)),
        "expires_at": record.expires_at,
    }
    await audit.record(
        record.tenant,
        AuditAction.KEY_CREATED,
        OPERATOR,
        detail=detail,
        key_prefix=record.body()["prefix"],
    )


async def _revoke(store: KeyStore, audit: AuditLog, tenant: str, prefix: str) -> bool:
    if not await store.revoke(tenant, prefix):
        print(f"no key {prefix} in tenant {tenant}", file=sys.stderr)
        return False
    key_prefix = f"frk_{prefix.removeprefix('frk_')}"
    await audit.record(tenant, AuditAction.KEY_REVOKED, OPERATOR, key_prefix=key_prefix)
    return True


async def _rotate(
    store: KeyStore, audit: AuditLog, tenant: str, prefix: str, days: float | None
) -> int:
    """A new key with the old one's name, scopes and rate (and lifetime, unless ``days``
    says otherwise), printed; then the old one is revoked."""
    wanted = f"frk_{prefix.removeprefix('frk_')}"
    old = [k for k in await store.list(tenant, wanted) if k.body()["prefix"] == wanted]
    if not old:
        print(f"no key {prefix} in tenant {tenant}", file=sys.stderr)
        return 1
    [previous] = old
    if days is not None:
        expires_at = _expiry(days)
    elif previous.expires_at is not None:
        expires_at = time.time() + (previous.expires_at - previous.created_at)
    else:
        expires_at = None
    record, key = await store.create(
        tenant,
        set(previous.scopes),
        previous.name,
        previous.rate_limit_per_minute,
        expires_at=expires_at,
    )
    await _created(audit, record)
    print(json.dumps({**record.body(), "key": key, "replaces": wanted}))
    return 0 if await _revoke(store, audit, tenant, wanted) else 1


async def run(args: argparse.Namespace) -> int:
    settings = GatewaySettings()
    client = aioredis.Redis.from_url(settings.redis_url)
    store = KeyStore(client)
    audit = AuditLog(client, settings.audit_retention_days)
    try:
        if args.command == "create":
            scopes = {KeyScope(s) for s in args.scopes.split(",")}
            record, key = await store.create(
                args.tenant,
                scopes,
                args.name,
                args.rate_limit,
                expires_at=_expiry(args.expires_in_days),
            )
            await _created(audit, record)
            print(json.dumps({**record.body(), "key": key}))
        elif args.command == "list":
            records = await store.list(args.tenant, args.prefix)
            for record in records:
                print(json.dumps(record.body()))
            if not records:  # said on stderr, so stdout stays one JSON object a line
                print(f"no keys in tenant {args.tenant}", file=sys.stderr)
        elif args.command == "revoke":
            if not await _revoke(store, audit, args.tenant, args.prefix):
                return 1
            print(json.dumps({"prefix": args.prefix, "revoked": True}))
        elif args.command == "rotate":
            return await _rotate(store, audit, args.tenant, args.prefix, args.expires_in_days)
        return 0
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="facerec-keys", description="Manage API keys")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", default="read,write", help="comma-separated: read,write,admin")
    create.add_argument("--name", default="cli")
    create.add_argument("--rate-limit", type=int, default=None, help="requests a minute")
    create.add_argument(
        "--expires-in-days", type=_days, default=None, help="refused after this many days"
    )
    listing = commands.add_parser("list", help="list a tenant's keys (never the keys themselves)")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--prefix", default=None)
    revoke = commands.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("prefix")
    rotate = commands.add_parser(
        "rotate", help="make a new key like PREFIX (name, scopes, rate), print it, revoke PREFIX"
    )
    rotate.add_argument("--tenant", required=True)
    rotate.add_argument(
        "--expires-in-days",
        type=_days,
        default=None,
        help="the new key's lifetime (default: the old key's, or none)",
    )
    rotate.add_argument("prefix")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()

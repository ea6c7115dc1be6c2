"""Manage API keys from a shell with access to Redis: ``facerec-keys create|list|revoke``.

Unlike ``/v1/keys`` this can act for any tenant: it is the operator's tool.
"""

import argparse
import asyncio
import json
import sys

import redis.asyncio as aioredis

from facerec_gateway.keys import KeyScope, KeyStore
from facerec_gateway.settings import GatewaySettings


async def run(args: argparse.Namespace) -> int:
    client = aioredis.Redis.from_url(GatewaySettings().redis_url)
    store = KeyStore(client)
    try:
        if args.command == "create":
            scopes = {KeyScope(s) for s in args.scopes.split(",")}
            record, key = await store.create(args.tenant, scopes, args.name, args.rate_limit)
            print(json.dumps({**record.body(), "key": key}))
        elif args.command == "list":
            records = await store.list(args.tenant, args.prefix)
            for record in records:
                print(json.dumps(record.body()))
            if not records:  # said on stderr, so stdout stays one JSON object a line
                print(f"no keys in tenant {args.tenant}", file=sys.stderr)
        elif args.command == "revoke":
            if not await store.revoke(args.tenant, args.prefix):
                print(f"no key {args.prefix} in tenant {args.tenant}", file=sys.stderr)
                return 1
            print(json.dumps({"prefix": args.prefix, "revoked": True}))
        return 0
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="facerec-keys", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", default="read,write", help="comma-separated: read,write,admin")
    create.add_argument("--name", default="cli")
    create.add_argument("--rate-limit", type=int, default=None, help="requests a minute")
    listing = commands.add_parser("list", help="list a tenant's keys (never the keys themselves)")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--prefix", default=None)
    revoke = commands.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("prefix")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()

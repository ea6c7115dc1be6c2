"""``facerec keys``: the tenant's API keys over the API (an admin key is needed), with the
same options and output habits as every other command. ``facerec-keys`` stays the operator's
tool for any tenant, straight in Redis."""

from typing import Annotated

import typer

from facerec_cli import output
from facerec_cli.context import JsonFlag, connect, err, out, wants_json

keys_app = typer.Typer(
    help="API keys of your tenant (needs an admin key): create, list, revoke.",
    no_args_is_help=True,
)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'android app'")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write, admin")] = "read,write",
    rate_limit: Annotated[
        int | None, typer.Option(min=1, help="Requests a minute (default: the server's)")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Make a key and print it; it is shown this once only."""
    body = {
        "name": name,
        "scopes": [s.strip() for s in scopes.split(",") if s.strip()],
        "rate_limit_per_minute": rate_limit,
    }
    with connect(ctx) as client:
        created = client.post("/v1/keys", json=body)
    if wants_json(ctx, json_out):
        output.print_json(out, created)
        return
    out.print(created["key"], markup=False)
    err.print(
        f"key {created['prefix']} ({','.join(created['scopes'])}) for tenant "
        f"{created['tenant']}: store it now, it is not shown again"
    )


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    prefix: Annotated[str | None, typer.Option(help="Only keys starting so")] = None,
    json_out: JsonFlag = False,
) -> None:
    """The tenant's keys: prefix, name, scopes (never the keys themselves)."""
    with connect(ctx) as client:
        keys = client.get("/v1/keys", params={"prefix": prefix} if prefix else {}).get("keys", [])
    if wants_json(ctx, json_out):
        output.print_json(out, keys)
    elif not keys:
        out.print("no keys" + (f" starting with {prefix}" if prefix else ""))
    else:
        out.print(output.keys_table(keys))


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The key's prefix, frk_ and 10 characters")],
    json_out: JsonFlag = False,
) -> None:
    """Revoke a key: it stops working at once."""
    with connect(ctx) as client:
        body = client.delete(f"/v1/keys/{prefix}")
    if wants_json(ctx, json_out):
        output.print_json(out, body)
    else:
        out.print(f"key {prefix} revoked")

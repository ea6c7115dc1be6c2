"""``facerec keys``: the tenant's API keys over the API (an admin key is needed), with the
same options and output habits as every other command. ``facerec-keys`` stays the operator's
tool for any tenant, straight in Redis."""

from typing import Annotated, Any

import typer

from facerec_cli import output
from facerec_cli.context import JsonFlag, connect, err, out, wants_json

keys_app = typer.Typer(
    help="API keys of your tenant (needs an admin key): create, list, rotate, revoke.",
    no_args_is_help=True,
)
_DAY_S = 86400


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'android app'")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write, admin")] = "read,write",
    rate_limit: Annotated[
        int | None, typer.Option(min=1, help="Requests a minute (default: the server's)")
    ] = None,
    expires_in_days: Annotated[
        float | None, typer.Option(min=0.0001, help="The key stops working after this many days")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Make a key and print it; it is shown this once only."""
    body: dict[str, Any] = {
        "name": name,
        "scopes": [s.strip() for s in scopes.split(",") if s.strip()],
        "rate_limit_per_minute": rate_limit,
    }
    if expires_in_days is not None:
        body["expires_in_s"] = max(1, round(expires_in_days * _DAY_S))
    with connect(ctx) as client:
        created = client.post("/v1/keys", json=body)
    show_new_key(ctx, json_out, created)


def show_new_key(ctx: typer.Context, json_out: bool, created: dict[str, Any]) -> None:
    if wants_json(ctx, json_out):
        output.print_json(out, created)
        return
    out.print(created["key"], markup=False)
    err.print(
        f"key {created['prefix']} ({','.join(created['scopes'])}) for tenant "
        f"{created['tenant']}: store it now, it is not shown again"
    )


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The key to replace: frk_ and 10 characters")],
    json_out: JsonFlag = False,
) -> None:
    """Make a key like this one (name, scopes, rate, lifetime), print it, then revoke the
    old one."""
    wanted = f"frk_{prefix.removeprefix('frk_')}"
    with connect(ctx) as client:
        found = [
            k
            for k in client.get("/v1/keys", params={"prefix": wanted}).get("keys", [])
            if k["prefix"] == wanted
        ]
        if not found:
            err.print(f"no key {wanted} in this tenant")
            raise typer.Exit(1)
        [old] = found
        body: dict[str, Any] = {
            "name": old["name"],
            "scopes": old["scopes"],
            "rate_limit_per_minute": old.get("rate_limit_per_minute"),
        }
        if old.get("expires_at"):
            lifetime = float(old["expires_at"]) - float(old["created_at"])
            body["expires_in_s"] = max(1, round(lifetime))
        created = client.post("/v1/keys", json=body)
        client.delete(f"/v1/keys/{wanted}")
    show_new_key(ctx, json_out, {**created, "replaces": wanted})


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    prefix: Annotated[str | None, typer.Option(help="Only keys starting so")] = None,
    json_out: JsonFlag = False,
) -> None:
    """The tenant's keys: prefix, name, scopes (never the keys themselves)."""
    with connect(ctx) as client:
        keys = client.get("/v1/keys", params={"prefix": prefix} if prefix else {}).get("keys", [])
    none = "no keys" + (f" starting with {prefix}" if prefix else "")
    output.show(ctx, json_out, keys, output.keys_table(keys) if keys else none)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The key's prefix, frk_ and 10 characters")],
    json_out: JsonFlag = False,
) -> None:
    """Revoke a key: it stops working at once."""
    with connect(ctx) as client:
        body = client.delete(f"/v1/keys/{prefix}")
    output.show(ctx, json_out, body, f"key {prefix} revoked")

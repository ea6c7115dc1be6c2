"""``facerec migration``: move a gallery to another model pack from its kept crops, and
follow, check, cut over, roll back or finish it (an admin key is needed)."""

import time
from typing import Annotated, Any

import typer

from facerec_cli import output
from facerec_cli.context import Collection, JsonFlag, base, connect, err, gallery

migration_app = typer.Typer(
    help="Move a gallery to another model: start, status, check, cutover, rollback, finish.",
    no_args_is_help=True,
)
# Seconds between two looks at a migration that is being waited for.
_POLL_S = 1.0


def summary(migration: dict[str, Any]) -> str:
    """One line: the gallery, the models, the state and how far it got."""
    source, target = migration["source"], migration["target"]
    line = (
        f"{migration['collection']}: {source['pack']} -> {target['pack']} "
        f"{migration['state']}, {migration['embedded']}/{migration['faces']} faces "
        f"({100 * migration['progress']:.0f}%)"
    )
    return line + (f"; {migration['error']}" if migration.get("error") else "")


@migration_app.command("start")
def migration_start(
    ctx: typer.Context,
    pack: Annotated[str, typer.Argument(help="The model pack to move to, e.g. buffalo_sc_int8")],
    wait: Annotated[bool, typer.Option(help="Wait until every face is embedded again")] = False,
    collection: Collection = None,
    json_out: JsonFlag = False,
) -> None:
    """Start embedding the gallery's kept crops with another pack; the old model serves
    meanwhile. Cut over with `facerec migration cutover` once it is ready."""
    url = f"{base(gallery(ctx, collection))}/migration"
    with connect(ctx) as client:
        migration = client.post(url, json={"model_pack": pack})
        while wait and migration["state"] == "running":
            time.sleep(_POLL_S)
            migration = client.get(url)
            err.print(summary(migration), markup=False)
    output.show(ctx, json_out, migration, summary(migration), markup=False)


@migration_app.command("status")
def migration_status(
    ctx: typer.Context, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """The gallery's migration, running or the last one."""
    with connect(ctx) as client:
        migration = client.get(f"{base(gallery(ctx, collection))}/migration")
    output.show(ctx, json_out, migration, summary(migration), markup=False)


@migration_app.command("check")
def migration_check(
    ctx: typer.Context, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """Before cutover: faces the new index lacks (sent again), and the share of enrolled
    faces that find their own identity in it, beside the old index's."""
    with connect(ctx) as client:
        check = client.post(f"{base(gallery(ctx, collection))}/migration/check")

    def share(name: str) -> str:
        found = check[name]
        value = "n/a" if found["share"] is None else f"{100 * found['share']:.1f}%"
        return f"{value} of {found['checked']}"

    line = (
        f"{check['in_shadow']}/{check['faces']} faces in the new index, "
        f"{check['missing']} missing ({check['resumed']} sent again), "
        f"{check['orphans']} removed; own identity found: {share('self_match')}; "
        f"with the face left out: new {share('leave_one_out')} at {check['threshold']}, "
        f"old {share('source_leave_one_out')} at {check['source_threshold']}"
    )
    output.show(ctx, json_out, check, line, markup=False)


def _step(ctx: typer.Context, collection: str | None, json_out: bool, name: str) -> None:
    with connect(ctx) as client:
        migration = client.post(f"{base(gallery(ctx, collection))}/migration/{name}")
    output.show(ctx, json_out, migration, summary(migration), markup=False)


@migration_app.command("cutover")
def migration_cutover(
    ctx: typer.Context, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """Serve the gallery from the new model (ids, names and people kept); the old index is
    kept for a rollback until `finish`."""
    _step(ctx, collection, json_out, "cutover")


@migration_app.command("rollback")
def migration_rollback(
    ctx: typer.Context, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """Serve the gallery from the old model again and drop the new index."""
    _step(ctx, collection, json_out, "rollback")


@migration_app.command("finish")
def migration_finish(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
    collection: Collection = None,
    json_out: JsonFlag = False,
) -> None:
    """Drop the old index: no rollback after this."""
    if not yes and not typer.confirm("Drop the old model's index? There is no rollback after."):
        raise typer.Exit(1)
    _step(ctx, collection, json_out, "finish")

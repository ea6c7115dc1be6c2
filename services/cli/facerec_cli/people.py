"""``facerec people``: clusters of faces that matched no identity (from ingested batches):
list them, look at one, name it (it becomes an identity), merge two, split a face off, or
reject a face (erase it). Every id may be given as any unique start of it."""

import base64
import binascii
from pathlib import Path
from typing import Annotated, Any

import typer

from facerec_cli import ids, output
from facerec_cli.client import Client
from facerec_cli.context import (
    Collection,
    JsonFlag,
    base,
    connect,
    gallery,
    metadata_option,
    out,
    plural,
    show_id,
    wants_json,
)

people_app = typer.Typer(
    help="People found by clustering unassigned faces: list, show, name, merge, split, reject.",
    no_args_is_help=True,
)

PersonId = Annotated[str, typer.Argument(help="Person id, or any unique start of it")]
FaceId = Annotated[str, typer.Argument(help="Face id, or any unique start of it")]


def people_path(collection: str, *parts: str) -> str:
    return "/".join((f"{base(collection)}/people", *parts))


def save_thumbnails(folder: Path, faces: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for face in faces:
        try:
            data = base64.b64decode(face.get("thumbnail") or "", validate=True)
        except (binascii.Error, ValueError):
            continue
        if data:
            (folder / f"{face.get('face_id')}.jpg").write_bytes(data)


def person(client: Client, collection: str, given: str) -> str:
    return ids.person_id(client, base(collection), given)


def person_face(client: Client, collection: str, person_id: str, given: str) -> str:
    return ids.face_id(
        lambda: client.get(people_path(collection, person_id)).get("faces", []),
        given,
        f"person {person_id[:12]}",
    )


@people_app.command("list")
def people_list(
    ctx: typer.Context, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """The people found so far, largest first as the server orders them."""
    name = gallery(ctx, collection)
    with connect(ctx) as client:
        body = client.get(people_path(name))
    if wants_json(ctx, json_out):
        # Thumbnails are base64 JPEGs: left out of the listing, see `people show --save`.
        people = [{k: v for k, v in p.items() if k != "thumbnail"} for p in body.get("people", [])]
        output.print_json(out, {"people": people, "unclustered": body.get("unclustered", 0)})
    else:
        out.print(output.people_table(name, body, lambda v: show_id(ctx, v)))


@people_app.command("show")
def people_show(
    ctx: typer.Context,
    person_id: PersonId,
    collection: Collection = None,
    save: Annotated[
        Path | None, typer.Option(file_okay=False, help="Write each face's thumbnail here")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """The faces of one person."""
    name = gallery(ctx, collection)
    with connect(ctx) as client:
        found = person(client, name, person_id)
        body: dict[str, Any] = client.get(people_path(name, found))
    if save is not None:
        save_thumbnails(save, body.get("faces", []))
    if wants_json(ctx, json_out):
        faces = [{k: v for k, v in f.items() if k != "thumbnail"} for f in body.get("faces", [])]
        output.print_json(out, {**body, "faces": faces})
    else:
        out.print(output.person_table(body, lambda v: show_id(ctx, v)))
        if save is not None:
            out.print(f"thumbnails written to {save}")


@people_app.command("name")
def people_name(
    ctx: typer.Context,
    person_id: PersonId,
    name: Annotated[str, typer.Argument(help="The person's name")],
    collection: Collection = None,
    metadata: Annotated[str | None, typer.Option(help="JSON object kept with the identity")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Name a person: it becomes an identity, and all its faces that identity's faces."""
    meta = metadata_option(metadata)
    where = gallery(ctx, collection)
    with connect(ctx) as client:
        found = person(client, where, person_id)
        identity = client.post(
            people_path(where, found, "name"), json={"name": name, "metadata": meta}
        )
    output.show(
        ctx,
        json_out,
        identity,
        f"{show_id(ctx, found)} is now identity {show_id(ctx, identity.get('id'))} "
        f"({identity.get('name')}), {plural(int(identity.get('face_count', 0)), 'face')}",
    )


@people_app.command("merge")
def people_merge(
    ctx: typer.Context,
    person_id: PersonId,
    into: Annotated[str, typer.Argument(help="The person that keeps the faces")],
    collection: Collection = None,
    json_out: JsonFlag = False,
) -> None:
    """Move every face of PERSON into INTO (they are the same person)."""
    where = gallery(ctx, collection)
    with connect(ctx) as client:
        found, target_id = person(client, where, person_id), person(client, where, into)
        target = client.post(people_path(where, found, "merge"), json={"into": target_id})
    faces = target.get("faces") or []
    output.show(
        ctx,
        json_out,
        target,
        f"merged {show_id(ctx, found)} into {show_id(ctx, target_id)}: "
        f"{plural(len(faces), 'face')}",
    )


@people_app.command("split")
def people_split(
    ctx: typer.Context,
    person_id: PersonId,
    face: FaceId,
    collection: Collection = None,
    json_out: JsonFlag = False,
) -> None:
    """Move one face out of PERSON into a new person of its own (not the same person)."""
    where = gallery(ctx, collection)
    with connect(ctx) as client:
        found = person(client, where, person_id)
        face_id = person_face(client, where, found, face)
        new = client.post(people_path(where, found, "faces", face_id, "split"))
    output.show(
        ctx,
        json_out,
        new,
        f"face {show_id(ctx, face_id)} split off {show_id(ctx, found)} into new person "
        f"{show_id(ctx, new.get('id'))}",
    )


@people_app.command("reject")
def people_reject(
    ctx: typer.Context,
    person_id: PersonId,
    face: FaceId,
    collection: Collection = None,
    json_out: JsonFlag = False,
) -> None:
    """Erase one face of PERSON (not a face, or not wanted)."""
    where = gallery(ctx, collection)
    with connect(ctx) as client:
        found = person(client, where, person_id)
        face_id = person_face(client, where, found, face)
        body = client.delete(people_path(where, found, "faces", face_id))
    output.show(
        ctx,
        json_out,
        body,
        f"face {show_id(ctx, face_id)} of {show_id(ctx, found)} rejected and erased",
    )


@people_app.command("cluster")
def people_cluster(
    ctx: typer.Context, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """Run a full clustering pass now."""
    with connect(ctx) as client:
        body = client.post(people_path(gallery(ctx, collection), "cluster"))
    output.show(
        ctx,
        json_out,
        body,
        f"{plural(int(body.get('people', 0)), 'person')}, "
        f"{plural(int(body.get('unclustered', 0)), 'face')} not clustered",
    )

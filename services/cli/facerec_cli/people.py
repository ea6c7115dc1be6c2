"""``facerec people``: clusters of faces that matched no identity (from ingested batches):
list them, look at one, name it (it becomes an identity), merge two, split a face off, or
reject a face (erase it)."""

import base64
import binascii
from pathlib import Path
from typing import Annotated, Any

import typer

from facerec_cli import output
from facerec_cli.context import Collection, JsonFlag, base, connect, metadata_option, out

people_app = typer.Typer(
    help="People found by clustering unassigned faces: list, show, name, merge, split, reject.",
    no_args_is_help=True,
)

PersonId = Annotated[str, typer.Argument(help="Person (cluster) id")]
FaceId = Annotated[str, typer.Argument(help="Face id")]


def people_path(collection: str, *parts: str) -> str:
    return "/".join((f"{base(collection)}/people", *parts))


@people_app.command("list")
def people_list(
    ctx: typer.Context, collection: Collection = "default", json_out: JsonFlag = False
) -> None:
    """The people found so far, largest first as the server orders them."""
    with connect(ctx) as client:
        body = client.get(people_path(collection))
    if json_out:
        # Thumbnails are base64 JPEGs: left out of the listing, see `people show --save`.
        people = [{k: v for k, v in p.items() if k != "thumbnail"} for p in body.get("people", [])]
        output.print_json(out, {"people": people, "unclustered": body.get("unclustered", 0)})
    else:
        out.print(output.people_table(collection, body))


@people_app.command("show")
def people_show(
    ctx: typer.Context,
    person: PersonId,
    collection: Collection = "default",
    save: Annotated[
        Path | None, typer.Option(file_okay=False, help="Write each face's thumbnail here")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """The faces of one person."""
    with connect(ctx) as client:
        body: dict[str, Any] = client.get(people_path(collection, person))
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        for face in body.get("faces", []):
            try:
                data = base64.b64decode(face.get("thumbnail") or "", validate=True)
            except (binascii.Error, ValueError):
                continue
            if data:
                (save / f"{face.get('face_id')}.jpg").write_bytes(data)
    if json_out:
        faces = [{k: v for k, v in f.items() if k != "thumbnail"} for f in body.get("faces", [])]
        output.print_json(out, {**body, "faces": faces})
    else:
        out.print(output.person_table(body))
        if save is not None:
            out.print(f"thumbnails written to {save}")


@people_app.command("name")
def people_name(
    ctx: typer.Context,
    person: PersonId,
    name: Annotated[str, typer.Argument(help="The person's name")],
    collection: Collection = "default",
    metadata: Annotated[str | None, typer.Option(help="JSON object kept with the identity")] = None,
) -> None:
    """Name a person: it becomes an identity, and all its faces that identity's faces."""
    meta = metadata_option(metadata)
    with connect(ctx) as client:
        identity = client.post(
            people_path(collection, person, "name"), json={"name": name, "metadata": meta}
        )
    out.print(
        f"{person} is now identity {identity.get('id')} ({identity.get('name')}), "
        f"{identity.get('face_count', '?')} face(s)"
    )


@people_app.command("merge")
def people_merge(
    ctx: typer.Context,
    person: PersonId,
    into: Annotated[str, typer.Argument(help="The person that keeps the faces")],
    collection: Collection = "default",
) -> None:
    """Move every face of PERSON into INTO (they are the same person)."""
    with connect(ctx) as client:
        target = client.post(people_path(collection, person, "merge"), json={"into": into})
    faces = target.get("faces") or []
    out.print(f"merged {person} into {target.get('id', into)}: {len(faces)} face(s)")


@people_app.command("split")
def people_split(
    ctx: typer.Context, person: PersonId, face: FaceId, collection: Collection = "default"
) -> None:
    """Move one face out of PERSON into a new person of its own (not the same person)."""
    with connect(ctx) as client:
        new = client.post(people_path(collection, person, "faces", face, "split"))
    out.print(f"face {face} split off {person} into new person {new.get('id')}")


@people_app.command("reject")
def people_reject(
    ctx: typer.Context, person: PersonId, face: FaceId, collection: Collection = "default"
) -> None:
    """Erase one face of PERSON (not a face, or not wanted)."""
    with connect(ctx) as client:
        client.delete(people_path(collection, person, "faces", face))
    out.print(f"face {face} of {person} rejected and erased")


@people_app.command("cluster")
def people_cluster(ctx: typer.Context, collection: Collection = "default") -> None:
    """Run a full clustering pass now."""
    with connect(ctx) as client:
        body = client.post(people_path(collection, "cluster"))
    out.print(f"{body.get('people')} people, {body.get('unclustered')} face(s) not clustered")

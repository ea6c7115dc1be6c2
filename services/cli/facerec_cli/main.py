"""Entry point of the ``facerec`` command."""

import importlib.metadata
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from facerec_cli import ids, output
from facerec_cli.client import ApiError, image_part
from facerec_cli.context import (
    DEFAULT_COLLECTION,
    EXIT_INTERRUPTED,
    Collection,
    JsonFlag,
    Settings,
    base,
    connect,
    err,
    gallery,
    metadata_option,
    out,
    plural,
    show_id,
    wants_json,
)
from facerec_cli.dead_letters import dead_letters_app
from facerec_cli.files import MAX_IMAGE_BYTES, local_problem
from facerec_cli.ingest import Ingest, IngestOptions, Interrupted
from facerec_cli.keys import keys_app
from facerec_cli.migrations import migration_app
from facerec_cli.people import people_app

DEFAULT_URL = "http://127.0.0.1:8000"
ENROLL_PER_REQUEST = 10  # the gateway's default limit of images per request

app = typer.Typer(
    help="facerec: face recognition from the command line, over the HTTP API.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)
identities_app = typer.Typer(
    help="Identities: list, show, faces, rename, delete one face, delete.", no_args_is_help=True
)
batches_app = typer.Typer(
    help="Batches of images (`facerec ingest` makes them): list, show, results, cancel, delete.",
    no_args_is_help=True,
)
galleries_app = typer.Typer(
    help="Galleries: list, create, delete, threshold.", no_args_is_help=True
)
app.add_typer(galleries_app, name="galleries")
app.add_typer(identities_app, name="identities")
app.add_typer(people_app, name="people")
app.add_typer(batches_app, name="batches")
app.add_typer(keys_app, name="keys")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(migration_app, name="migration")


def version(value: bool) -> None:
    if value:
        out.print(f"facerec {importlib.metadata.version('facerec-cli')}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="FACEREC_URL", help="Gateway base URL")] = DEFAULT_URL,
    api_key: Annotated[
        str | None, typer.Option(envvar="FACEREC_API_KEY", help="API key (X-API-Key)")
    ] = None,
    collection: Annotated[
        str,
        typer.Option("--collection", "-c", envvar="FACEREC_COLLECTION", help="Gallery to work in"),
    ] = DEFAULT_COLLECTION,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of tables, for every command")
    ] = False,
    no_trunc: Annotated[
        bool, typer.Option("--no-trunc", help="Show whole ids in tables (12 characters otherwise)")
    ] = False,
    _version: Annotated[
        bool | None,
        typer.Option("--version", callback=version, is_eager=True, help="Print the version"),
    ] = None,
) -> None:
    """Options given here apply to every command: `facerec -c staff identities list`."""
    ctx.obj = Settings(url, api_key, collection, json_out, no_trunc)


@app.command()
def ingest(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="Folder of photos (recursive)")
    ],
    collection: Collection = None,
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Upload requests in flight")] = 4,
    part_size: Annotated[int, typer.Option(min=1, max=50, help="Images per upload request")] = 8,
    batch_name: Annotated[str | None, typer.Option(help="Name of the batch")] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="URL the server calls when the batch is done")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="Resume file (default: one per folder under ~/.cache/facerec)"),
    ] = None,
    max_rate: Annotated[
        float | None, typer.Option(min=0.01, help="Upload at most this many images/s")
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            "--retry-refused",
            help="Send again the files an earlier run had refused or could not process",
        ),
    ] = False,
    max_image_bytes: Annotated[
        int, typer.Option(min=1, help="Larger files are refused without being uploaded")
    ] = MAX_IMAGE_BYTES,
    json_out: JsonFlag = False,
) -> None:
    """Send every image under FOLDER to the collection as one batch, resumably.

    JPEG, PNG, WebP, BMP, GIF, TIFF, HEIC/HEIF and AVIF files are found recursively and
    sent as they are: the server decodes them. Run it again after Ctrl-C or a crash: what
    the server already has is skipped by content hash and never processed twice. Files
    that are too large or not images are refused here, before upload; those and images
    that could not be processed (a truncated JPEG) are remembered and skipped by later runs
    unless --retry-failed.
    """
    name = gallery(ctx, collection)
    as_json = wants_json(ctx, json_out)
    options = IngestOptions(
        collection=name,
        concurrency=concurrency,
        part_size=part_size,
        batch_name=batch_name or folder.resolve().name,
        callback_url=callback_url,
        state_path=state,
        max_rate=max_rate,
        retry_failed=retry_failed,
        max_image_bytes=max_image_bytes,
    )
    # Waiting out 429 answers is routine here (backpressure): counted, not printed.
    with connect(ctx, concurrency + 2, transport_retries=4, quiet=True) as client:
        try:
            summary = Ingest(client, folder, options, err).run()
        except Interrupted as stop:
            if as_json:
                output.print_json(out, stop.summary.as_json())
            else:
                output.print_ingest(out, stop.summary)
            again = shlex.join(["facerec", *sys.argv[1:]]) if sys.argv[1:] else "the same command"
            err.print(
                f"[yellow]Interrupted[/yellow]: {plural(stop.summary.remaining, 'image')} "
                "not sent yet"
                + (f"; batch {stop.summary.batch_id} stays open" if stop.summary.batch_id else "")
                + f".\nTo resume, run it again: {again}\n"
                "Images already sent are skipped by content hash and never processed twice."
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        output.print_json(out, summary.as_json())
    else:
        output.print_ingest(out, summary)
    if summary.refused or summary.failed:
        raise typer.Exit(2)


ThresholdOption = Annotated[
    float | None, typer.Option(help="Cosine similarity for a match (default: the server's)")
]


@app.command()
def recognize(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A photo")],
    collection: Collection = None,
    top_k: Annotated[int, typer.Option(min=1, max=20, help="Candidates per face")] = 3,
    threshold: ThresholdOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Find everyone in IMAGE among the collection's identities."""
    params: dict[str, Any] = {"top_k": top_k}
    if threshold is not None:
        params["threshold"] = threshold
    with connect(ctx) as client:
        result = client.job(
            f"{base(gallery(ctx, collection))}/recognize",
            [image_part(image.name, image.read_bytes())],
            params,
        )
    output.show(ctx, json_out, result, output.faces_table(result, lambda v: show_id(ctx, v)))


@app.command()
def detect(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A photo")],
    max_faces: Annotated[int | None, typer.Option(min=1, help="Keep the largest N")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Every face in IMAGE: box, landmarks, detection score (no gallery involved)."""
    params = {"max_faces": max_faces} if max_faces else {}
    with connect(ctx) as client:
        result = client.job("/v1/detect", [image_part(image.name, image.read_bytes())], params)
    output.show(ctx, json_out, result, output.detect_table(result))


@app.command()
def verify(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A photo")],
    other: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="A second photo")
    ] = None,
    identity: Annotated[
        str | None, typer.Option("--identity", "-i", help="Compare with this identity instead")
    ] = None,
    collection: Collection = None,
    threshold: ThresholdOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Is it the same person? The largest face of IMAGE against that of OTHER, or against
    an enrolled identity (--identity, any unique start of its id)."""
    if (other is None) == (identity is None):
        raise typer.BadParameter("give a second photo or --identity, not both")
    params = {"threshold": threshold} if threshold is not None else {}
    first = image_part(image.name, image.read_bytes())
    with connect(ctx) as client:
        if other is not None:
            second = ("image2", (other.name, other.read_bytes(), first[1][2]))
            result = client.job("/v1/verify", [("image1", first[1]), second], params)
        else:
            where = base(gallery(ctx, collection))
            assert identity is not None
            found = ids.identity_id(client, where, identity)
            result = client.job(f"{where}/identities/{found}/verify", [first], params)
    if wants_json(ctx, json_out):
        output.print_json(out, result)
        return
    verdict = "[green]same person[/green]" if result.get("same") else "[red]different[/red]"
    against = result.get("identity", {}).get("name") if identity else other.name if other else ""
    similarity = output.number(result.get("similarity"))
    out.print(
        f"{verdict} ({image.name} vs {against}): similarity {similarity}, "
        f"confidence {output.number(result.get('confidence'))}, "
        f"threshold {output.number(result.get('threshold'))}"
    )


@app.command()
def enroll(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The person's name")],
    images: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="Photos of one face each")
    ],
    collection: Collection = None,
    metadata: Annotated[
        str | None, typer.Option(help='JSON object kept with the identity, e.g. {"team":"R&D"}')
    ] = None,
    identity: Annotated[
        str | None,
        typer.Option("--to", help="Add to this existing identity (any unique start of its id)"),
    ] = None,
    largest_face: Annotated[
        bool, typer.Option(help="Enrol the largest face of photos with several")
    ] = False,
    allow_duplicate_name: Annotated[
        bool, typer.Option(help="Make a new identity even if the gallery has one of this name")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Create the identity NAME and enrol the faces of IMAGES.

    Every file is checked first (size, type); nothing is created if one is unusable. If no
    face could be enrolled, the new identity is deleted again, so a failed run leaves
    nothing behind. The same photo twice is reported as a duplicate and stored once.
    """
    unusable = [(p, why) for p in images if (why := local_problem(p)) is not None]
    if unusable:
        for path, why in unusable:
            err.print(f"[red]{path}[/red]: {why}", highlight=False)
        err.print("nothing was enrolled; leave these files out or replace them")
        raise typer.Exit(2)
    meta = metadata_option(metadata)
    where = base(gallery(ctx, collection))
    created = False
    with connect(ctx) as client:
        if identity is None:
            params = {"allow_duplicate_name": "true"} if allow_duplicate_name else {}
            try:
                record = client.post(
                    f"{where}/identities", json={"name": name, "metadata": meta}, params=params
                )
            except ApiError as exc:
                if exc.status == 409:
                    exc.detail += "; add the photos to it with --to ID, or --allow-duplicate-name"
                raise
            created = True
        else:
            identity = ids.identity_id(client, where, identity)
            record = client.get(f"{where}/identities/{identity}")
        identity, name = str(record["id"]), str(record["name"])
        results = []
        params = {"largest_face": "true"} if largest_face else {}
        try:
            for i in range(0, len(images), ENROLL_PER_REQUEST):
                files = [
                    image_part(p.name, p.read_bytes()) for p in images[i : i + ENROLL_PER_REQUEST]
                ]
                results.append(client.job(f"{where}/identities/{identity}/faces", files, params))
        finally:
            enrolled = any(result.get("faces") for result in results)
            if created and not enrolled:
                # A new identity without a face is a half-made one: take it back.
                client.delete(f"{where}/identities/{identity}")
    if wants_json(ctx, json_out):
        faces = [face for result in results for face in result.get("faces", [])]
        dupes = [item for result in results for item in result.get("duplicates", [])]
        refused = [item for result in results for item in result.get("refused", [])]
        output.print_json(
            out,
            {
                "identity_id": identity if enrolled or not created else None,
                "name": name,
                "faces": faces,
                "duplicates": dupes,
                "refused": refused,
            },
        )
    else:
        out.print(output.enroll_table(name, identity, results, lambda v: show_id(ctx, v)))
    if not enrolled:
        gone = "; the new identity was deleted again" if created else ""
        err.print(f"[red]no face was enrolled[/red]{gone}")
        raise typer.Exit(2)


def collect_identities(ctx: typer.Context, where: str) -> list[dict[str, Any]]:
    with connect(ctx) as client:
        return ids.paged(client, f"{where}/identities", "identities")


@identities_app.command("list")
def identities_list(
    ctx: typer.Context, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """Every identity of the collection, in creation order, with its face count."""
    name = gallery(ctx, collection)
    identities = collect_identities(ctx, base(name))
    output.show(
        ctx,
        json_out,
        identities,
        output.identities_table(name, identities, lambda v: show_id(ctx, v)),
    )


IdentityArg = Annotated[str, typer.Argument(help="Identity id, or any unique start of it")]


@identities_app.command("show")
def identities_show(
    ctx: typer.Context,
    identity: IdentityArg,
    collection: Collection = None,
    json_out: JsonFlag = False,
) -> None:
    """One identity with its enrolled faces (image, box)."""
    identities_faces(ctx, identity, collection, None, json_out)


@identities_app.command("faces")
def identities_faces(
    ctx: typer.Context,
    identity: IdentityArg,
    collection: Collection = None,
    save: Annotated[
        Path | None, typer.Option(file_okay=False, help="Write each face's thumbnail here")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """The identity's enrolled faces: the image each came from, its box; --save writes
    their thumbnails, to find a wrong one by eye."""
    where = base(gallery(ctx, collection))
    with connect(ctx) as client:
        found = ids.identity_id(client, where, identity)
        record = client.get(f"{where}/identities/{found}")
        faces = client.get(f"{where}/identities/{found}/faces").get("faces", [])
    if save is not None:
        from facerec_cli.people import save_thumbnails

        save_thumbnails(save, faces)
    if wants_json(ctx, json_out):
        listed = [{k: v for k, v in f.items() if k != "thumbnail"} for f in faces]
        output.print_json(out, {**record, "faces": listed})
    else:
        out.print(output.identity_faces_table(record, faces, lambda v: show_id(ctx, v)))
        if save is not None:
            out.print(f"thumbnails written to {save}")


@identities_app.command("rename")
def identities_rename(
    ctx: typer.Context,
    identity: IdentityArg,
    name: Annotated[str | None, typer.Argument(help="The new name")] = None,
    metadata: Annotated[
        str | None, typer.Option(help="Replace the metadata with this JSON object")
    ] = None,
    collection: Collection = None,
    json_out: JsonFlag = False,
) -> None:
    """Rename an identity, or (with --metadata) replace its metadata."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if metadata is not None:
        body["metadata"] = metadata_option(metadata)
    if not body:
        raise typer.BadParameter("give a new name or --metadata")
    where = base(gallery(ctx, collection))
    with connect(ctx) as client:
        found = ids.identity_id(client, where, identity)
        record = client.json("PATCH", f"{where}/identities/{found}", json=body)
    output.show(
        ctx, json_out, record, f"identity {show_id(ctx, found)} is now {record.get('name')!r}"
    )


@identities_app.command("delete-face")
def identities_delete_face(
    ctx: typer.Context,
    identity: IdentityArg,
    face: Annotated[str, typer.Argument(help="Face id, or any unique start of it")],
    collection: Collection = None,
    json_out: JsonFlag = False,
) -> None:
    """Erase one enrolled face of an identity (a wrong photo); the rest stay."""
    where = base(gallery(ctx, collection))
    with connect(ctx) as client:
        found = ids.identity_id(client, where, identity)
        faces_path = f"{where}/identities/{found}/faces"
        face_id = ids.face_id(
            lambda: client.get(faces_path).get("faces", []), face, f"identity {found[:12]}"
        )
        body = client.delete(f"{faces_path}/{face_id}")
    output.show(
        ctx,
        json_out,
        body,
        f"face {show_id(ctx, face_id)} erased ({body.get('remaining_faces')} remaining of it); "
        f"the identity has {plural(int(body.get('face_count', 0)), 'face')}",
    )


@identities_app.command("delete")
def identities_delete(
    ctx: typer.Context,
    identity: IdentityArg,
    collection: Collection = None,
    json_out: JsonFlag = False,
) -> None:
    """Delete an identity and every face vector of it."""
    where = base(gallery(ctx, collection))
    with connect(ctx) as client:
        found = ids.identity_id(client, where, identity)
        body = client.delete(f"{where}/identities/{found}")
    output.show(
        ctx,
        json_out,
        body,
        f"deleted {show_id(ctx, found)}: {plural(int(body.get('deleted_faces', 0)), 'face')} "
        f"erased, {body.get('remaining_faces')} remaining",
    )


@galleries_app.command("list")
def galleries_list(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """The tenant's galleries with their identity counts."""
    with connect(ctx) as client:
        galleries = client.get("/v1/collections").get("collections", [])
    output.show(ctx, json_out, galleries, output.galleries_table(galleries))


GalleryArg = Annotated[str, typer.Argument(help="Gallery name")]


@galleries_app.command("create")
def galleries_create(ctx: typer.Context, name: GalleryArg, json_out: JsonFlag = False) -> None:
    """Create an empty gallery (enrolling or ingesting into a new one creates it too)."""
    with connect(ctx) as client:
        response = client.request("PUT", f"/v1/collections/{name}")
    output.show(
        ctx,
        json_out,
        response.json(),
        f"gallery {name} {'created' if response.status_code == 201 else 'exists'}",
    )


@galleries_app.command("delete")
def galleries_delete(
    ctx: typer.Context,
    name: GalleryArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
    json_out: JsonFlag = False,
) -> None:
    """Delete a gallery: every identity, face, batch and result in it."""
    if not yes and not typer.confirm(f"Delete gallery {name!r} and everything in it?"):
        raise typer.Exit(1)
    with connect(ctx) as client:
        body = client.delete(f"/v1/collections/{name}")
    identities = plural(int(body.get("deleted_identities", 0)), "identity")
    output.show(
        ctx,
        json_out,
        body,
        f"deleted gallery {name}: {identities}, "
        f"{plural(int(body.get('deleted_faces', 0)), 'face')}, "
        f"{plural(int(body.get('deleted_batches', 0)), 'batch')}; "
        f"{body.get('remaining_faces')} faces remaining",
    )


@galleries_app.command("threshold")
def galleries_threshold(
    ctx: typer.Context,
    name: GalleryArg,
    value: Annotated[
        str | None, typer.Argument(help="Cosine similarity, or 'default' to remove it")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Show or set the gallery's own match threshold."""
    with connect(ctx) as client:
        if value is None:
            body = client.get(f"/v1/collections/{name}")
        else:
            try:
                threshold = None if value == "default" else float(value)
            except ValueError:
                raise typer.BadParameter("a number, or 'default'", param_hint="VALUE") from None
            body = client.json("PATCH", f"/v1/collections/{name}", json={"threshold": threshold})
    shown = body.get("threshold")
    output.show(
        ctx,
        json_out,
        body,
        f"gallery {name}: threshold {shown if shown is not None else 'default (model)'}",
    )


BatchArg = Annotated[str, typer.Argument(help="Batch id, or any unique start of it")]


@batches_app.command("list")
def batches_list(
    ctx: typer.Context, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """The collection's batches with their progress."""
    name = gallery(ctx, collection)
    with connect(ctx) as client:
        batches = client.get(f"{base(name)}/batches").get("batches", [])
    output.show(
        ctx, json_out, batches, output.batches_table(name, batches, lambda v: show_id(ctx, v))
    )


@batches_app.command("show")
def batches_show(ctx: typer.Context, batch: BatchArg, collection: Collection = None) -> None:
    """One batch, as JSON."""
    where = base(gallery(ctx, collection))
    with connect(ctx) as client:
        found = ids.batch_id(client, where, batch)
        output.print_json(out, client.get(f"{where}/batches/{found}"))


@batches_app.command("results")
def batches_results(
    ctx: typer.Context, batch: BatchArg, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """What each image of the batch held: faces and who they are, or why it failed."""
    where = base(gallery(ctx, collection))
    with connect(ctx) as client:
        found = ids.batch_id(client, where, batch)
        results = ids.paged(client, f"{where}/batches/{found}/results", "results")
    output.show(ctx, json_out, results, output.results_table(results, lambda v: show_id(ctx, v)))


@batches_app.command("cancel")
def batches_cancel(
    ctx: typer.Context, batch: BatchArg, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """Stop a batch: no more images are taken, images still queued are dropped (nothing of
    them is stored); what was processed stays."""
    where = base(gallery(ctx, collection))
    with connect(ctx) as client:
        found = ids.batch_id(client, where, batch)
        body = client.post(f"{where}/batches/{found}/cancel")
    queued = int(body.get("counts", {}).get("queued", 0))
    output.show(
        ctx,
        json_out,
        body,
        f"batch {show_id(ctx, found)} cancelled; {plural(queued, 'image')} still queued "
        "will be dropped",
    )


@batches_app.command("delete")
def batches_delete(
    ctx: typer.Context, batch: BatchArg, collection: Collection = None, json_out: JsonFlag = False
) -> None:
    """Delete a batch and what it added: its unassigned faces (named ones stay with their
    identity), its results; its images are forgotten, so they can be sent again."""
    where = base(gallery(ctx, collection))
    with connect(ctx) as client:
        found = ids.batch_id(client, where, batch)
        body = client.delete(f"{where}/batches/{found}")
    output.show(
        ctx,
        json_out,
        body,
        f"batch {show_id(ctx, found)} deleted: "
        f"{plural(int(body.get('deleted_faces', 0)), 'face')} erased, "
        f"{plural(int(body.get('forgotten_images', 0)), 'image')} forgotten",
    )

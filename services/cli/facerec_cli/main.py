"""Entry point of the ``facerec`` command."""

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from facerec_cli import output
from facerec_cli.client import image_part
from facerec_cli.context import (
    EXIT_INTERRUPTED,
    Collection,
    JsonFlag,
    Settings,
    base,
    connect,
    err,
    metadata_option,
    out,
)
from facerec_cli.ingest import Ingest, IngestOptions, Interrupted
from facerec_cli.people import people_app

DEFAULT_URL = "http://127.0.0.1:8000"
ENROLL_PER_REQUEST = 10  # the gateway's default limit of images per request

app = typer.Typer(
    help="facerec: face recognition from the command line, over the HTTP API.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)
identities_app = typer.Typer(help="List and delete enrolled identities.", no_args_is_help=True)
batches_app = typer.Typer(help="Batches of images sent by `facerec ingest`.", no_args_is_help=True)
app.add_typer(identities_app, name="identities")
app.add_typer(people_app, name="people")
app.add_typer(batches_app, name="batches")


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="FACEREC_URL", help="Gateway base URL")] = DEFAULT_URL,
    api_key: Annotated[
        str | None, typer.Option(envvar="FACEREC_API_KEY", help="API key (X-API-Key)")
    ] = None,
) -> None:
    ctx.obj = Settings(url, api_key)


@app.command()
def ingest(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="Folder of photos (recursive)")
    ],
    collection: Collection = "default",
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
    retry_refused: Annotated[
        bool, typer.Option(help="Send again the files an earlier run had refused")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Send every image under FOLDER to the collection as one batch, resumably.

    JPEG, PNG, WebP and BMP files (HEIC too when pillow-heif is installed) are found
    recursively. Run it again after Ctrl-C or a crash: what the server already has is
    skipped by content hash and never processed twice.
    """
    options = IngestOptions(
        collection=collection,
        concurrency=concurrency,
        part_size=part_size,
        batch_name=batch_name or folder.resolve().name,
        callback_url=callback_url,
        state_path=state,
        max_rate=max_rate,
        retry_refused=retry_refused,
    )
    # Waiting out 429 answers is routine here (backpressure): counted, not printed.
    with connect(ctx, concurrency + 2, transport_retries=4, quiet=True) as client:
        try:
            summary = Ingest(client, folder, options, err).run()
        except Interrupted as stop:
            if json_out:
                output.print_json(out, stop.summary.as_json())
            else:
                output.print_ingest(out, stop.summary)
            again = shlex.join(["facerec", *sys.argv[1:]]) if sys.argv[1:] else "the same command"
            err.print(
                f"[yellow]Interrupted[/yellow]: {stop.summary.remaining} image(s) not sent yet"
                + (f"; batch {stop.summary.batch_id} stays open" if stop.summary.batch_id else "")
                + f".\nTo resume, run it again: {again}\n"
                "Images already sent are skipped by content hash and never processed twice."
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if json_out:
        output.print_json(out, summary.as_json())
    else:
        output.print_ingest(out, summary)
    if summary.refused or summary.failed:
        raise typer.Exit(2)


@app.command()
def recognize(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A photo")],
    collection: Collection = "default",
    top_k: Annotated[int, typer.Option(min=1, max=20, help="Candidates per face")] = 3,
    threshold: Annotated[
        float | None, typer.Option(help="Cosine similarity for a match (default: server's)")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Find everyone in IMAGE among the collection's identities."""
    params: dict[str, Any] = {"top_k": top_k}
    if threshold is not None:
        params["threshold"] = threshold
    with connect(ctx) as client:
        result = client.job(
            f"{base(collection)}/recognize", [image_part(image.name, image.read_bytes())], params
        )
    if json_out:
        output.print_json(out, result)
    else:
        out.print(output.faces_table(result))


@app.command()
def enroll(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The person's name")],
    images: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="Photos of one face each")
    ],
    collection: Collection = "default",
    metadata: Annotated[
        str | None, typer.Option(help='JSON object kept with the identity, e.g. {"team":"R&D"}')
    ] = None,
    identity: Annotated[
        str | None, typer.Option("--to", help="Add to this existing identity id instead")
    ] = None,
    largest_face: Annotated[
        bool, typer.Option(help="Enrol the largest face of photos with several")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Create the identity NAME and enrol the faces of IMAGES."""
    meta = metadata_option(metadata)
    with connect(ctx) as client:
        if identity is None:
            created = client.post(
                f"{base(collection)}/identities", json={"name": name, "metadata": meta}
            )
            identity = str(created["id"])
        results = []
        params = {"largest_face": "true"} if largest_face else {}
        for i in range(0, len(images), ENROLL_PER_REQUEST):
            files = [image_part(p.name, p.read_bytes()) for p in images[i : i + ENROLL_PER_REQUEST]]
            results.append(
                client.job(f"{base(collection)}/identities/{identity}/faces", files, params)
            )
    if json_out:
        faces = [face for result in results for face in result.get("faces", [])]
        refused = [item for result in results for item in result.get("refused", [])]
        output.print_json(out, {"identity_id": identity, "faces": faces, "refused": refused})
    else:
        out.print(output.enroll_table(name, identity, results))
    if not any(result.get("faces") for result in results):
        err.print("[red]no face was enrolled[/red]")
        raise typer.Exit(2)


@identities_app.command("list")
def identities_list(
    ctx: typer.Context, collection: Collection = "default", json_out: JsonFlag = False
) -> None:
    """Every identity of the collection, in creation order."""
    identities: list[dict[str, Any]] = []
    cursor: str | None = None
    with connect(ctx) as client:
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = client.get(f"{base(collection)}/identities", params=params)
            identities += page.get("identities", [])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    if json_out:
        output.print_json(out, identities)
    else:
        out.print(output.identities_table(collection, identities))


@identities_app.command("delete")
def identities_delete(
    ctx: typer.Context,
    identity: Annotated[str, typer.Argument(help="Identity id")],
    collection: Collection = "default",
) -> None:
    """Delete an identity and every face vector of it."""
    with connect(ctx) as client:
        body = client.delete(f"{base(collection)}/identities/{identity}")
    out.print(
        f"deleted {identity}: {body.get('deleted_faces')} face(s) erased, "
        f"{body.get('remaining_faces')} remaining"
    )


@batches_app.command("list")
def batches_list(
    ctx: typer.Context, collection: Collection = "default", json_out: JsonFlag = False
) -> None:
    """The collection's batches with their progress."""
    with connect(ctx) as client:
        batches = client.get(f"{base(collection)}/batches").get("batches", [])
    if json_out:
        output.print_json(out, batches)
    else:
        out.print(output.batches_table(collection, batches))


@batches_app.command("show")
def batches_show(
    ctx: typer.Context,
    batch: Annotated[str, typer.Argument(help="Batch id")],
    collection: Collection = "default",
) -> None:
    """One batch, as JSON."""
    with connect(ctx) as client:
        output.print_json(out, client.get(f"{base(collection)}/batches/{batch}"))

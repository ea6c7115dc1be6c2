"""Tables for people, and JSON for machines."""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from facerec_cli.context import out, plural, wants_json
from facerec_cli.ingest import IngestSummary

SHOWN_PROBLEMS = 20
# How a table prints an id (short on a terminal, whole elsewhere): context.show_id.
Ids = Callable[[Any], str]


def whole(value: Any) -> str:
    return "" if value is None else str(value)


def id_column(table: Table, name: str = "id") -> None:
    # Never shortened by the table itself: an id that is cut is an id that cannot be used.
    table.add_column(name, no_wrap=True, overflow="fold", min_width=12)


def print_json(console: Console, data: Any) -> None:
    # Plain print: no wrapping or highlighting, so that the output always parses.
    console.file.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def show(
    ctx: typer.Context, json_out: bool, data: Any, human: RenderableType, markup: bool = True
) -> None:
    """A command's answer: ``data`` as JSON where JSON is asked for (the command's --json
    or the global one), else ``human``, a line or a table."""
    if wants_json(ctx, json_out):
        print_json(out, data)
    else:
        out.print(human, markup=markup)


def when(timestamp: Any) -> str:
    if not isinstance(timestamp, int | float):
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def box(bbox: Any) -> str:
    if not isinstance(bbox, list):
        return "-"
    return ",".join(str(round(v)) for v in bbox)


def ingest_table(summary: IngestSummary) -> Table:
    counts = summary.batch_counts
    title = "ingest interrupted" if summary.interrupted else "ingest"
    table = Table(title=f"{title}: {summary.folder} -> {summary.collection}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows: list[tuple[str, Any]] = [
        ("image files found", summary.found),
        ("other files ignored", summary.ignored),
        ("skipped, already in the collection", summary.known),
        ("skipped, same content as another file", summary.same_content),
        ("skipped, refused by an earlier run", summary.refused_before),
        ("skipped, failed for good in an earlier run", summary.failed_before),
        ("uploaded", summary.uploaded),
        ("duplicates (server already had them)", summary.duplicates),
        ("refused", len(summary.refused)),
    ]
    if summary.interrupted:
        rows.append(("not sent yet", summary.remaining))
    if summary.batch_id:
        rows.append(("batch", summary.batch_id))
    if counts:
        rows += [
            ("images processed in the batch", counts.get("done", 0)),
            ("images failed", counts.get("failed", 0)),
            ("faces found", counts.get("faces", 0)),
            ("faces matched to an identity", counts.get("matched", 0)),
            ("faces unassigned (see `facerec people`)", counts.get("unassigned", 0)),
        ]
        rows += [
            (f"faces of low quality: {reason.replace('_', ' ')}", n)
            for reason, n in summary.low_quality.items()
        ]
    rows += [
        ("elapsed", f"{summary.elapsed_s:.1f} s"),
        ("waited for a busy server (429, all threads)", f"{summary.server_wait_s:.1f} s"),
        (
            "images/s (uploaded by this run / elapsed)",
            "-" if summary.images_per_s is None else f"{summary.images_per_s:.1f}",
        ),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    return table


def print_ingest(console: Console, summary: IngestSummary) -> None:
    console.print(ingest_table(summary))
    for label, problems in (("refused", summary.refused), ("failed", summary.failed)):
        if not problems:
            continue
        console.print(f"[bold]{label}:[/bold]")
        for problem in problems[:SHOWN_PROBLEMS]:
            console.print(f"  {problem.name}: {problem.detail}", markup=False)
        if len(problems) > SHOWN_PROBLEMS:
            console.print(f"  ... and {len(problems) - SHOWN_PROBLEMS} more")
    if summary.refused_before or summary.failed_before:
        console.print(
            f"{plural(summary.refused_before + summary.failed_before, 'file')} skipped that "
            "an earlier run could not send or process; --retry-failed sends them again"
        )


def faces_table(result: dict[str, Any], ids: Ids = whole) -> Table:
    threshold = result.get("threshold")
    faces = result.get("faces", [])
    table = Table(title=f"{plural(len(faces), 'face')}, threshold {number(threshold)}")
    for column in ("#", "box", "identity", "similarity", "confidence", "det score"):
        table.add_column(column, justify="right" if column in ("#",) else "left")
    id_column(table)
    for i, face in enumerate(result.get("faces", []), 1):
        identity = face.get("identity")
        if face.get("too_small"):
            name = "[dim](too small)[/dim]"
        elif identity:
            name = f"[green]{identity.get('name')}[/green]"
        else:
            name = "[yellow]unknown[/yellow]"
        table.add_row(
            str(i),
            box(face.get("bbox")),
            name,
            number(face.get("similarity")),
            number(face.get("confidence")),
            number(face.get("det_score")),
            ids(identity.get("id")) if identity else "",
        )
    return table


def detect_table(result: dict[str, Any]) -> Table:
    faces = result.get("faces", [])
    table = Table(title=plural(len(faces), "face"))
    for column in ("#", "box", "det score", "too small"):
        table.add_column(column)
    for i, face in enumerate(faces, 1):
        table.add_row(
            str(i),
            box(face.get("bbox")),
            number(face.get("det_score")),
            "yes" if face.get("too_small") else "",
        )
    return table


def enroll_table(name: str, identity_id: str, results: list[dict[str, Any]], ids: Ids) -> Table:
    table = Table(title=f"enrolled {name} ({ids(identity_id)})")
    for column in ("image", "result", "box", "det score"):
        table.add_column(column)
    id_column(table, "face")
    for result in results:
        for face in result.get("faces", []):
            table.add_row(
                str(face.get("image", "")),
                "[green]enrolled[/green]",
                box(face.get("bbox")),
                number(face.get("det_score")),
                ids(face.get("face_id")),
            )
        for dup in result.get("duplicates", []):
            table.add_row(
                str(dup.get("image", "")),
                "[yellow]duplicate: enrolled already[/yellow]",
                "",
                "",
                ids(dup.get("face_id")),
            )
        for refused in result.get("refused", []):
            reason = refused.get("detail") or refused.get("reason") or "refused"
            table.add_row(
                str(refused.get("image", "")), f"[red]refused: {reason}[/red]", "", "", ""
            )
    return table


def identities_table(collection: str, identities: list[dict[str, Any]], ids: Ids) -> Table:
    table = Table(title=f"{plural(len(identities), 'identity')} in {collection}")
    id_column(table)
    for column in ("name", "faces", "created", "metadata"):
        table.add_column(column)
    for identity in identities:
        metadata = identity.get("metadata")
        table.add_row(
            ids(identity.get("id")),
            str(identity.get("name")),
            str(identity.get("face_count", "")),
            when(identity.get("created_at")),
            json.dumps(metadata, ensure_ascii=False) if metadata else "",
        )
    return table


def identity_faces_table(identity: dict[str, Any], faces: list[dict[str, Any]], ids: Ids) -> Table:
    table = Table(
        title=f"{identity.get('name')} ({ids(identity.get('id'))}): {plural(len(faces), 'face')}"
    )
    id_column(table, "face")
    for column in ("image", "box", "enrolled"):
        table.add_column(column)
    for face in faces:
        table.add_row(
            ids(face.get("face_id")),
            str(face.get("image") or ""),
            box(face.get("bbox")),
            when(face.get("created_at")),
        )
    return table


def people_table(collection: str, body: dict[str, Any], ids: Ids) -> Table:
    people = body.get("people", [])
    loose = int(body.get("unclustered", 0))
    table = Table(
        title=f"{plural(len(people), 'person')} in {collection} "
        f"({plural(loose, 'face')} not clustered yet)"
    )
    id_column(table)
    for column in ("faces", "first faces"):
        table.add_column(column)
    for person in people:
        faces = person.get("faces") or []
        table.add_row(
            ids(person.get("id")),
            str(person.get("face_count")),
            " ".join(ids(f) for f in faces[:3]),
        )
    return table


def person_table(person: dict[str, Any], ids: Ids) -> Table:
    faces = person.get("faces", [])
    table = Table(title=f"person {ids(person.get('id'))}: {plural(len(faces), 'face')}")
    id_column(table, "face")
    for column in ("image", "box"):
        table.add_column(column)
    for face in faces:
        table.add_row(ids(face.get("face_id")), str(face.get("image", "")), box(face.get("bbox")))
    return table


def batches_table(collection: str, batches: list[dict[str, Any]], ids: Ids) -> Table:
    table = Table(title=f"{plural(len(batches), 'batch')} in {collection}")
    id_column(table)
    for column in ("name", "status", "created", "images", "faces", "progress"):
        table.add_column(column)
    for batch in batches:
        counts = batch.get("counts", {})
        table.add_row(
            ids(batch.get("id")),
            str(batch.get("name") or ""),
            str(batch.get("status")),
            when(batch.get("created_at")),
            f"{counts.get('done', 0)}/{counts.get('submitted', 0)}",
            str(counts.get("faces", 0)),
            f"{100 * float(batch.get('progress') or 0):.0f}%",
        )
    return table


def results_table(results: list[dict[str, Any]], ids: Ids) -> Table:
    table = Table(title=plural(len(results), "image"))
    for column in ("image", "status", "faces", "who"):
        table.add_column(column)
    for result in results:
        faces = result.get("faces") or []
        names = [
            str(f["identity"].get("name")) if f.get("identity") else "unknown"
            for f in faces
            if not f.get("too_small")
        ]
        error = result.get("error") or {}
        table.add_row(
            str(result.get("name")),
            str(result.get("status")) + (f": {error.get('code')}" if error else ""),
            str(len(faces)),
            ", ".join(names),
        )
    return table


def galleries_table(galleries: list[dict[str, Any]]) -> Table:
    table = Table(title=plural(len(galleries), "gallery"))
    for column in ("name", "identities"):
        table.add_column(column)
    for item in galleries:
        table.add_row(str(item.get("name")), str(item.get("identities")))
    return table


def keys_table(keys: list[dict[str, Any]]) -> Table:
    table = Table(title=plural(len(keys), "key"))
    for column in ("prefix", "name", "scopes", "rate/min", "created", "last used", "expires"):
        table.add_column(column, no_wrap=column == "prefix")
    for key in keys:
        table.add_row(
            str(key.get("prefix")),
            str(key.get("name") or ""),
            ",".join(key.get("scopes") or []),
            str(key.get("rate_limit_per_minute") or "-"),
            when(key.get("created_at")),
            when(key.get("last_used_at")) if key.get("last_used_at") else "never",
            when(key.get("expires_at")) if key.get("expires_at") else "-",
        )
    return table


def letters_table(letters: list[dict[str, Any]]) -> Table:
    table = Table(title=plural(len(letters), "dead letter"))
    for column in ("job", "stage", "problem", "tries", "images", "when", "detail"):
        table.add_column(column, no_wrap=column == "job")
    for letter in letters:
        table.add_row(
            str(letter["job_id"]),
            str(letter["stage"]),
            str(letter["code"]),
            str(letter["attempts"]),
            str(letter["image_count"]),
            when(letter["at"]),
            str(letter["detail"]),
        )
    return table

"""Tables for people, and JSON for machines."""

import json
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from facerec_cli.ingest import IngestSummary

SHOWN_PROBLEMS = 20


def print_json(console: Console, data: Any) -> None:
    # Plain print: no wrapping or highlighting, so that the output always parses.
    console.file.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


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
        ("elapsed", f"{summary.elapsed_s:.1f} s"),
        ("waited for a busy server (429, all threads)", f"{summary.server_wait_s:.1f} s"),
        ("images/s (uploaded / elapsed)", f"{summary.images_per_s:.1f}"),
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


def faces_table(result: dict[str, Any]) -> Table:
    threshold = result.get("threshold")
    table = Table(title=f"{len(result.get('faces', []))} face(s), threshold {number(threshold)}")
    for column in ("#", "box", "identity", "similarity", "confidence", "det score", "id"):
        table.add_column(column, justify="right" if column in ("#",) else "left")
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
            identity.get("id", "") if identity else "",
        )
    return table


def enroll_table(name: str, identity_id: str, results: list[dict[str, Any]]) -> Table:
    table = Table(title=f"enrolled {name} ({identity_id})")
    for column in ("image", "face", "box", "det score"):
        table.add_column(column)
    for result in results:
        for face in result.get("faces", []):
            table.add_row(
                str(face.get("image", "")),
                str(face.get("face_id", "")),
                box(face.get("bbox")),
                number(face.get("det_score")),
            )
        for refused in result.get("refused", []):
            reason = refused.get("reason") or refused.get("detail") or "refused"
            table.add_row(str(refused.get("image", "")), f"[red]refused: {reason}[/red]", "", "")
    return table


def identities_table(collection: str, identities: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(identities)} identities in {collection}")
    for column in ("id", "name", "faces", "created", "metadata"):
        table.add_column(column)
    for identity in identities:
        metadata = identity.get("metadata")
        table.add_row(
            str(identity.get("id")),
            str(identity.get("name")),
            str(identity.get("face_count", "")),
            when(identity.get("created_at")),
            json.dumps(metadata, ensure_ascii=False) if metadata else "",
        )
    return table


def people_table(collection: str, body: dict[str, Any]) -> Table:
    people = body.get("people", [])
    table = Table(
        title=f"{len(people)} people in {collection} "
        f"({body.get('unclustered', 0)} faces not clustered yet)"
    )
    for column in ("id", "faces", "first faces"):
        table.add_column(column)
    for person in people:
        faces = person.get("faces") or []
        table.add_row(str(person.get("id")), str(person.get("face_count")), " ".join(faces[:3]))
    return table


def person_table(person: dict[str, Any]) -> Table:
    faces = person.get("faces", [])
    table = Table(title=f"person {person.get('id')}: {len(faces)} face(s)")
    for column in ("face", "image", "box"):
        table.add_column(column)
    for face in faces:
        table.add_row(str(face.get("face_id")), str(face.get("image", "")), box(face.get("bbox")))
    return table


def batches_table(collection: str, batches: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(batches)} batches in {collection}")
    for column in ("id", "name", "status", "created", "images", "faces", "progress"):
        table.add_column(column)
    for batch in batches:
        counts = batch.get("counts", {})
        table.add_row(
            str(batch.get("id")),
            str(batch.get("name") or ""),
            str(batch.get("status")),
            when(batch.get("created_at")),
            f"{counts.get('done', 0)}/{counts.get('submitted', 0)}",
            str(counts.get("faces", 0)),
            f"{100 * float(batch.get('progress') or 0):.0f}%",
        )
    return table

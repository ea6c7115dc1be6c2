"""``facerec dead-letters``: jobs that failed on every try (their worker died, a stage
raised, or ran out of time), kept with their images, and sending one again. Needs an admin
key, as the API does."""

from typing import Annotated

import typer

from facerec_cli import output
from facerec_cli.context import JsonFlag, connect

dead_letters_app = typer.Typer(
    help="Jobs that failed on every try (needs an admin key): list, redrive.",
    no_args_is_help=True,
)


@dead_letters_app.command("list")
def dead_letters_list(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Your tenant's dead letters, newest first: the job, the stage it died in, why."""
    with connect(ctx) as client:
        letters = client.get("/v1/dead-letters").get("dead_letters", [])
    output.show(
        ctx, json_out, letters, output.letters_table(letters) if letters else "no dead letters"
    )


@dead_letters_app.command("redrive")
def dead_letters_redrive(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job id, as `list` shows it")],
    json_out: JsonFlag = False,
) -> None:
    """Send a dead letter's job again, from the stage it died in (once its cause is fixed)."""
    with connect(ctx) as client:
        body = client.post(f"/v1/dead-letters/{job_id}/redrive")
    output.show(
        ctx, json_out, body, f"job {body['job_id']} queued again at its {body['stage']} stage"
    )

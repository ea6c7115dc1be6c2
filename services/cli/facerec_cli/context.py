"""What every command shares: the consoles, common options, and a client that turns server
errors into a message and a non-zero exit."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from facerec_cli.client import ApiError, Cancelled, Client

EXIT_INTERRUPTED = 130

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

Collection = Annotated[
    str,
    typer.Option("--collection", "-c", envvar="FACEREC_COLLECTION", help="Gallery to work in"),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def metadata_option(value: str | None) -> dict[str, Any]:
    """The ``--metadata`` option: a JSON object, or nothing."""
    if value is None:
        return {}
    try:
        meta = json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from None
    if not isinstance(meta, dict):
        raise typer.BadParameter("give a JSON object", param_hint="--metadata")
    return meta


@dataclass
class Settings:
    url: str
    api_key: str | None


def waiting(why: str, seconds: float) -> None:
    err.print(f"[dim]{escape(why)}; retrying in {seconds:.0f} s[/dim]")


@contextmanager
def connect(
    ctx: typer.Context, connections: int = 8, transport_retries: int = 0, quiet: bool = False
) -> Iterator[Client]:
    """A client for one command; server errors become a message and a non-zero exit."""
    settings: Settings = ctx.obj
    client = Client(
        settings.url,
        settings.api_key,
        connections=connections,
        on_wait=None if quiet else waiting,
        transport_retries=transport_retries,
    )
    try:
        yield client
    except ApiError as exc:
        fail(exc)
    except (KeyboardInterrupt, Cancelled):
        err.print("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        client.close()


def fail(exc: ApiError) -> None:
    if exc.status:
        message = f"{exc.detail or exc.title} ({exc.status} {exc.title})"
    else:
        message = f"{exc.title}: {exc.detail}"
    err.print("[bold red]error:[/bold red] ", end="")
    err.print(message, markup=False)
    if exc.status == 401:
        err.print("give a key with --api-key or FACEREC_API_KEY")
    raise typer.Exit(1)


def base(collection: str) -> str:
    return f"/v1/collections/{collection}"

"""What every command shares: the consoles, common options, and a client that turns server
errors into a message and a non-zero exit."""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from facerec_cli.client import ApiError, Cancelled, Client

EXIT_INTERRUPTED = 130

# Piped output is read by programs and people who copy from it: never cut a cell short to
# fit 80 columns (rich would end it in an ellipsis), so give it all the width it needs.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 10_000)
err = Console(stderr=True, highlight=False)

DEFAULT_COLLECTION = "default"
# How many characters of an id a table shows; any unique prefix is accepted back.
SHORT_ID = 12

# Each command also takes these after its name; given there they win over the global ones.
Collection = Annotated[
    str | None,
    typer.Option(
        "--collection",
        "-c",
        help="Gallery to work in (default: the global -c, FACEREC_COLLECTION, or 'default')",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


PLURALS = {"identity": "identities", "batch": "batches", "person": "people", "gallery": "galleries"}


def plural(n: int, word: str) -> str:
    """'1 face', '2 faces', '1 batch', '3 batches'."""
    return f"{n} {word}" if n == 1 else f"{n} {PLURALS.get(word, word + 's')}"


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
    collection: str = DEFAULT_COLLECTION
    json: bool = False
    no_trunc: bool = False


def settings_of(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


def gallery(ctx: typer.Context, local: str | None) -> str:
    """The gallery a command works in: its own -c, else the global one."""
    return local or settings_of(ctx).collection


def wants_json(ctx: typer.Context, local: bool) -> bool:
    return local or settings_of(ctx).json


def show_id(ctx: typer.Context, value: Any) -> str:
    """An id as a table shows it: short on a terminal, whole with --no-trunc, --json or
    when the output goes to a pipe or a file (where it is copied or parsed)."""
    text = "" if value is None else str(value)
    settings = settings_of(ctx)
    if settings.no_trunc or settings.json or not out.is_terminal:
        return text
    return text[:SHORT_ID]


def waiting(why: str, seconds: float) -> None:
    err.print(f"[dim]{escape(why)}; retrying in {seconds:.0f} s[/dim]")


@contextmanager
def connect(
    ctx: typer.Context, connections: int = 8, transport_retries: int = 0, quiet: bool = False
) -> Iterator[Client]:
    """A client for one command; server errors become a message and a non-zero exit."""
    settings = settings_of(ctx)
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
    if exc.type.endswith("/collection-not-found"):
        err.print(
            "choose the gallery with -c NAME (or FACEREC_COLLECTION); `facerec galleries list`"
        )
    raise typer.Exit(1)


def base(collection: str) -> str:
    return f"/v1/collections/{collection}"

"""Entry point of the ``facerec`` command."""

import typer

app = typer.Typer(help="facerec: face recognition from the command line, over the HTTP API.")

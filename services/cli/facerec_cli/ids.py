"""IDs people can type: tables show the first 12 characters, and every command takes any
unique prefix of an id back, as docker and git do. A prefix is matched against what the
server lists; one that fits several ids is refused with the candidates named."""

import re
from collections.abc import Callable, Iterable
from typing import Any

import typer

from facerec_cli.client import Client
from facerec_cli.context import SHORT_ID

FULL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PREFIX = re.compile(r"^[0-9a-f-]{1,36}$")


def resolve(what: str, given: str, listing: Callable[[], Iterable[str]], where: str) -> str:
    """The one id of ``listing()`` that starts with ``given``; a full id is taken as is."""
    value = given.strip().lower()
    if FULL_ID.match(value):
        return value
    if not PREFIX.match(value):
        raise typer.BadParameter(f"{given!r} is not an id or the start of one ({what} ids are hex)")
    found = sorted({i for i in listing() if i.startswith(value)})
    if len(found) == 1:
        return found[0]
    if not found:
        raise typer.BadParameter(f"no {what} id starts with {given!r} in {where}")
    shown = ", ".join(i[:SHORT_ID] for i in found[:5]) + (", ..." if len(found) > 5 else "")
    raise typer.BadParameter(
        f"{given!r} is the start of {len(found)} {what} ids ({shown}); give more characters"
    )


def paged(client: Client, path: str, key: str) -> list[dict[str, Any]]:
    """Every item of a listing that pages with next_cursor."""
    items: list[dict[str, Any]] = []
    cursor: Any = None
    while True:
        params: dict[str, Any] = {"limit": 100 if key == "results" else 1000}
        if cursor is not None:
            params["cursor"] = cursor
        page = client.get(path, params=params)
        items += page.get(key, [])
        cursor = page.get("next_cursor")
        if cursor is None:
            return items


def identity_id(client: Client, base: str, given: str) -> str:
    return resolve(
        "identity",
        given,
        lambda: (str(i["id"]) for i in paged(client, f"{base}/identities", "identities")),
        f"gallery {base.rsplit('/', 1)[-1]!r}",
    )


def person_id(client: Client, base: str, given: str) -> str:
    return resolve(
        "person",
        given,
        lambda: (str(p["id"]) for p in client.get(f"{base}/people").get("people", [])),
        f"gallery {base.rsplit('/', 1)[-1]!r}",
    )


def batch_id(client: Client, base: str, given: str) -> str:
    return resolve(
        "batch",
        given,
        lambda: (str(b["id"]) for b in client.get(f"{base}/batches").get("batches", [])),
        f"gallery {base.rsplit('/', 1)[-1]!r}",
    )


def face_id(faces: Callable[[], list[dict[str, Any]]], given: str, owner: str) -> str:
    return resolve("face", given, lambda: (str(f["face_id"]) for f in faces()), owner)

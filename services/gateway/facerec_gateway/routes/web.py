"""The web page: static files shipped in the package, served at ``/`` and ``/web/...``.

The page talks to the public API only, with the key the person enters (kept for the tab,
sent as ``X-API-Key``). Every answer carries a strict Content-Security-Policy: scripts and
styles from this origin only, no inline script, images from this origin, ``blob:`` (the
photo being looked at) and ``data:`` (face thumbnails), requests to this origin only.
"""

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Small files that change with the package: always revalidated, never stale.
    "Cache-Control": "no-cache",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _asset(name: str) -> Response:
    media_type = next((t for ext, t in MEDIA_TYPES.items() if name.endswith(ext)), None)
    files = resources.files("facerec_gateway").joinpath("web")
    # Only plain names of the shipped files: no folders, no dot files, no other types.
    plain = media_type is not None and "/" not in name and not name.startswith(".")
    if media_type is None or not plain or not files.joinpath(name).is_file():
        raise HTTPException(404, f"no file {name!r} in the web page")
    return Response(files.joinpath(name).read_bytes(), media_type=media_type, headers=HEADERS)


@router.api_route("/", methods=["GET", "HEAD"])
async def page() -> Response:
    """The page itself."""
    return _asset("index.html")


@router.api_route("/web/{name}", methods=["GET", "HEAD"])
async def asset(name: str) -> Response:
    """The page's scripts and styles."""
    return _asset(name)

"""The gateway over HTTP: the API key on every request, problem+json errors as exceptions,
``429`` answers waited out (``Retry-After``) and retried, jobs followed until they end."""

import threading
from collections.abc import Callable, Sequence
from typing import Any

import httpx

JOB_WAIT_S = 30
TERMINAL = ("done", "failed")
# Transport errors after which sending the same request again is safe for any request:
# the connection was never made, so the server never saw it.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)

FilePart = tuple[str, tuple[str, bytes, str]]


class Cancelled(Exception):
    """The command was told to stop (Ctrl-C) while it waited."""


class ApiError(Exception):
    """An error answer of the server (problem+json), or a server that cannot be reached."""

    def __init__(
        self, status: int, title: str, detail: str, type_: str = "", body: Any = None
    ) -> None:
        super().__init__(f"{title}: {detail}" if detail else title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.body = body

    @classmethod
    def from_response(cls, response: httpx.Response) -> "ApiError":
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and ("detail" in body or "title" in body):
            return cls(
                int(body.get("status") or response.status_code),
                str(body.get("title") or response.reason_phrase),
                str(body.get("detail") or ""),
                str(body.get("type") or ""),
                body,
            )
        text = response.text.strip()[:300]
        return cls(response.status_code, response.reason_phrase or "Error", text, "", body)

    @classmethod
    def from_problem(cls, problem: dict[str, Any], status: int = 0) -> "ApiError":
        """A problem object found inside a body (a failed job's ``error``)."""
        return cls(
            int(problem.get("status") or status),
            str(problem.get("title") or "Error"),
            str(problem.get("detail") or ""),
            str(problem.get("type") or problem.get("code") or ""),
            problem,
        )


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """Seconds to wait before the same request again (``Retry-After``, in seconds)."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class Client:
    """One ``httpx.Client`` per command; safe to share between threads."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout_s: float = 120.0,
        connections: int = 8,
        on_wait: Callable[[str, float], None] | None = None,
        transport_retries: int = 0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            transport=transport,
        )
        self._on_wait = on_wait
        self._transport_retries = transport_retries
        self.stop = threading.Event()  # set to give up waiting (Ctrl-C)
        self.waited_s = 0.0  # total time spent honouring 429 answers
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sleep(self, seconds: float, why: str) -> None:
        if self._on_wait is not None and seconds >= 2:
            self._on_wait(why, seconds)
        with self._lock:
            self.waited_s += seconds
        if self.stop.wait(seconds):
            raise Cancelled

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send until the answer is not ``429``; raise ``ApiError`` for any other error.

        With ``transport_retries``, a request whose connection could not be made is sent
        again (after a pause); an ``idempotent`` one also after a broken connection or a
        timeout.
        """
        failures = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                failures += 1
                if failures > self._transport_retries or not (
                    idempotent or isinstance(exc, NOT_SENT)
                ):
                    raise ApiError(0, "Cannot reach the server", f"{self.url}: {exc}") from exc
                self._sleep(min(8.0, 0.5 * 2**failures), "server unreachable")
                continue
            if response.status_code == 429:
                problem = ApiError.from_response(response)
                self._sleep(retry_after(response), problem.detail or "rate limited")
                continue
            if response.status_code >= 400:
                raise ApiError.from_response(response)
            return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.json("GET", path, idempotent=True, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.json("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.json("DELETE", path, idempotent=True, **kwargs)

    def job(
        self, path: str, files: Sequence[FilePart], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Submit an image job with ``wait`` and follow it to its end; its ``result``."""
        response = self.request(
            "POST", path, params={"wait": JOB_WAIT_S, **(params or {})}, files=list(files)
        )
        body: dict[str, Any] = response.json()
        while body.get("status") not in TERMINAL:
            body = self.get(f"/v1/jobs/{body['job_id']}", params={"wait": JOB_WAIT_S})
        if body["status"] == "failed":
            raise ApiError.from_problem(body.get("error") or {"title": "Job failed"})
        result: dict[str, Any] = body.get("result") or {}
        return result


def content_type(name: str) -> str:
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return {
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "png": "image/png",
        "webp": "image/webp",
        "bmp": "image/bmp",
        "gif": "image/gif",
        "tif": "image/tiff",
        "tiff": "image/tiff",
        "heic": "image/heic",
        "heif": "image/heif",
        "avif": "image/avif",
    }.get(suffix, "application/octet-stream")


def image_part(name: str, data: bytes) -> FilePart:
    return ("image", (name, data, content_type(name)))

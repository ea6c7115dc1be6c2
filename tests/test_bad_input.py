"""Bad input gets a clear 4xx problem, never a 500, and no worker dies of it."""

import json
import socket
import struct
import zlib

import httpx
import images
import pytest
from helpers import assert_problem, new_identity, upload
from stack import Stack


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height``: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def truncated_jpeg() -> bytes:
    data = images.portrait()
    return data[: len(data) // 2]


def pdf() -> bytes:
    """A scanned page as PDF: a document, not an image the service reads."""
    return b"%PDF-1.7\n" + b"\0" * 64


CASES = [
    pytest.param(b"", 400, "empty-image", id="empty"),
    pytest.param(b"hello, I am not an image", 415, "unsupported-image-type", id="not-an-image"),
    pytest.param(pdf(), 415, "unsupported-image-type", id="pdf"),
    pytest.param(png_claiming(50_000, 50_000), 413, "too-many-pixels", id="decompression-bomb"),
    pytest.param(b"\xff\xd8\xff\xe0" + b"\0" * 100, 422, "image-undecodable", id="jpeg-garbage"),
    pytest.param(truncated_jpeg(), 422, "image-undecodable", id="truncated-jpeg"),
]


@pytest.mark.parametrize(("data", "status", "code"), CASES)
def test_detect_refuses_bad_images(api: httpx.Client, data: bytes, status: int, code: str) -> None:
    assert_problem(api.post("/v1/detect", params={"wait": 30}, files=upload(data)), status, code)


@pytest.mark.parametrize(("data", "status", "code"), CASES)
def test_recognize_refuses_bad_images(
    api: httpx.Client, data: bytes, status: int, code: str
) -> None:
    assert api.put("/v1/collections/bad").status_code in (200, 201)
    response = api.post("/v1/collections/bad/recognize", params={"wait": 30}, files=upload(data))
    assert_problem(response, status, code)


def test_an_image_over_the_byte_limit_is_refused_with_413(api: httpx.Client) -> None:
    too_big = b"\xff\xd8\xff\xe0" + b"\0" * (10 * 1024 * 1024)
    assert_problem(api.post("/v1/detect", files=upload(too_big)), 413, "image-too-large")


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(stack: Stack) -> None:
    """Headers announce 10 GB; the gateway answers 413 without waiting for the body."""
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        reply = b""
        while b"}" not in reply.partition(b"\r\n\r\n")[2]:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413")
    assert "application/problem+json" in head
    assert json.loads(body)["type"] == "/problems/request-too-large"


def test_an_enrolment_of_one_bad_image_among_good_ones_stores_nothing(api: httpx.Client) -> None:
    person = new_identity(api, "bad", "Someone")
    files = [
        ("image", ("good.jpg", images.portrait(), "image/jpeg")),
        ("image", ("bad.jpg", b"not an image", "image/jpeg")),
    ]
    response = api.post(
        f"/v1/collections/bad/identities/{person}/faces", params={"wait": 30}, files=files
    )
    assert "bad.jpg" in assert_problem(response, 415, "unsupported-image-type")["detail"]
    assert api.get(f"/v1/collections/bad/identities/{person}").json()["face_count"] == 0


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("post", "/v1/detect", {}, 422, "invalid-request"),  # no image field
        ("post", "/v1/detect", {"json": {"image": "abc"}}, 422, "invalid-request"),
        (
            "post",
            "/v1/collections/bad/recognize?threshold=7",
            {"files": upload(b"x")},
            422,
            "invalid-request",
        ),
        (
            "post",
            "/v1/collections/bad/recognize?top_k=0",
            {"files": upload(b"x")},
            422,
            "invalid-request",
        ),
        ("post", "/v1/collections/bad/identities", {"json": {"name": ""}}, 422, "invalid-request"),
        (
            "post",
            "/v1/collections/bad/identities",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            422,
            "invalid-request",
        ),
        (
            "post",
            "/v1/collections/no%20spaces/identities",
            {"json": {"name": "x"}},
            422,
            "invalid-request",
        ),
        (
            "get",
            "/v1/collections/bad/identities/00000000-0000-7000-8000-000000000000",
            {},
            404,
            "identity-not-found",
        ),
        (
            "delete",
            "/v1/collections/bad/identities/00000000-0000-7000-8000-000000000000",
            {},
            404,
            "identity-not-found",
        ),
        ("delete", "/v1/collections/never-created", {}, 404, "collection-not-found"),
        ("get", "/v1/jobs/00000000-0000-7000-8000-000000000000", {}, 404, "job-not-found"),
        ("get", "/v1/jobs/does-not-exist", {}, 422, "invalid-request"),
        ("get", "/v1/nowhere", {}, 404, "not-found"),
        ("put", "/v1/detect", {}, 405, "method-not-allowed"),
    ],
)
def test_malformed_requests_get_problems(
    api: httpx.Client, method: str, path: str, kwargs: dict[str, object], status: int, code: str
) -> None:
    assert_problem(api.request(method, path, **kwargs), status, code)  # type: ignore[arg-type]


def test_too_many_images_in_one_request(api: httpx.Client) -> None:
    person = new_identity(api, "bad", "Many")
    files = [("image", (f"{i}.jpg", images.portrait(), "image/jpeg")) for i in range(11)]
    response = api.post(f"/v1/collections/bad/identities/{person}/faces", files=files)
    assert_problem(response, 422, "invalid-input")


def test_verify_with_a_faceless_image_says_which(api: httpx.Client) -> None:
    files = {
        "image1": ("face.jpg", images.portrait(), "image/jpeg"),
        "image2": ("mask.jpg", images.no_face(), "image/jpeg"),
    }
    body = assert_problem(api.post("/v1/verify", params={"wait": 30}, files=files), 422, "no-face")
    assert "mask.jpg" in body["detail"]


def test_every_worker_is_still_alive_after_the_bad_input(api: httpx.Client, stack: Stack) -> None:
    # Runs after the tests above in this module (pytest keeps file order).
    assert all(stack.alive().values()), stack.alive()
    assert api.get("/readyz").status_code == 200
    assert (
        len(
            api.post("/v1/detect", params={"wait": 30}, files=upload(images.portrait())).json()[
                "result"
            ]["faces"]
        )
        == 1
    )

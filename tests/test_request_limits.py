"""Bad input beyond images: JSON bodies and fields over their limits, and callback URLs
that point into the service's own network."""

import asyncio
import ipaddress
import json
from collections.abc import Iterator

import httpx
import pytest
from facerec_gateway.egress import CallbackRefused, EgressPolicy, parse_allowed
from facerec_gateway.fields import MAX_JSON_BODY_BYTES, MAX_METADATA_BYTES
from helpers import assert_problem, unique


def test_private_and_local_addresses_are_refused_public_ones_accepted() -> None:
    policy = EgressPolicy()
    for address in (
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata service
        "100.64.0.1",  # shared address space
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",  # 127.0.0.1 in IPv6 clothing
    ):
        assert policy.refusal(ipaddress.ip_address(address)) is not None, address
    for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"):
        assert policy.refusal(ipaddress.ip_address(address)) is None, address
    allowing = EgressPolicy(parse_allowed("10.0.0.0/8, 127.0.0.1"))
    assert allowing.refusal(ipaddress.ip_address("10.9.9.9")) is None
    assert allowing.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert allowing.refusal(ipaddress.ip_address("127.0.0.2")) is not None


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    async def refused(url: str) -> str:
        with pytest.raises(CallbackRefused) as caught:
            await EgressPolicy().resolve(url)
        return caught.value.detail

    assert "127.0.0.1" in asyncio.run(refused("http://localhost:6379/"))
    assert "not an http(s) URL" in asyncio.run(refused("gopher://8.8.8.8/"))
    host, address = asyncio.run(EgressPolicy().resolve("https://8.8.8.8:8443/hook"))
    assert (host, str(address)) == ("8.8.8.8", "8.8.8.8")


def test_a_send_goes_to_the_checked_address_with_the_name_in_host() -> None:
    """The request reaches the address that was checked; its Host header keeps the name."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    async def send() -> None:
        policy = EgressPolicy(parse_allowed("127.0.0.1"))
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            await policy.pinned_post(http, "http://localhost:8123/hook?x=1", b"{}", {})

    asyncio.run(send())
    [request] = seen
    assert request.url.host == "127.0.0.1" and request.url.port == 8123
    assert request.url.raw_path == b"/hook?x=1"
    assert request.headers["host"] == "localhost:8123"


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:6379/",  # the stack allows 127.0.0.1 only
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://0.0.0.0:6379/",
        "http://127.0.0.2:6379/",
    ],
)
def test_a_batch_callback_into_the_own_network_is_refused(api: httpx.Client, url: str) -> None:
    collection = unique("ssrf")
    body = assert_problem(
        api.post(f"/v1/collections/{collection}/batches", json={"callback_url": url}),
        422,
        "invalid-input",
    )
    assert "not a public address" in body["detail"]
    # Refused before anything was made: not even the gallery.
    assert api.get(f"/v1/collections/{collection}").status_code == 404


def test_metadata_and_bodies_over_their_limits_are_refused(api: httpx.Client) -> None:
    collection = unique("limits")
    base = f"/v1/collections/{collection}/identities"
    big = {"notes": "x" * MAX_METADATA_BYTES}
    assert_problem(api.post(base, json={"name": "Big", "metadata": big}), 422, "invalid-request")
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(8):
        deep = {"next": deep}
    assert_problem(api.post(base, json={"name": "Deep", "metadata": deep}), 422, "invalid-request")
    assert_problem(api.post(base, json={"name": "n" * 201}), 422, "invalid-request")

    # A body past the JSON limit is refused from its Content-Length, unread...
    huge = json.dumps({"name": "Huge", "metadata": {"x": "y" * MAX_JSON_BODY_BYTES}}).encode()
    headers = {"content-type": "application/json"}
    assert_problem(api.post(base, content=huge, headers=headers), 413, "request-too-large")

    # ...and one sent without a length (chunked) is counted as it arrives.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(huge), 4096):
            yield huge[start : start + 4096]

    chunked = api.post(base, content=chunks(), headers=headers)
    assert "content-length" not in chunked.request.headers
    assert_problem(chunked, 413, "request-too-large")
    # Nothing was stored by any of them.
    assert api.get(f"/v1/collections/{collection}").status_code == 404

    fine = api.post(base, json={"name": "Fine", "metadata": {"team": {"role": "lead"}}})
    assert fine.status_code == 201, fine.text

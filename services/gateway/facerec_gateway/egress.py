"""Which addresses the service may call back: never its own network, unless allowed.

A batch's ``callback_url`` is chosen by a client, and the gateway POSTs to it from inside
the deployment, where Redis, Qdrant and a cloud's metadata service answer. So the host is
resolved and every address it resolves to must be public (not loopback, private,
link-local, shared, multicast, reserved or unspecified), unless a setting names it. The
check runs when the batch is made (a clear 422) and again at each send, where the request
then goes to the address that was checked (the URL's host travels in the Host header and
TLS server name), so a name that resolves differently the second time (DNS rebinding)
reaches nothing it should not.
"""

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from facerec_common.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallbackRefused(InvalidInput):
    """The callback URL points where the service must not send requests."""


def parse_allowed(entries: str) -> list[Network]:
    """Comma-separated networks or addresses (``127.0.0.1``, ``10.0.0.0/8``, ``::1``)."""
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries.split(",") if e.strip()]


def _unmapped(address: IPAddress) -> IPAddress:
    """``::ffff:127.0.0.1`` is 127.0.0.1 to the kernel; judge it as such."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class EgressPolicy:
    allowed: list[Network] = field(default_factory=list)

    def refusal(self, address: IPAddress) -> str | None:
        """Why the service may not call ``address``, or None when it may."""
        address = _unmapped(address)
        if any(address in network for network in self.allowed):
            return None
        if address.is_multicast or not address.is_global:
            return f"{address} is not a public address"
        return None

    async def resolve(self, url: str) -> tuple[str, IPAddress]:
        """The URL's host and the first of its addresses, once every address it resolves to
        has been checked; ``CallbackRefused`` says which one may not be called."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise CallbackRefused(f"callback_url {url!r} is not an http(s) URL with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise CallbackRefused(f"callback_url host {host!r} does not resolve: {exc}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise CallbackRefused(
                    f"callback_url host {host!r} resolves to {reason}; the service does not "
                    "call its own network unless FACEREC_GATEWAY_CALLBACK_ALLOWED_NETWORKS "
                    "names it"
                )
        return host, addresses[0]

    async def pinned_post(
        self, http: httpx.AsyncClient, url: str, content: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        """POST to ``url`` at the address just checked, never at a fresh lookup."""
        host, address = await self.resolve(url)
        target = httpx.URL(url)
        pinned = target.copy_with(host=str(address))
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        host_header = host if target.port is None else f"{host}:{target.port}"
        return await http.post(
            pinned,
            content=content,
            headers={**headers, "Host": host_header},
            extensions=extensions,
        )

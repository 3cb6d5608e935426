"""The lean HTTP/1.1 client's parts the webhook dispatcher relies on beyond the gateway's hop
(tests/gateway/test_upstream_http.py has the rest): https with the certificate checked, and
``connect_to``, an address given instead of resolving the URL's host again."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gpuyard.http1.client import ConnectError, HttpClient, LocalProtocolError, RemoteProtocolError

ANSWER = b"HTTP/1.1 204 No Content\r\nretry-after: 7\r\n\r\n"


def certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` and 127.0.0.1 (its file, its key's file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@asynccontextmanager
async def server(tls: ssl.SSLContext | None, heads: list[bytes]) -> AsyncIterator[int]:
    """A loopback server answering every request 204 (``Retry-After: 7``), keeping connections
    open; each request's head goes to ``heads``. Yields its port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                heads.append(head)
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


async def post(client: HttpClient, url: str, connect_to: str | None = None) -> int:
    response = await client.request(url, "POST", "/hook?a=1", [], b"{}", connect_to=connect_to)
    try:
        while await response.read():
            pass
    finally:
        response.close()
    assert response.headers["retry-after"] == "7"
    return response.status_code


async def test_https_checks_the_certificate_and_keeps_the_connection(tmp_path: Path) -> None:
    cert_file, key_file = certificate(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert_file, key_file)
    heads: list[bytes] = []
    async with server(served, heads) as port:
        trusting = ssl.create_default_context(cafile=str(cert_file))
        client = HttpClient(tls=trusting)
        url = f"https://localhost:{port}/hook"
        assert await post(client, url) == 204
        assert await post(client, url) == 204
        assert client.idle(url) == 1  # both over one connection
        assert heads[0].startswith(b"POST /hook?a=1 HTTP/1.1\r\nhost: localhost:")
        await client.aclose()
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await post(HttpClient(tls=ssl.create_default_context()), url)  # not trusted
        with pytest.raises(LocalProtocolError, match="no TLS context"):
            await post(HttpClient(), url)


async def test_connect_to_sends_to_that_address_under_the_urls_name() -> None:
    heads: list[bytes] = []
    async with server(None, heads) as port:
        client = HttpClient()
        url = f"http://hooks.example.invalid:{port}/hook"  # a name that resolves nowhere
        with pytest.raises(ConnectError):
            await post(client, url)
        assert await post(client, url, connect_to="127.0.0.1") == 204
        assert f"host: hooks.example.invalid:{port}\r\n".encode() in heads[0]
        assert client.idle(url, connect_to="127.0.0.1") == 1 and client.idle(url) == 0
        await client.aclose()


async def test_credentials_in_the_url_never_reach_the_host_header() -> None:
    heads: list[bytes] = []
    async with server(None, heads) as port:
        client = HttpClient()
        assert await post(client, f"http://user:secret@127.0.0.1:{port}/hook") == 204
        assert f"host: 127.0.0.1:{port}\r\n".encode() in heads[0] and b"secret" not in heads[0]
        await client.aclose()


async def test_a_kept_connection_closed_as_a_request_goes_out_is_resent_if_asked() -> None:
    """The server answers one request per connection and closes the next without a word (its
    idle timeout racing our request): with ``resend_if_stale`` the request goes out again on a
    new connection; without, the caller sees the error. A new connection's failure is never
    resent."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        await reader.readexactly(2)  # the body, b"{}"
        writer.write(ANSWER)  # keep-alive, then
        await reader.readuntil(b"\r\n\r\n")  # the next request on this connection:
        writer.close()  # closed without an answer

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    try:
        client = HttpClient()
        assert await post(client, url) == 204 and client.idle(url) == 1
        with pytest.raises(RemoteProtocolError, match="without answering"):
            await post(client, url)  # on the kept connection, not resent
        assert await post(client, url) == 204  # a new one
        resent = await client.request(url, "POST", "/hook", [], b"{}", resend_if_stale=True)
        assert resent.status_code == 204 and len(heads) == 3
        resent.close()
        await client.aclose()
    finally:
        srv.close()
        await srv.wait_closed()

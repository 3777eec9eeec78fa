"""TLS on voxpipe's servers: browsers give a page the microphone only on https or localhost."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from voxpipe.errors import ConfigError
from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server
from voxpipe.transports.tls import server_tls
from voxpipe.transports.webrtc.app import ServeConfig, running_serve


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_no_tls_without_files_and_a_clear_error_for_a_bad_pair(tmp_path: Path) -> None:
    assert server_tls(None, None) is None
    cert, key = self_signed(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    for pair, message in [
        ((cert, None), "both --tls-cert and --tls-key"),
        ((tmp_path / "missing.pem", key), "no such file"),
        ((garbage, key), "not a PEM certificate and its key"),
        ((cert, garbage), "not a PEM certificate and its key"),
    ]:
        with pytest.raises(ConfigError, match=message):
            server_tls(*pair)


async def test_serve_answers_over_https(tmp_path: Path) -> None:
    tls = server_tls(*self_signed(tmp_path))
    async with (
        running_serve(ServeConfig(), tls=tls) as serve,
        aiohttp.ClientSession() as http,
        http.get(f"{serve.url}/healthz", ssl=False) as resp,
    ):
        assert serve.url.startswith("https://")
        assert resp.status == 200 and (await resp.json())["ok"]


async def test_the_realtime_server_speaks_over_wss(tmp_path: Path) -> None:
    tls = server_tls(*self_signed(tmp_path))
    async with (
        running_realtime_server(config=ServerConfig(api_key="k"), tls=tls) as srv,
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"{srv.realtime_url}?model=gpt-realtime",
            headers={"Authorization": "Bearer k"},
            ssl=False,
        ) as ws,
    ):
        assert srv.realtime_url.startswith("wss://")
        event = await ws.receive_json(timeout=10)
        assert event["type"] == "session.created"

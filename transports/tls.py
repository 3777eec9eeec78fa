"""TLS for voxpipe's servers: browsers give a page the microphone only on https or localhost.

``voxpipe serve`` and ``voxpipe realtime-server`` take ``--tls-cert`` and
``--tls-key`` (PEM files). Running behind a reverse proxy that terminates TLS
is the other way: the servers then stay on loopback, plain HTTP.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from voxpipe.errors import ConfigError


def server_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server TLS context from a PEM certificate (chain) and its key; None for neither."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError(
            "TLS needs both --tls-cert and --tls-key", hint="pass the certificate and its key"
        )
    for path in (cert, key):
        if not path.is_file():
            raise ConfigError(f"{path}: no such file", hint="pass PEM files")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (ssl.SSLError, ValueError, OSError) as exc:
        raise ConfigError(
            f"{cert} and {key} are not a PEM certificate and its key ({exc})",
            hint="for a test certificate: openssl req -x509 -newkey rsa:2048 -nodes ...",
        ) from exc
    return context

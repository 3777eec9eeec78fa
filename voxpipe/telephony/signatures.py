"""Telnyx's and Plivo's webhook signatures, sans-I/O: is a request signed by the provider.

**Telnyx** signs every webhook with ed25519: ``telnyx-signature-ed25519`` is
the base64 signature of ``<telnyx-timestamp>|<raw body>``, verifiable with
the account's public key (base64, from the portal). The timestamp is epoch
seconds; Telnyx's own libraries refuse one more than 300 s old, and so do we
(in either direction, for clock skew): a captured request stops working.

**Plivo** signs with ``X-Plivo-Signature-V3``: the base64 of HMAC-SHA256,
keyed with the auth token, over the URL it requested, then (for a POST) the
form's parameters sorted by name as name then value, then ``.`` and the
nonce it sends as ``X-Plivo-Signature-V3-Nonce``. The header may hold
several comma-separated signatures (one per active auth token); any one
matching is enough. The construction follows Plivo's own library
(``plivo.utils.validate_v3_signature``), quirks included: a POST with
parameters puts ``?`` after the path even without a query, and ``.``
between a query and the parameters. Plivo signs no time: replays are
refused by remembering nonces (:mod:`voxpipe.telephony.replay`).

Comparisons are constant-time; a failure is a
:class:`~voxpipe.errors.WebhookRejected` naming why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from voxpipe.errors import ConfigError, WebhookRejected, WebhookRejectReason

TELNYX_SIGNATURE_HEADER = "telnyx-signature-ed25519"
TELNYX_TIMESTAMP_HEADER = "telnyx-timestamp"
TELNYX_TOLERANCE_S = 300.0

PLIVO_SIGNATURE_HEADER = "X-Plivo-Signature-V3"
PLIVO_NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"

_R = WebhookRejectReason

# -- Telnyx ----------------------------------------------------------------------------------


def telnyx_public_key(text: str) -> Ed25519PublicKey:
    """The account's public key from its base64 text (as the portal shows it)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(
            "the Telnyx public key is not base64 of 32 bytes",
            hint="copy it from the portal's Keys & Credentials page",
        ) from exc


def telnyx_signature(private_key: Ed25519PrivateKey, body: bytes, timestamp: str) -> str:
    """The ``telnyx-signature-ed25519`` Telnyx sends with ``body`` at ``timestamp``."""
    return base64.b64encode(private_key.sign(_telnyx_signed(body, timestamp))).decode("ascii")


def verify_telnyx_signature(
    public_key: Ed25519PublicKey,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now_s: float,
    tolerance_s: float = TELNYX_TOLERANCE_S,
) -> None:
    """Return if Telnyx signed ``body`` at a ``timestamp`` near ``now_s``; raise otherwise."""
    if not signature or not timestamp:
        raise WebhookRejected(
            f"no {TELNYX_SIGNATURE_HEADER} and {TELNYX_TIMESTAMP_HEADER} on a request",
            reason=_R.MISSING,
        )
    try:
        public_key.verify(
            base64.b64decode(signature, validate=True), _telnyx_signed(body, timestamp)
        )
    except (binascii.Error, ValueError, InvalidSignature):
        raise WebhookRejected(
            f"{TELNYX_SIGNATURE_HEADER} does not sign this request",
            reason=_R.INVALID,
            hint="check TELNYX_PUBLIC_KEY is the account's public key",
        ) from None
    try:
        signed_at = float(timestamp)
    except ValueError:
        raise WebhookRejected(
            f"{TELNYX_TIMESTAMP_HEADER} is not a time", reason=_R.INVALID
        ) from None
    if abs(now_s - signed_at) > tolerance_s:
        raise WebhookRejected(
            f"signed {now_s - signed_at:.0f} s from now, beyond {tolerance_s:.0f} s",
            reason=_R.STALE,
            hint="a replayed request, or this server's clock is wrong",
        )


def _telnyx_signed(body: bytes, timestamp: str) -> bytes:
    return timestamp.encode("utf-8") + b"|" + body


# -- Plivo -----------------------------------------------------------------------------------


def plivo_signature(
    auth_token: str, method: str, url: str, params: Iterable[tuple[str, str]], nonce: str
) -> str:
    """The ``X-Plivo-Signature-V3`` Plivo sends for ``method url`` with form ``params``."""
    base = _plivo_base(method.upper(), url, _grouped(params))
    # Plivo's library joins the URL's UTF-8 bytes read as Latin-1 (identical for ASCII).
    signed = (base.encode("utf-8").decode("latin-1") + "." + nonce).encode("utf-8")
    digest = hmac.new(auth_token.encode("utf-8"), signed, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_plivo_signature(
    auth_token: str,
    method: str,
    url: str,
    params: Iterable[tuple[str, str]],
    nonce: str | None,
    signature: str | None,
) -> None:
    """Return if one of ``signature``'s comma-separated signatures signs the request."""
    if not signature or not nonce:
        raise WebhookRejected(
            f"no {PLIVO_SIGNATURE_HEADER} and {PLIVO_NONCE_HEADER} on a request to {url}",
            reason=_R.MISSING,
        )
    expected = plivo_signature(auth_token, method, url, params, nonce).encode()
    matched = False
    for given in signature.split(","):
        matched |= hmac.compare_digest(expected, given.strip().encode())
    if not matched:
        raise WebhookRejected(
            f"{PLIVO_SIGNATURE_HEADER} does not sign this request to {url}",
            reason=_R.INVALID,
            hint="behind a proxy, give the server the public URL Plivo calls",
        )


def _grouped(params: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    return grouped


def _plivo_base(method: str, url: str, params: dict[str, list[str]]) -> str:
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = _grouped(parse_qsl(parts.query, keep_blank_values=True))
    if method == "GET":  # the query's values win, as in Plivo's library
        query, params = {**params, **query}, {}
    query_text = "&".join(f"{k}={v}" for k in sorted(query) for v in sorted(query[k]))
    if query_text or params:
        base += "?" + query_text
    if query_text and params:
        base += "."
    return base + "".join(f"{k}{v}" for k in sorted(params) for v in sorted(params[k]))

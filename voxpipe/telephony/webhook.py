"""Twilio's voice webhook, sans-I/O: is a request signed by Twilio, and the TwiML that answers it.

Twilio signs every webhook request: ``X-Twilio-Signature`` is the base64 of
HMAC-SHA1, keyed with the account's auth token, over the full URL it requested
followed by each POST parameter, sorted by name, as name then value. The
URL is the one Twilio was given, so behind a proxy the server must be told
its public URL. Twilio's own libraries also accept the URL with the default
port written out or left off; :func:`verify_twilio_signature` does too. The
comparison is constant-time.

:func:`connect_stream_twiml` answers a call by connecting it to a
bidirectional Media Stream, with ``<Parameter>``\\ s (a call token) that come
back in the stream's ``start``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import quoteattr

from voxpipe.errors import WebhookRejected, WebhookRejectReason

SIGNATURE_HEADER = "X-Twilio-Signature"
_DEFAULT_PORTS = {"https": 443, "http": 80, "wss": 443, "ws": 80}


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a request to ``url`` with POST ``params``."""
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio_signature(
    auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None
) -> None:
    """Return if ``signature`` signs the request; raise :class:`WebhookRejected` otherwise."""
    if not signature:
        raise WebhookRejected(
            f"no {SIGNATURE_HEADER} on a request to {url}", reason=WebhookRejectReason.MISSING
        )
    pairs = list(params)
    given = signature.encode()
    matched = False
    for candidate in _url_spellings(url):
        expected = twilio_signature(auth_token, candidate, pairs).encode()
        matched |= hmac.compare_digest(expected, given)  # every spelling tried: constant time
    if not matched:
        raise WebhookRejected(
            f"{SIGNATURE_HEADER} does not sign this request to {url}",
            reason=WebhookRejectReason.INVALID,
            hint="behind a proxy, give the server the public URL Twilio calls",
        )


def connect_stream_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """TwiML connecting the call to a bidirectional Media Stream at ``stream_url``."""
    params = "".join(
        f"<Parameter name={quoteattr(name)} value={quoteattr(value)}/>"
        for name, value in parameters.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(stream_url)}>{params}</Stream>"
        "</Connect></Response>"
    )


def _url_spellings(url: str) -> list[str]:
    """``url`` as given, and with its scheme's default port written out or left off."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    if parts.port is None and default is not None:
        other = f"{prefix}{host}:{default}"
    elif parts.port is not None and parts.port == default:
        other = f"{prefix}{host}"
    else:
        return [url]
    return [url, urlunsplit(parts._replace(netloc=other))]

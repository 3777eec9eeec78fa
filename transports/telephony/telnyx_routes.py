"""Telnyx's routes on ``voxpipe serve``: point a TeXML application's voice URL at ``/telnyx/voice``.

- ``POST /telnyx/voice``: the TeXML webhook. Answers with TeXML
  ``<Connect><Stream bidirectionalMode="rtp">`` to ``/telnyx`` in the
  configured G.711 law, carrying a single-use call token (bound to the
  ``CallSid``, which is Telnyx's ``call_control_id``) as a ``<Parameter>``.
  With a public key configured, the request must carry a valid
  ``telnyx-signature-ed25519`` over ``telnyx-timestamp|body``, signed within
  the last 300 s, and not one already answered (403 otherwise).
- ``GET /telnyx``: the media stream's WebSocket
  (:class:`~voxpipe.transports.telephony.phone_routes.StreamRoutes`).

Verified against a fake Telnyx built from Telnyx's documentation
(``tests/support/fake_telnyx.py``), not against Telnyx itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from voxpipe.errors import ConfigError
from voxpipe.telephony.answers import connect_stream_texml
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.events import Provider
from voxpipe.telephony.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    TELNYX_TOLERANCE_S,
    telnyx_public_key,
    verify_telnyx_signature,
)
from voxpipe.telephony.telnyx import TelnyxStream
from voxpipe.transports.telephony.phone_routes import (
    TOKEN_PARAMETER,
    PhoneConfig,
    StreamRoutes,
    public_url,
)

if TYPE_CHECKING:
    from voxpipe.transports.webrtc.app import ServeApp

PUBLIC_KEY_ENV = "TELNYX_PUBLIC_KEY"
CODEC_ENV = "TELNYX_CODEC"
_BUSY = '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>'


@dataclasses.dataclass(kw_only=True)
class TelnyxConfig(PhoneConfig):
    """How ``voxpipe serve`` takes Telnyx calls.

    ``public_key`` (base64, the portal's): webhooks must be signed with it.
    ``law``: the G.711 law asked for both ways (``PCMU`` mu-law by default;
    A-law where the network uses it).
    """

    secret_env = PUBLIC_KEY_ENV
    flag = "--telnyx"

    public_key: str | None = None
    law: AudioEncoding = AudioEncoding.MULAW
    tolerance_s: float = TELNYX_TOLERANCE_S

    def __post_init__(self) -> None:
        if self.public_key is not None:
            telnyx_public_key(self.public_key)  # a bad key fails before anything starts

    @property
    def signed(self) -> bool:
        return self.public_key is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelnyxConfig:
        """``TELNYX_PUBLIC_KEY``, ``TELNYX_CODEC`` (PCMU or PCMA), ``VOXPIPE_PUBLIC_URL``."""
        env = os.environ if environ is None else environ
        codec = (env.get(CODEC_ENV) or "PCMU").upper()
        laws = {"PCMU": AudioEncoding.MULAW, "PCMA": AudioEncoding.ALAW}
        if codec not in laws:
            raise ConfigError(f"{CODEC_ENV} must be PCMU or PCMA, not {codec!r}")
        return cls(
            public_key=env.get(PUBLIC_KEY_ENV) or None, public_url=public_url(env), law=laws[codec]
        )


def add_telnyx_routes(
    app: web.Application, serve: ServeApp, config: TelnyxConfig | None = None
) -> TelnyxRoutes:
    """Mount ``POST /telnyx/voice`` and ``GET /telnyx`` on ``serve``'s app."""
    routes = TelnyxRoutes(serve, config or TelnyxConfig())
    routes.mount(app)
    return routes


class TelnyxRoutes(StreamRoutes):
    """The two Telnyx routes of one ``voxpipe serve``."""

    provider = Provider.TELNYX
    busy_answer = _BUSY

    def __init__(self, serve: ServeApp, config: TelnyxConfig) -> None:
        super().__init__(serve, config)
        self.telnyx = config
        self._key = None if config.public_key is None else telnyx_public_key(config.public_key)

    def new_stream(self) -> TelnyxStream:
        return TelnyxStream()

    async def verified_call(self, request: web.Request) -> str:
        body = await request.read()  # the exact bytes Telnyx signed
        if self._key is not None:
            signature = request.headers.get(TELNYX_SIGNATURE_HEADER)
            verify_telnyx_signature(
                self._key,
                body,
                signature,
                request.headers.get(TELNYX_TIMESTAMP_HEADER),
                now_s=time.time(),
                tolerance_s=self.telnyx.tolerance_s,
            )
            self.admit_signed(signature or "")
        return _call_sid(body, request.content_type)

    def stream_answer(self, stream_url: str, token: str) -> str:
        return connect_stream_texml(stream_url, {TOKEN_PARAMETER: token}, self.telnyx.law)


def _call_sid(body: bytes, content_type: str) -> str:
    """The ``CallSid`` of a TeXML request (form-encoded, or JSON when so configured)."""
    text = body.decode("utf-8", errors="replace")
    if content_type == "application/json":
        try:
            data = json.loads(text)
        except ValueError:
            return ""
        return str(data.get("CallSid", "")) if isinstance(data, dict) else ""
    return dict(parse_qsl(text, keep_blank_values=True)).get("CallSid", "")

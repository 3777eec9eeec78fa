"""Plivo's routes on ``voxpipe serve``: point a Plivo application's answer URL at ``/plivo/voice``.

- ``POST /plivo/voice``: the answer webhook. Answers with Plivo XML
  ``<Stream bidirectional="true" keepCallAlive="true">`` to ``/plivo``,
  mu-law at 8 kHz, carrying a single-use call token (bound to the
  ``CallUUID``) in ``extraHeaders`` (as hex: Plivo takes letters and digits
  only). With an auth token configured, the request must carry a valid
  ``X-Plivo-Signature-V3`` with its nonce, and a nonce already answered is
  refused as replayed (403 otherwise).
- ``GET /plivo``: the audio stream's WebSocket
  (:class:`~voxpipe.transports.telephony.phone_routes.StreamRoutes`); Plivo
  ends it by closing the socket.

Verified against a fake Plivo built from Plivo's documentation
(``tests/support/fake_plivo.py``), not against Plivo itself.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from aiohttp import web

from voxpipe.telephony.answers import (
    from_plivo_header_value,
    plivo_header_value,
    plivo_stream_xml,
)
from voxpipe.telephony.events import Provider, StreamStarted
from voxpipe.telephony.plivo import PlivoStream
from voxpipe.telephony.signatures import (
    PLIVO_NONCE_HEADER,
    PLIVO_SIGNATURE_HEADER,
    verify_plivo_signature,
)
from voxpipe.transports.telephony.phone_routes import (
    TOKEN_PARAMETER,
    AuthTokenConfig,
    StreamRoutes,
)

if TYPE_CHECKING:
    from voxpipe.transports.webrtc.app import ServeApp

AUTH_TOKEN_ENV = "PLIVO_AUTH_TOKEN"
_BUSY = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup reason="busy"/></Response>'


@dataclasses.dataclass(kw_only=True)
class PlivoConfig(AuthTokenConfig):
    """How ``voxpipe serve`` takes Plivo calls; ``auth_token`` set: webhooks must be signed."""

    secret_env = AUTH_TOKEN_ENV
    flag = "--plivo"


def add_plivo_routes(
    app: web.Application, serve: ServeApp, config: PlivoConfig | None = None
) -> PlivoRoutes:
    """Mount ``POST /plivo/voice`` and ``GET /plivo`` on ``serve``'s app."""
    routes = PlivoRoutes(serve, config or PlivoConfig())
    routes.mount(app)
    return routes


class PlivoRoutes(StreamRoutes):
    """The two Plivo routes of one ``voxpipe serve``."""

    provider = Provider.PLIVO
    busy_answer = _BUSY

    def __init__(self, serve: ServeApp, config: PlivoConfig) -> None:
        super().__init__(serve, config)
        self.plivo = config

    def new_stream(self) -> PlivoStream:
        return PlivoStream()

    def token_of(self, started: StreamStarted) -> str | None:
        return from_plivo_header_value(started.custom_parameters.get(TOKEN_PARAMETER))

    async def verified_call(self, request: web.Request) -> str:
        form = await request.post()
        if self.plivo.auth_token is not None:
            nonce = request.headers.get(PLIVO_NONCE_HEADER)
            verify_plivo_signature(
                self.plivo.auth_token,
                request.method,
                self.public(request, request.path_qs),
                [(name, str(value)) for name, value in form.items()],
                nonce,
                request.headers.get(PLIVO_SIGNATURE_HEADER),
            )
            self.admit_signed(nonce or "")
        return str(form.get("CallUUID", ""))

    def stream_answer(self, stream_url: str, token: str) -> str:
        # Plivo's extraHeaders take letters and digits only: the token goes as hex.
        return plivo_stream_xml(stream_url, {TOKEN_PARAMETER: plivo_header_value(token)})

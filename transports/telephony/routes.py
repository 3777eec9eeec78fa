"""Twilio's routes on ``voxpipe serve``: point a phone number's voice webhook at ``/twilio/voice``.

- ``POST /twilio/voice``: Twilio's voice webhook. Answers with TwiML that
  connects the call to a bidirectional Media Stream at ``/twilio``, carrying
  a single-use call token (bound to the ``CallSid``) as a ``<Parameter>``.
  With an auth token configured, the request must carry a valid
  ``X-Twilio-Signature`` (403 otherwise), and one already answered is
  refused as replayed (Twilio signs no time: each signature is remembered
  for ``replay_window_s``).
- ``GET /twilio``: the Media Stream's WebSocket
  (:class:`~voxpipe.transports.telephony.phone_routes.StreamRoutes`).

Mount with :func:`add_twilio_routes`. What these routes do is verified
against a fake Twilio peer built from Twilio's documentation
(``tests/support/fake_twilio.py``), not against Twilio itself.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from aiohttp import web

from voxpipe.telephony.events import Provider
from voxpipe.telephony.twilio import TwilioStream
from voxpipe.telephony.webhook import (
    SIGNATURE_HEADER,
    connect_stream_twiml,
    verify_twilio_signature,
)
from voxpipe.transports.telephony.phone_routes import (
    PUBLIC_URL_ENV,
    TOKEN_PARAMETER,
    AuthTokenConfig,
    StreamRoutes,
)

if TYPE_CHECKING:
    from voxpipe.transports.webrtc.app import ServeApp

__all__ = ["AUTH_TOKEN_ENV", "PUBLIC_URL_ENV", "TwilioConfig", "TwilioRoutes", "add_twilio_routes"]

AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
STREAM_PATH = "/twilio"
VOICE_PATH = "/twilio/voice"
_BUSY = '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>'


@dataclasses.dataclass(kw_only=True)
class TwilioConfig(AuthTokenConfig):
    """How ``voxpipe serve`` takes Twilio calls; ``auth_token`` set: webhooks must be signed."""

    secret_env = AUTH_TOKEN_ENV
    flag = "--twilio"


def add_twilio_routes(
    app: web.Application, serve: ServeApp, config: TwilioConfig | None = None
) -> TwilioRoutes:
    """Mount ``POST /twilio/voice`` and ``GET /twilio`` on ``serve``'s app."""
    routes = TwilioRoutes(serve, config or TwilioConfig())
    routes.mount(app)
    return routes


class TwilioRoutes(StreamRoutes):
    """The two Twilio routes of one ``voxpipe serve``."""

    provider = Provider.TWILIO
    busy_answer = _BUSY

    def __init__(self, serve: ServeApp, config: TwilioConfig) -> None:
        super().__init__(serve, config)
        self.twilio = config

    def new_stream(self) -> TwilioStream:
        return TwilioStream()

    async def verified_call(self, request: web.Request) -> str:
        form = await request.post()
        if self.twilio.auth_token is not None:
            signature = request.headers.get(SIGNATURE_HEADER)
            params = [(name, str(value)) for name, value in form.items()]
            url = self.public(request, request.path_qs)
            verify_twilio_signature(self.twilio.auth_token, url, params, signature)
            self.admit_signed(signature or "")
        return str(form.get("CallSid", ""))

    def stream_answer(self, stream_url: str, token: str) -> str:
        return connect_stream_twiml(stream_url, {TOKEN_PARAMETER: token})

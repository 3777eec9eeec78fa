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
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from voxpipe.errors import WebhookRejected
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
    PhoneConfig,
    StreamRoutes,
    public_url,
)

if TYPE_CHECKING:
    from voxpipe.transports.webrtc.app import ServeApp

__all__ = ["AUTH_TOKEN_ENV", "PUBLIC_URL_ENV", "TwilioConfig", "TwilioRoutes", "add_twilio_routes"]

AUTH_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
STREAM_PATH = "/twilio"
VOICE_PATH = "/twilio/voice"
_BUSY = '<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>'


@dataclasses.dataclass(kw_only=True)
class TwilioConfig(PhoneConfig):
    """How ``voxpipe serve`` takes Twilio calls; ``auth_token`` set: webhooks must be signed."""

    secret_env = AUTH_TOKEN_ENV

    auth_token: str | None = None

    @property
    def signed(self) -> bool:
        return self.auth_token is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TwilioConfig:
        """``TWILIO_AUTH_TOKEN`` and ``VOXPIPE_PUBLIC_URL`` from the environment."""
        env = os.environ if environ is None else environ
        return cls(auth_token=env.get(AUTH_TOKEN_ENV) or None, public_url=public_url(env))

    @classmethod
    def for_serve(cls, loopback: bool, environ: Mapping[str, str] | None = None) -> TwilioConfig:
        """The environment's config, refused beyond loopback without an auth token."""
        config = cls.from_env(environ)
        config.check_for_serve(loopback, "--twilio")
        return config


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

    def __init__(self, serve: ServeApp, config: TwilioConfig) -> None:
        super().__init__(serve, config)
        self.twilio = config

    def new_stream(self) -> TwilioStream:
        return TwilioStream()

    async def voice(self, request: web.Request) -> web.Response:
        """Answer a call with TwiML connecting it to the Media Stream."""
        form = await request.post()
        params = [(name, str(value)) for name, value in form.items()]
        if self.twilio.auth_token is not None:
            signature = request.headers.get(SIGNATURE_HEADER)
            try:
                verify_twilio_signature(
                    self.twilio.auth_token,
                    self.public(request, request.path_qs),
                    params,
                    signature,
                )
                self.admit_signed(signature or "")
            except WebhookRejected as exc:
                return self.refused(exc)
        if not self.serve.has_room():
            return web.Response(text=_BUSY, content_type="text/xml")
        token = self.mint(str(form.get("CallSid", "")))
        twiml = connect_stream_twiml(self.stream_url(request), {TOKEN_PARAMETER: token})
        return web.Response(text=twiml, content_type="text/xml")

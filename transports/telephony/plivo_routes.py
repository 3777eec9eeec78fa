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
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from voxpipe.errors import WebhookRejected
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
    PhoneConfig,
    StreamRoutes,
    public_url,
)

if TYPE_CHECKING:
    from voxpipe.transports.webrtc.app import ServeApp

AUTH_TOKEN_ENV = "PLIVO_AUTH_TOKEN"
_BUSY = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup reason="busy"/></Response>'


@dataclasses.dataclass(kw_only=True)
class PlivoConfig(PhoneConfig):
    """How ``voxpipe serve`` takes Plivo calls; ``auth_token`` set: webhooks must be signed."""

    secret_env = AUTH_TOKEN_ENV

    auth_token: str | None = None

    @property
    def signed(self) -> bool:
        return self.auth_token is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PlivoConfig:
        """``PLIVO_AUTH_TOKEN`` and ``VOXPIPE_PUBLIC_URL`` from the environment."""
        env = os.environ if environ is None else environ
        return cls(auth_token=env.get(AUTH_TOKEN_ENV) or None, public_url=public_url(env))

    @classmethod
    def for_serve(cls, loopback: bool, environ: Mapping[str, str] | None = None) -> PlivoConfig:
        """The environment's config, refused beyond loopback without an auth token."""
        config = cls.from_env(environ)
        config.check_for_serve(loopback, "--plivo")
        return config


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

    def __init__(self, serve: ServeApp, config: PlivoConfig) -> None:
        super().__init__(serve, config)
        self.plivo = config

    def new_stream(self) -> PlivoStream:
        return PlivoStream()

    def token_of(self, started: StreamStarted) -> str | None:
        return from_plivo_header_value(started.custom_parameters.get(TOKEN_PARAMETER))

    async def voice(self, request: web.Request) -> web.Response:
        """Answer a call with Plivo XML streaming it both ways."""
        form = await request.post()
        params = [(name, str(value)) for name, value in form.items()]
        if self.plivo.auth_token is not None:
            nonce = request.headers.get(PLIVO_NONCE_HEADER)
            try:
                verify_plivo_signature(
                    self.plivo.auth_token,
                    request.method,
                    self.public(request, request.path_qs),
                    params,
                    nonce,
                    request.headers.get(PLIVO_SIGNATURE_HEADER),
                )
                self.admit_signed(nonce or "")
            except WebhookRejected as exc:
                return self.refused(exc)
        if not self.serve.has_room():
            return web.Response(text=_BUSY, content_type="text/xml")
        token = self.mint(str(form.get("CallUUID", "")))
        xml = plivo_stream_xml(
            self.stream_url(request), {TOKEN_PARAMETER: plivo_header_value(token)}
        )
        return web.Response(text=xml, content_type="text/xml")

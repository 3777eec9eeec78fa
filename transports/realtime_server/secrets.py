"""Ephemeral client secrets minted by ``POST /v1/realtime/client_secrets``.

A secret only gates *starting* a session: once a WebSocket is open it lives
on after the secret expires, as with OpenAI. The store is in memory and
takes the time as an argument so tests need no clock tricks.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass
from typing import Any

import pydantic
from openai.types.realtime import RealtimeSessionCreateRequest

from voxpipe.realtime_server.parsing import error_from_validation
from voxpipe.realtime_server.protocol_errors import ProtocolError, invalid_value
from voxpipe.realtime_server.session_config import SessionConfig

MIN_SECONDS = 10
MAX_SECONDS = 7200
DEFAULT_SECONDS = 600
SECRET_PREFIX = "ek_"


@dataclass(frozen=True)
class EphemeralSecret:
    """One minted secret and the session configuration it carries."""

    value: str
    expires_at: int
    session: dict[str, Any]


class SecretStore:
    """Minted secrets, valid until their ``expires_at`` (Unix seconds)."""

    def __init__(self) -> None:
        self._secrets: dict[str, EphemeralSecret] = {}

    def mint(self, session: dict[str, Any], seconds: int, now_s: float) -> EphemeralSecret:
        """A new secret valid for ``seconds`` from ``now_s``."""
        self._forget_expired(now_s)
        secret = EphemeralSecret(
            value=SECRET_PREFIX + _random.token_urlsafe(24),
            expires_at=int(now_s) + seconds,
            session=session,
        )
        self._secrets[secret.value] = secret
        return secret

    def lookup(self, value: str, now_s: float) -> EphemeralSecret | None:
        """The secret if it exists and has not expired."""
        secret = self._secrets.get(value)
        if secret is None or now_s >= secret.expires_at:
            return None
        return secret

    def _forget_expired(self, now_s: float) -> None:
        for value in [v for v, s in self._secrets.items() if now_s >= s.expires_at]:
            del self._secrets[value]


@dataclass(frozen=True)
class MintRequest:
    """A validated ``POST /v1/realtime/client_secrets`` body."""

    seconds: int
    session: dict[str, Any]


def parse_mint_request(body: Any) -> MintRequest:
    """Validate a mint request; the session must be one a connection could start with."""
    if not isinstance(body, dict):
        raise invalid_value("body", "The body must be a JSON object.")
    expires = body.get("expires_after") or {}
    if not isinstance(expires, dict):
        raise invalid_value("expires_after", "expires_after must be an object.")
    if expires.get("anchor", "created_at") != "created_at":
        raise invalid_value("expires_after.anchor", "expires_after.anchor must be 'created_at'.")
    seconds = expires.get("seconds", DEFAULT_SECONDS)
    if not isinstance(seconds, int) or not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise invalid_value(
            "expires_after.seconds", "expires_after.seconds must be an integer from 10 to 7200."
        )
    try:
        session = RealtimeSessionCreateRequest.model_validate(
            body.get("session") or {"type": "realtime"}
        )
    except pydantic.ValidationError as exc:
        raise error_from_validation(exc, "session") from None
    SessionConfig("check").update(session, voice_locked=False)  # raises ProtocolError
    return MintRequest(seconds, session.model_dump(exclude_unset=True, mode="json"))


__all__ = ["EphemeralSecret", "MintRequest", "ProtocolError", "SecretStore", "parse_mint_request"]

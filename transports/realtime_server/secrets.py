"""Ephemeral client secrets minted by ``POST /v1/realtime/client_secrets``.

A secret only gates *starting* a session: once a WebSocket is open it lives
on after the secret expires, as with OpenAI. The store is in memory and
takes the time as an argument so tests need no clock tricks.

The store is bounded: at most ``MAX_LIVE_SECRETS`` unexpired secrets, each
carrying a session of at most ``MAX_SESSION_BYTES`` as JSON, ``MAX_STORE_BYTES``
in all (20 mints of 5 MB instructions once held 105 MB for two hours). A mint
past a bound is refused (:class:`StoreFull`, a 429) rather than evicting a
secret someone was given; expired secrets are purged on every mint and lookup.
"""

from __future__ import annotations

import json
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
MAX_LIVE_SECRETS = 10_000
MAX_SESSION_BYTES = 256 * 1024
MAX_STORE_BYTES = 64 * 1024 * 1024


class StoreFull(Exception):
    """Minting one more secret would pass the store's bounds."""


@dataclass(frozen=True)
class EphemeralSecret:
    """One minted secret and the session configuration it carries."""

    value: str
    expires_at: int
    session: dict[str, Any]
    size: int = 0
    """The session's size as JSON, in bytes."""


class SecretStore:
    """Minted secrets, valid until their ``expires_at`` (Unix seconds)."""

    def __init__(
        self, *, max_secrets: int = MAX_LIVE_SECRETS, max_bytes: int = MAX_STORE_BYTES
    ) -> None:
        self._secrets: dict[str, EphemeralSecret] = {}
        self._bytes = 0
        self.max_secrets = max_secrets
        self.max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._secrets)

    @property
    def bytes_held(self) -> int:
        """The sessions' JSON size, summed over the live secrets."""
        return self._bytes

    def mint(self, session: dict[str, Any], seconds: int, now_s: float) -> EphemeralSecret:
        """A new secret valid for ``seconds`` from ``now_s``; :class:`StoreFull` past a bound."""
        self._forget_expired(now_s)
        size = session_size(session)
        if len(self._secrets) >= self.max_secrets:
            raise StoreFull(f"{len(self._secrets)} unexpired secrets is this server's limit")
        if self._bytes + size > self.max_bytes:
            raise StoreFull(f"the unexpired secrets hold {self._bytes} bytes of sessions")
        secret = EphemeralSecret(
            value=SECRET_PREFIX + _random.token_urlsafe(24),
            expires_at=int(now_s) + seconds,
            session=session,
            size=size,
        )
        self._secrets[secret.value] = secret
        self._bytes += size
        return secret

    def lookup(self, value: str, now_s: float) -> EphemeralSecret | None:
        """The secret if it exists and has not expired."""
        self._forget_expired(now_s)
        return self._secrets.get(value)

    def _forget_expired(self, now_s: float) -> None:
        for value in [v for v, s in self._secrets.items() if now_s >= s.expires_at]:
            self._bytes -= self._secrets.pop(value).size


def session_size(session: dict[str, Any]) -> int:
    """A session's size as compact JSON, in bytes."""
    return len(json.dumps(session, separators=(",", ":")).encode("utf-8", "surrogatepass"))


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
    dumped = session.model_dump(exclude_unset=True, mode="json")
    if session_size(dumped) > MAX_SESSION_BYTES:
        raise invalid_value(
            "session", f"The session must be at most {MAX_SESSION_BYTES} bytes as JSON."
        )
    return MintRequest(seconds, dumped)


__all__ = [
    "EphemeralSecret",
    "MintRequest",
    "ProtocolError",
    "SecretStore",
    "StoreFull",
    "parse_mint_request",
]

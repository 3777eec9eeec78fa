"""Ephemeral client secrets minted by ``POST /v1/realtime/client_secrets``.

A secret only gates *starting* a session: once a WebSocket is open it lives
on after the secret expires, as with OpenAI. The store is in memory and
takes the time as an argument so tests need no clock tricks.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass
from typing import Any

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

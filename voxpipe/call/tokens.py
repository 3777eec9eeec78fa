"""Token rotation policy: when to mint the next ephemeral secret.

An ephemeral secret only limits *starting* a session; a live session outlives
it. So the next secret must be ready before the current one expires, for the
next reconnect or rollover, and minting must never sit on that path. This
policy says when to refresh (``refresh_before_ms`` ahead of expiry, 30 s by
default), how to retry a failed mint, and counts both. In static-key mode
nothing ever expires and nothing is minted.

Times are wall-clock epoch milliseconds, because ``expires_at`` is.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from urllib.parse import urlsplit

from voxpipe.errors import ConfigError

OPENAI_HOST = "api.openai.com"


class TokenMode(enum.Enum):
    """Where the credential for a connection comes from."""

    STATIC = "static"  # a long-lived server-side key, used as is
    EPHEMERAL = "ephemeral"  # short-lived secrets minted from client_secrets


@dataclasses.dataclass(frozen=True)
class Secret:
    """A credential for one connection; ``value`` never appears in reprs or logs."""

    value: str = dataclasses.field(repr=False)
    expires_at_ms: int | None  # None: never expires (static key)

    def expired(self, now_ms: int) -> bool:
        """True once the secret can no longer start a session."""
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms


@dataclasses.dataclass(frozen=True)
class RotationConfig:
    """When to refresh and how to retry failed mints."""

    refresh_before_ms: int = 30_000
    # Never refresh earlier than this share of a secret's life, so a short TTL
    # (or a skewed clock) cannot make the provider mint in a tight loop.
    min_life_fraction: float = 0.5
    retry_initial_ms: int = 1_000
    retry_max_ms: int = 15_000

    def __post_init__(self) -> None:
        if self.refresh_before_ms < 0 or not 0.0 <= self.min_life_fraction < 1.0:
            raise ConfigError("need refresh_before_ms >= 0 and 0 <= min_life_fraction < 1")
        if not 0 < self.retry_initial_ms <= self.retry_max_ms:
            raise ConfigError("need 0 < retry_initial_ms <= retry_max_ms")


@dataclasses.dataclass(frozen=True)
class SecretRotated:
    """A new secret was minted; the next refresh is due at ``next_refresh_ms``."""

    expires_at_ms: int | None
    next_refresh_ms: int | None
    rotations: int


@dataclasses.dataclass(frozen=True)
class RotationFailed:
    """Minting failed; it is retried at ``retry_at_ms``."""

    attempt: int
    retry_at_ms: int
    reason: str
    failures: int


class TokenRotationPolicy:
    """Decides when the driver mints; the driver reports mint results back."""

    def __init__(
        self, mode: TokenMode = TokenMode.EPHEMERAL, config: RotationConfig | None = None
    ) -> None:
        self.mode = mode
        self.config = config or RotationConfig()
        self._secret: Secret | None = None
        self._next_refresh_ms: int | None = None
        self._consecutive_failures = 0
        self.rotations = 0
        self.failures = 0

    @property
    def secret(self) -> Secret | None:
        """The newest secret, if any was minted (or the static key)."""
        return self._secret

    @property
    def consecutive_failures(self) -> int:
        """Failed mints since the last success."""
        return self._consecutive_failures

    def next_refresh_ms(self) -> int | None:
        """When to mint next (None: never, as with a static key)."""
        if self.mode is TokenMode.STATIC:
            return None
        return self._next_refresh_ms

    def due(self, now_ms: int) -> bool:
        """True when the driver should mint now."""
        if self.mode is TokenMode.STATIC:
            return False
        if self._secret is None and self._next_refresh_ms is None:
            return True  # nothing minted yet
        return self._next_refresh_ms is not None and now_ms >= self._next_refresh_ms

    def usable(self, now_ms: int) -> Secret | None:
        """The secret to connect with, or None if the driver must mint first."""
        if self._secret is None or self._secret.expired(now_ms):
            return None
        return self._secret

    def fresh(self, now_ms: int) -> Secret | None:
        """The secret to hand someone who starts a session with it later (a page's call, a
        reconnect), or None if the driver must mint first: once the refresh is due (30 s before
        expiry by default) the old secret is never handed out, even if the background refresh
        has not run yet (a loaded loop, a clock that jumped)."""
        if self.mode is TokenMode.STATIC:
            return self._secret
        secret = self.usable(now_ms)
        if secret is None or self.due(now_ms):
            return None
        return secret

    def on_minted(self, secret: Secret, now_ms: int) -> SecretRotated:
        """Record a fresh secret (or set the static key)."""
        self._secret = secret
        self._consecutive_failures = 0
        self.rotations += 1
        self._next_refresh_ms = self._refresh_time(secret, now_ms)
        return SecretRotated(secret.expires_at_ms, self.next_refresh_ms(), self.rotations)

    def on_mint_failed(self, now_ms: int, reason: str) -> RotationFailed:
        """Record a failed mint and schedule the retry."""
        self._consecutive_failures += 1
        self.failures += 1
        delay = min(
            self.config.retry_max_ms,
            self.config.retry_initial_ms * 2 ** (self._consecutive_failures - 1),
        )
        retry_at = now_ms + delay
        old = self._secret
        if old is not None and old.expires_at_ms is not None and not old.expired(now_ms):
            # Try once more before the old secret lapses, so a reconnect never waits.
            retry_at = min(retry_at, max(now_ms, old.expires_at_ms - 1))
        self._next_refresh_ms = retry_at
        return RotationFailed(self._consecutive_failures, retry_at, reason, self.failures)

    def _refresh_time(self, secret: Secret, now_ms: int) -> int | None:
        if secret.expires_at_ms is None:
            return None
        life = max(0, secret.expires_at_ms - now_ms)
        earliest = now_ms + int(life * self.config.min_life_fraction)
        return max(earliest, secret.expires_at_ms - self.config.refresh_before_ms)


def key_for_endpoint(url: str, *, explicit: str | None, environment: str | None) -> str | None:
    """The long-lived key that may be sent to the Realtime endpoint ``url``, if any.

    A key is a bearer credential: whoever receives it can spend on it. So the
    environment's key (``OPENAI_API_KEY``) goes only to OpenAI's own host over
    TLS; any other endpoint gets only a key given for it explicitly, or none
    (a keyless loopback server, such as ``voxpipe realtime-server`` without
    ``--api-key``, needs none). No key ever crosses plain ``ws://`` to a host
    that is not this machine.

    Raises:
        ConfigError: ``url`` is not a ws(s) URL, or an explicit key would go
            over plain ``ws://`` to another machine.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("ws", "wss") or not host:
        raise ConfigError(
            f"not a Realtime endpoint: {url!r}", hint="use ws://host/... or wss://..."
        )
    if explicit:
        if parts.scheme == "ws" and not _loopback(host):
            raise ConfigError(
                f"refusing to send an API key in clear text to {host} (ws://)",
                hint="use wss:// for a server on another machine",
            )
        return explicit
    if environment and parts.scheme == "wss" and host == OPENAI_HOST:
        return environment
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

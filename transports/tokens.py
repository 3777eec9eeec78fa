"""Token providers: a static server-side key, or rotating ephemeral secrets.

:class:`EphemeralTokenProvider` mints secrets from ``/v1/realtime/client_secrets``
(OpenAI or ``voxpipe realtime-server``) and refreshes them in the background,
30 s before expiry by default, so a reconnect or rollover never waits for
minting. When to mint, and how to retry, is decided by the sans-I/O
:class:`~voxpipe.call.tokens.TokenRotationPolicy`; this file only does the I/O.

The long-lived key is sent to the mint URL only, never over plain HTTP to
another machine, and never appears in a repr, an event or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from voxpipe.call.recovery import FATAL_CODES
from voxpipe.call.tokens import (
    RotationConfig,
    RotationFailed,
    Secret,
    SecretRotated,
    TokenMode,
    TokenRotationPolicy,
)
from voxpipe.errors import ConfigError, FatalProviderError, TokenRotationError

RotationEvent = SecretRotated | RotationFailed
MIN_TTL_S, MAX_TTL_S = 10, 7200  # what client_secrets accepts


def wall_clock_ms() -> int:
    """Epoch milliseconds; secrets expire on the wall clock (``expires_at``)."""
    return int(time.time() * 1000)


class TokenProvider(Protocol):
    """Gives the realtime service a credential for its next connection."""

    mode: TokenMode

    async def secret(self) -> Secret:
        """A credential valid now; mints first only if none is usable."""
        ...

    async def refresh(self) -> Secret:
        """Mint a new credential now (the provider rejected the current one)."""
        ...

    async def aclose(self) -> None:
        """Stop background work."""
        ...


class StaticKeyProvider:
    """The server-side key itself, for a process that talks to the provider directly."""

    mode = TokenMode.STATIC

    def __init__(self, api_key: str) -> None:
        if not api_key:
            raise ConfigError("empty API key", hint="set OPENAI_API_KEY or pass --api-key")
        self._secret = Secret(api_key, None)

    def __repr__(self) -> str:
        return "StaticKeyProvider(api_key=<hidden>)"

    async def secret(self) -> Secret:
        """The key; it never expires."""
        return self._secret

    async def refresh(self) -> Secret:
        """A static key cannot be refreshed; the same key is returned."""
        return self._secret

    async def aclose(self) -> None:
        """Nothing to stop."""


class NoKeyProvider:
    """No credential at all: the endpoint needs none (a keyless loopback server)."""

    mode = TokenMode.STATIC

    def __repr__(self) -> str:
        return "NoKeyProvider()"

    async def secret(self) -> Secret:
        """An empty secret: no ``Authorization`` header is sent."""
        return Secret("", None)

    async def refresh(self) -> Secret:
        """Nothing to refresh."""
        return await self.secret()

    async def aclose(self) -> None:
        """Nothing to stop."""


class EphemeralTokenProvider:
    """Mints short-lived secrets and keeps a fresh one ready in the background.

    ``await start()`` mints the first secret (raising
    :class:`~voxpipe.errors.FatalProviderError` if the key is refused) and
    starts the refresh task. Failed rotations are retried on the policy's
    schedule and counted in ``policy.failures``; ``on_event`` receives each
    :class:`SecretRotated` / :class:`RotationFailed` for the call timeline.
    """

    mode = TokenMode.EPHEMERAL

    def __init__(
        self,
        mint_url: str,
        api_key: str,
        ttl_s: int = 120,
        *,
        session_config: Mapping[str, Any] | None = None,
        rotation: RotationConfig | None = None,
        http: aiohttp.ClientSession | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        on_event: Callable[[RotationEvent], None] | None = None,
        request_timeout_s: float = 10.0,
    ) -> None:
        _check_mint_url(mint_url)
        if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise ConfigError(f"ttl_s must be within {MIN_TTL_S}..{MAX_TTL_S}, got {ttl_s}")
        if not api_key:
            raise ConfigError("empty API key", hint="set OPENAI_API_KEY or pass --api-key")
        self._url = mint_url
        self._api_key = api_key
        self._ttl_s = ttl_s
        self._session_config = {"type": "realtime", **(session_config or {})}
        self.policy = TokenRotationPolicy(TokenMode.EPHEMERAL, rotation)
        self._http = http
        self._owns_http = http is None
        self._clock = clock_ms
        self._on_event = on_event
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fatal: FatalProviderError | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"EphemeralTokenProvider(mint_url={self._url!r}, api_key=<hidden>)"

    async def start(self) -> None:
        """Mint the first secret and start refreshing in the background."""
        if self._task is not None:
            return
        async with self._lock:
            # A transient failure is counted and retried by the loop; a fatal one raises.
            with contextlib.suppress(TokenRotationError):
                await self._mint_locked()
        self._task = asyncio.create_task(self._refresh_loop(), name="voxpipe-token-rotation")

    async def secret(self) -> Secret:
        """The current secret; mints now only if none is usable (a cold start)."""
        if self._fatal is not None:
            raise self._fatal
        usable = self.policy.usable(self._clock())
        if usable is not None:
            return usable
        async with self._lock:
            usable = self.policy.usable(self._clock())
            if usable is not None:  # minted while we waited for the lock
                return usable
            return await self._mint_locked()

    async def fresh(self) -> Secret:
        """A secret with more than the refresh margin left, for a session started later (a
        page's call): the current one, or one minted now if its refresh is due."""
        if self._fatal is not None:
            raise self._fatal
        fresh = self.policy.fresh(self._clock())
        if fresh is not None:
            return fresh
        async with self._lock:
            fresh = self.policy.fresh(self._clock())
            if fresh is not None:  # minted while we waited for the lock
                return fresh
            secret = await self._mint_locked()
        self._wake.set()  # the background schedule follows the new secret
        return secret

    async def refresh(self) -> Secret:
        """Mint a new secret now, e.g. after a 401 on connect."""
        async with self._lock:
            secret = await self._mint_locked()
        self._wake.set()  # the background schedule follows the new secret
        return secret

    async def aclose(self) -> None:
        """Stop the refresh task and close the HTTP session this provider opened."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def _refresh_loop(self) -> None:
        while self._fatal is None and not self._closing:
            due = self.policy.next_refresh_ms()
            delay_s = None if due is None else max(0.0, (due - self._clock()) / 1000)
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11, wait_for can swallow a
            # cancel that lands as the event fires, and aclose() would hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_s):
                    await self._wake.wait()
                continue  # woken by refresh() or aclose(): recompute
            if self.policy.due(self._clock()):
                async with self._lock:
                    # Both are recorded by _mint_locked: a transient failure is
                    # retried on schedule, a fatal one ends the loop and is
                    # raised to the next secret() caller.
                    with contextlib.suppress(TokenRotationError, FatalProviderError):
                        await self._mint_locked()

    async def _mint_locked(self) -> Secret:
        try:
            secret = await self._post()
        except FatalProviderError as exc:
            self._fatal = exc
            self._emit(self.policy.on_mint_failed(self._clock(), exc.message))
            raise
        except TokenRotationError as exc:
            self._emit(self.policy.on_mint_failed(self._clock(), exc.message))
            raise
        self._emit(self.policy.on_minted(secret, self._clock()))
        return secret

    async def _post(self) -> Secret:
        body = {
            "expires_after": {"anchor": "created_at", "seconds": self._ttl_s},
            "session": self._session_config,
        }
        headers = {"Authorization": f"Bearer {self._api_key}"}
        http = self._client()
        try:
            async with http.post(self._url, json=body, headers=headers) as resp:
                payload = await _json_or_none(resp)
                if resp.status >= 400:
                    raise _http_error(resp.status, payload)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TokenRotationError(f"minting failed: {type(exc).__name__}: {exc}") from exc
        return _parse_secret(payload)

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    def _emit(self, event: RotationEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)


def _check_mint_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    if parts.scheme == "http" and (host == "localhost" or _is_loopback(host)):
        return
    raise ConfigError(
        f"refusing to send the API key to {url!r}",
        hint="use https, or plain http only to a loopback address",
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _json_or_none(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except ValueError:
        return None


def _http_error(status: int, payload: Any) -> FatalProviderError | TokenRotationError:
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = f"minting answered HTTP {status}" + (f" {code}: {message}" if code else "")
    # The long-lived key itself was refused: no retry can help.
    if code in FATAL_CODES or status in (401, 403):
        return FatalProviderError(text, code=code or f"http_{status}", hint="check the API key")
    return TokenRotationError(text)


def _parse_secret(payload: Any) -> Secret:
    if not isinstance(payload, dict):
        raise TokenRotationError("minting answered something that is not a JSON object")
    value, expires_at = payload.get("value"), payload.get("expires_at")
    if not isinstance(value, str) or not isinstance(expires_at, int | float):
        raise TokenRotationError("minting answer lacks 'value' or 'expires_at'")
    return Secret(value, int(expires_at * 1000))

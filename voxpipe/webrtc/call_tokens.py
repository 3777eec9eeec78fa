"""Who may call, and who may rejoin a call: signed, short-lived tokens.

Beyond loopback, ``voxpipe serve`` answers an offer only with a *call token*
the operator's backend minted (``voxpipe serve token`` or
:meth:`CallTokens.mint`): an HMAC-SHA256 over a version, a random nonce, the
issue and expiry times and a subject, keyed with the server secret. A call
token is single use: the nonces of redeemed tokens are remembered until the
tokens expire (:class:`CallTokens`).

A *resume token* lets a page whose network changed (Wi-Fi to 4G, a laptop
waking up) rejoin the call it was in rather than start a new one. It names
the call, lives 30 s, may be presented more than once while it lives, and
stops working as soon as a newer one is minted for the same call or the call
is forgotten (:class:`ResumeTokens`). The server mints a fresh one every
``ttl_s / 3`` or so and sends it over the data channel, so a page that loses
its network still holds one with most of its life ahead.

Times are wall-clock epoch seconds (``now_s``), because a token minted in the
operator's backend is redeemed in the server. Tokens are URL-safe:
``<base64url payload>.<base64url mac>``; the payload is readable, not secret.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import heapq
import hmac
import math
import os
import re
import secrets
import struct
from collections.abc import Callable, Mapping

from voxpipe.errors import CallTokenRejected, CallTokenRejectReason, ConfigError

SECRET_ENV = "VOXPIPE_SERVE_SECRET"
MIN_SECRET_BYTES = 32
MAX_SUBJECT_BYTES = 128  # an operator's user or session id, not a document

RandomBytes = Callable[[int], bytes]

_VERSION = 1
_NONCE_BYTES = 16
_HEADER = struct.Struct(">B16sQQ")  # version, nonce, issued ms, expires ms; then the subject
_MAC_BYTES = hashlib.sha256().digest_size
_MAX_TOKEN_CHARS = 512
_MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
# Distinct MAC labels: a resume token is never a call token, nor the reverse,
# though both are signed with the one server secret.
_CALL_LABEL = b"voxpipe call token\x00"
_RESUME_LABEL = b"voxpipe resume token\x00"

_R = CallTokenRejectReason


@dataclasses.dataclass(frozen=True)
class Redeemed:
    """A call token that admitted its caller."""

    subject: str
    issued_at_s: float
    expires_at_s: float
    token_id: str  # the nonce, hex: names the token in logs, cannot be redeemed itself


class CallTokens:
    """Mints and redeems single-use call tokens for one server process.

    ``max_remembered`` bounds the redeemed nonces held; past it the oldest are
    forgotten and every token that expires no later than them is refused as
    expired, so a forgotten nonce can never be replayed.
    """

    def __init__(
        self,
        secret: bytes,
        ttl_s: float = 60,
        *,
        random_bytes: RandomBytes = secrets.token_bytes,
        max_remembered: int = 100_000,
    ) -> None:
        if ttl_s <= 0 or max_remembered < 1:
            raise ConfigError("call tokens need ttl_s > 0 and max_remembered >= 1")
        self._signer = _Signer(secret, _CALL_LABEL, random_bytes)
        self._ttl_ms = round(ttl_s * 1000)
        self._max_remembered = max_remembered
        self._used: set[bytes] = set()
        self._by_expiry: list[tuple[int, bytes]] = []  # heap of (expires ms, nonce)
        self._forgotten_until_ms = 0  # tokens expiring by then may be replays

    @property
    def remembered(self) -> int:
        """How many redeemed tokens are held until they expire."""
        return len(self._used)

    def mint(self, now_s: float, *, subject: str = "") -> str:
        """A token valid for ``ttl_s`` from ``now_s``, for ``subject`` (up to 128 bytes)."""
        token, _ = self._signer.mint(now_s, self._ttl_ms, _text_bytes(subject, "subject"))
        return token

    def redeem(self, token: object, now_s: float) -> Redeemed:
        """Admit the caller once; raise :class:`CallTokenRejected` saying why not."""
        opened = self._signer.open(token)
        now_ms = _ms(now_s)
        self._forget_expired(now_ms)
        if now_ms >= opened.expires_ms or opened.expires_ms <= self._forgotten_until_ms:
            raise _rejected(_R.EXPIRED, "This call token has expired; ask for a new one.")
        if opened.nonce in self._used:
            raise _rejected(_R.REUSED, "This call token was already used; ask for a new one.")
        self._remember(opened.nonce, opened.expires_ms)
        return Redeemed(
            subject=opened.text,
            issued_at_s=opened.issued_ms / 1000,
            expires_at_s=opened.expires_ms / 1000,
            token_id=opened.nonce.hex(),
        )

    def _remember(self, nonce: bytes, expires_ms: int) -> None:
        self._used.add(nonce)
        heapq.heappush(self._by_expiry, (expires_ms, nonce))
        while len(self._used) > self._max_remembered:
            expires, oldest = heapq.heappop(self._by_expiry)
            self._used.discard(oldest)
            self._forgotten_until_ms = max(self._forgotten_until_ms, expires)

    def _forget_expired(self, now_ms: int) -> None:
        while self._by_expiry and self._by_expiry[0][0] <= now_ms:
            _, nonce = heapq.heappop(self._by_expiry)
            self._used.discard(nonce)


class ResumeTokens:
    """Mints and redeems the tokens that rejoin a call after a network switch."""

    def __init__(
        self, secret: bytes, ttl_s: float = 30, *, random_bytes: RandomBytes = secrets.token_bytes
    ) -> None:
        if ttl_s <= 0:
            raise ConfigError("resume tokens need ttl_s > 0")
        self._signer = _Signer(secret, _RESUME_LABEL, random_bytes)
        self._ttl_ms = round(ttl_s * 1000)
        self._latest: dict[str, tuple[bytes, int]] = {}  # call id -> (nonce, expires ms)

    @property
    def remembered(self) -> int:
        """How many calls hold a live resume token."""
        return len(self._latest)

    def mint(self, call_id: str, now_s: float) -> str:
        """A token that rejoins ``call_id`` until ``ttl_s`` from ``now_s``; older ones stop."""
        self._forget_expired(_ms(now_s))
        token, minted = self._signer.mint(now_s, self._ttl_ms, _text_bytes(call_id, "call_id"))
        self._latest[call_id] = (minted.nonce, minted.expires_ms)
        return token

    def redeem(self, token: object, now_s: float) -> str:
        """The call id the token rejoins; raise :class:`CallTokenRejected` saying why not."""
        opened = self._signer.open(token)
        now_ms = _ms(now_s)
        self._forget_expired(now_ms)
        if now_ms >= opened.expires_ms:
            raise _rejected(_R.EXPIRED, "The call could not be rejoined in time; start a new call.")
        latest = self._latest.get(opened.text)
        if latest is None or latest[0] != opened.nonce:
            raise _rejected(_R.REVOKED, "This call can no longer be rejoined; start a new call.")
        return opened.text

    def forget(self, call_id: str) -> None:
        """``call_id`` ended: none of its resume tokens works any more."""
        self._latest.pop(call_id, None)

    def _forget_expired(self, now_ms: int) -> None:
        for call_id in [c for c, (_, expires) in self._latest.items() if expires <= now_ms]:
            del self._latest[call_id]


class SecretSource(enum.Enum):
    """Where the server secret came from."""

    ENVIRONMENT = "environment"  # tokens minted elsewhere, or before a restart, still work
    RANDOM = "random"  # made for this process: tokens die with it


@dataclasses.dataclass(frozen=True)
class ServerSecret:
    """The key call and resume tokens are signed with."""

    value: bytes = dataclasses.field(repr=False)
    source: SecretSource


def server_secret(
    environ: Mapping[str, str] | None = None,
    *,
    name: str = SECRET_ENV,
    required: bool = False,
    random_bytes: RandomBytes = secrets.token_bytes,
) -> ServerSecret:
    """The secret in the environment variable ``name``, or a random one for this process.

    With a random secret, tokens do not survive a restart and no other
    process (the operator's backend, ``voxpipe serve token``) can mint one
    this server accepts: set ``name`` to share one. ``required=True`` (for a
    process that mints for another) raises :class:`ConfigError` instead of
    making one up. An empty variable counts as unset.
    """
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if value:
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"{name} must hold at least {MIN_SECRET_BYTES} bytes",
                hint=f"make one with: {_MAKE_SECRET}",
            )
        return ServerSecret(value.encode(), SecretSource.ENVIRONMENT)
    if required:
        raise ConfigError(
            f"{name} is not set: a token minted here would not be accepted by the server",
            hint=f"set {name} to the same value for the server and for whatever mints tokens",
        )
    return ServerSecret(random_bytes(MIN_SECRET_BYTES), SecretSource.RANDOM)


@dataclasses.dataclass(frozen=True)
class _Opened:
    nonce: bytes
    issued_ms: int
    expires_ms: int
    text: str  # the subject (call token) or the call id (resume token)


class _Signer:
    """The token format: ``b64url(header + text) "." b64url(HMAC-SHA256(label + payload))``."""

    def __init__(self, secret: bytes, label: bytes, random_bytes: RandomBytes) -> None:
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise ConfigError("the token secret must be at least 16 bytes")
        self._secret = secret
        self._label = label
        self._random_bytes = random_bytes

    def mint(self, now_s: float, ttl_ms: int, text: bytes) -> tuple[str, _Opened]:
        nonce = self._random_bytes(_NONCE_BYTES)
        if len(nonce) != _NONCE_BYTES:
            raise ConfigError(f"random_bytes({_NONCE_BYTES}) returned {len(nonce)} bytes")
        issued_ms = _ms(now_s)
        payload = _HEADER.pack(_VERSION, nonce, issued_ms, issued_ms + ttl_ms) + text
        token = f"{_b64(payload)}.{_b64(self._mac(payload))}"
        return token, _Opened(nonce, issued_ms, issued_ms + ttl_ms, text.decode())

    def open(self, token: object) -> _Opened:
        """Check shape and signature; the times are the caller's to judge."""
        payload, mac = _split(token)
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise _rejected(_R.FORGED, "This call token is not valid for this server.")
        version, nonce, issued_ms, expires_ms = _HEADER.unpack_from(payload)
        try:
            text = payload[_HEADER.size :].decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if version != _VERSION or text is None:
            raise _malformed()
        return _Opened(nonce, issued_ms, expires_ms, text)

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, self._label + payload, hashlib.sha256).digest()


def _split(token: object) -> tuple[bytes, bytes]:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 1:
        raise _malformed()
    parts = token.split(".")
    if not all(_B64URL.fullmatch(part) for part in parts):
        raise _malformed()
    try:
        payload, mac = (base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in parts)
    except (binascii.Error, ValueError):
        raise _malformed() from None
    # One spelling per token: stray bits in the last character are refused.
    if [_b64(payload), _b64(mac)] != parts or len(payload) < _HEADER.size:
        raise _malformed()
    if len(mac) != _MAC_BYTES:
        raise _malformed()
    return payload, mac


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _ms(now_s: float) -> int:
    if not math.isfinite(now_s) or now_s < 0:
        raise ConfigError(f"now_s must be a finite epoch time, got {now_s}")
    return math.floor(now_s * 1000)


def _text_bytes(text: str, what: str) -> bytes:
    try:
        encoded = text.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        encoded = None
    if encoded is None or len(encoded) > MAX_SUBJECT_BYTES:
        raise ConfigError(f"{what} must be text of at most {MAX_SUBJECT_BYTES} UTF-8 bytes")
    return encoded


def _malformed() -> CallTokenRejected:
    return _rejected(_R.MALFORMED, "This call token is incomplete or damaged; ask for a new one.")


def _rejected(reason: CallTokenRejectReason, message: str) -> CallTokenRejected:
    return CallTokenRejected(message, reason=reason)

"""Call and resume tokens: who may call, once, and who may rejoin the call they were in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import struct
from collections.abc import Callable

import pytest

from voxpipe.errors import CallTokenRejected, CallTokenRejectReason, ConfigError, Side
from voxpipe.webrtc.call_tokens import (
    SECRET_ENV,
    CallTokens,
    Redeemed,
    ResumeTokens,
    SecretSource,
    server_secret,
)

R = CallTokenRejectReason
SECRET = b"k" * 32
T0 = 1_700_000_000.0  # epoch seconds


def counting_nonces() -> Callable[[int], bytes]:
    """Nonces 1, 2, 3, ... so tokens are exact."""
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


def call_tokens(**kwargs: object) -> CallTokens:
    return CallTokens(SECRET, random_bytes=counting_nonces(), **kwargs)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: bytes, label: bytes = b"voxpipe call token\x00", key: bytes = SECRET) -> str:
    """A token built from the documented format, as an operator's backend in any language would."""
    return f"{b64(payload)}.{b64(hmac.new(key, label + payload, hashlib.sha256).digest())}"


def payload(version: int = 1, nonce: int = 1, issued_ms: int = 0, ttl_ms: int = 60_000) -> bytes:
    return struct.pack(">B16sQQ", version, nonce.to_bytes(16, "big"), issued_ms, issued_ms + ttl_ms)


# -- minting ------------------------------------------------------------------


def test_a_call_token_is_the_documented_format_and_url_safe() -> None:
    token = call_tokens().mint(T0, subject="alice")
    issued_ms = int(T0 * 1000)
    assert token == signed(payload(issued_ms=issued_ms) + b"alice")
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)
    assert len(token) < 120  # fits a URL query string comfortably


def test_redeeming_says_who_the_token_was_for_and_until_when() -> None:
    tokens = call_tokens()
    redeemed = tokens.redeem(tokens.mint(T0, subject="user-42"), T0 + 1)
    assert redeemed == Redeemed(
        subject="user-42", issued_at_s=T0, expires_at_s=T0 + 60, token_id=f"{1:032x}"
    )


@pytest.mark.parametrize(
    ("kwargs", "subject"),
    [
        ({"ttl_s": 0}, ""),
        ({"max_remembered": 0}, ""),
        ({}, "x" * 129),  # a subject is an id, not a document
        ({}, "\ud800"),  # not encodable
    ],
)
def test_misuse_on_our_side_is_a_config_error(kwargs: dict[str, object], subject: str) -> None:
    with pytest.raises(ConfigError):
        call_tokens(**kwargs).mint(T0, subject=subject)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        CallTokens(b"short")


# -- redeeming: expiry and single use ---------------------------------------------


# (seconds after minting at which the same token is presented, what each presentation gets)
@pytest.mark.parametrize(
    ("presented_at", "outcomes"),
    [
        ([0], [None]),
        ([59.999], [None]),
        ([60], [R.EXPIRED]),
        ([3600], [R.EXPIRED]),
        ([-5], [None]),  # the backend's clock runs 5 s ahead of the server's: still fine
        ([1, 2], [None, R.REUSED]),
        ([1, 59], [None, R.REUSED]),
        ([1, 61], [None, R.EXPIRED]),  # past expiry the nonce is forgotten: still refused
    ],
)
def test_a_call_token_admits_once_within_its_life(
    presented_at: list[float], outcomes: list[CallTokenRejectReason | None]
) -> None:
    tokens = call_tokens()
    token = tokens.mint(T0)
    got: list[CallTokenRejectReason | None] = []
    for offset in presented_at:
        try:
            tokens.redeem(token, T0 + offset)
            got.append(None)
        except CallTokenRejected as exc:
            got.append(exc.reason)
    assert got == outcomes


def test_the_ttl_is_configurable() -> None:
    tokens = call_tokens(ttl_s=5)
    early, late = tokens.mint(T0), tokens.mint(T0)
    tokens.redeem(early, T0 + 4.9)
    with pytest.raises(CallTokenRejected) as caught:
        tokens.redeem(late, T0 + 5)
    assert caught.value.reason is R.EXPIRED


def test_used_tokens_are_held_only_until_they_expire() -> None:
    tokens = call_tokens()
    for i in range(5):
        tokens.redeem(tokens.mint(T0 + i), T0 + i)
    assert tokens.remembered == 5
    tokens.redeem(tokens.mint(T0 + 62), T0 + 62)  # tokens 0-2 expired meanwhile
    assert tokens.remembered == 3


def test_memory_is_bounded_and_a_forgotten_token_still_cannot_be_replayed() -> None:
    tokens = call_tokens(max_remembered=3)
    minted = [tokens.mint(T0 + i) for i in range(5)]
    for token in minted:
        tokens.redeem(token, T0 + 5)
    assert tokens.remembered == 3
    for token in minted:  # the two forgotten ones are refused as expired, the rest as reused
        with pytest.raises(CallTokenRejected) as caught:
            tokens.redeem(token, T0 + 6)
        assert caught.value.reason in (R.EXPIRED, R.REUSED)
    tokens.redeem(tokens.mint(T0 + 6), T0 + 6)  # a fresh token is unaffected


# -- redeeming: what is not a token of ours ---------------------------------------


def flip_last(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


HEADER = payload(issued_ms=int(T0 * 1000))
GOOD = signed(HEADER)
GOOD_PAYLOAD, GOOD_MAC = GOOD.split(".")

FOREIGN: list[tuple[str, object, CallTokenRejectReason]] = [
    ("nothing", "", R.MALFORMED),
    ("not text", None, R.MALFORMED),
    ("a number", 12345, R.MALFORMED),
    ("no dot", GOOD.replace(".", ""), R.MALFORMED),
    ("two dots", GOOD + ".x", R.MALFORMED),
    ("not base64url", "!!!!." + GOOD_MAC, R.MALFORMED),
    ("base64 padding", GOOD_PAYLOAD + "==." + GOOD_MAC, R.MALFORMED),
    ("huge", "a" * 100_000 + "." + GOOD_MAC, R.MALFORMED),
    ("payload too short", b64(b"\x01" * 10) + "." + GOOD_MAC, R.MALFORMED),
    ("mac too short", GOOD_PAYLOAD + "." + b64(b"\x00" * 16), R.MALFORMED),
    ("payload changed", flip_last(GOOD_PAYLOAD) + "." + GOOD_MAC, R.FORGED),
    ("mac changed", GOOD_PAYLOAD + "." + flip_last(GOOD_MAC), R.FORGED),
    ("expiry pushed back", b64(HEADER[:-8] + b"\xff" * 8) + "." + GOOD_MAC, R.FORGED),
    ("another secret", signed(HEADER, key=b"o" * 32), R.FORGED),
    ("a resume token", signed(HEADER + b"call-1", b"voxpipe resume token\x00"), R.FORGED),
    ("an unknown version", signed(b"\x02" + HEADER[1:]), R.MALFORMED),
    ("a subject that is not UTF-8", signed(HEADER + b"\xff"), R.MALFORMED),
]  # fmt: skip


@pytest.mark.parametrize(("token", "reason"), [f[1:] for f in FOREIGN], ids=[f[0] for f in FOREIGN])
def test_anything_but_an_intact_token_of_ours_is_refused(
    token: object, reason: CallTokenRejectReason
) -> None:
    with pytest.raises(CallTokenRejected) as caught:
        call_tokens().redeem(token, T0 + 1)
    assert caught.value.reason is reason
    assert caught.value.side is Side.REMOTE and not caught.value.retryable
    assert caught.value.message.startswith("This call token")


def test_the_good_token_of_that_table_is_accepted() -> None:
    assert call_tokens().redeem(GOOD, T0 + 1).subject == ""


def test_a_token_has_one_spelling() -> None:
    """Stray low bits in the last base64 character do not make a second, fresh token."""
    tokens = call_tokens()
    token = tokens.mint(T0)
    body, mac = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sibling = mac[:-1] + alphabet[alphabet.index(mac[-1]) ^ 1]  # 32 bytes end with 2 spare bits
    tokens.redeem(token, T0)
    with pytest.raises(CallTokenRejected) as caught:
        tokens.redeem(f"{body}.{sibling}", T0)
    assert caught.value.reason is R.MALFORMED


# -- resume tokens ------------------------------------------------------------------


def resume_tokens(ttl_s: float = 30) -> ResumeTokens:
    return ResumeTokens(SECRET, ttl_s, random_bytes=counting_nonces())


# A small script per row: ("mint", name, call, at) names a token; ("redeem", name, at)
# expects the call id or a reason; ("forget", call, at).
RESUME_SCENARIOS: list[tuple[str, list[tuple[object, ...]]]] = [
    ("rejoins its call, more than once", [
        ("mint", "t1", "call-a", 0), ("redeem", "t1", 5, "call-a"), ("redeem", "t1", 20, "call-a"),
    ]),
    ("expires after 30 s", [("mint", "t1", "call-a", 0), ("redeem", "t1", 30, R.EXPIRED)]),
    ("a newer token for the call replaces it", [
        ("mint", "t1", "call-a", 0), ("mint", "t2", "call-a", 10),
        ("redeem", "t1", 11, R.REVOKED), ("redeem", "t2", 11, "call-a"),
    ]),
    ("a token for another call does not", [
        ("mint", "t1", "call-a", 0), ("mint", "t2", "call-b", 1),
        ("redeem", "t1", 2, "call-a"), ("redeem", "t2", 2, "call-b"),
    ]),
    ("the call ended", [
        ("mint", "t1", "call-a", 0), ("forget", "call-a", 1), ("redeem", "t1", 2, R.REVOKED),
    ]),
    ("refreshed every 10 s, the newest always rejoins", [
        ("mint", "t1", "call-a", 0), ("mint", "t2", "call-a", 10), ("mint", "t3", "call-a", 20),
        ("redeem", "t3", 45, "call-a"), ("redeem", "t3", 50, R.EXPIRED),
    ]),
]  # fmt: skip


@pytest.mark.parametrize(
    "script", [s[1] for s in RESUME_SCENARIOS], ids=[s[0] for s in RESUME_SCENARIOS]
)
def test_a_resume_token_rejoins_its_call_until_replaced_or_expired(
    script: list[tuple[object, ...]],
) -> None:
    tokens = resume_tokens()
    minted: dict[str, str] = {}
    for step in script:
        match step:
            case ("mint", name, call_id, at):
                minted[str(name)] = tokens.mint(str(call_id), T0 + float(at))  # type: ignore[arg-type]
            case ("forget", call_id, _):
                tokens.forget(str(call_id))
            case ("redeem", name, at, expected):
                try:
                    got: object = tokens.redeem(minted[str(name)], T0 + float(at))  # type: ignore[arg-type]
                except CallTokenRejected as exc:
                    got = exc.reason
                assert got == expected, step


def test_resume_and_call_tokens_are_not_interchangeable() -> None:
    resume, calls = resume_tokens(), call_tokens()
    for wrong, token in ((calls, resume.mint("call-a", T0)), (resume, calls.mint(T0))):
        with pytest.raises(CallTokenRejected) as caught:
            wrong.redeem(token, T0)
        assert caught.value.reason is R.FORGED


def test_resume_tokens_hold_only_live_calls() -> None:
    tokens = resume_tokens()
    for i in range(10):
        tokens.mint(f"call-{i}", T0)
    assert tokens.remembered == 10
    tokens.mint("call-late", T0 + 31)  # every earlier token has expired
    assert tokens.remembered == 1


# -- the server secret ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "value", "source"),
    [
        ({}, b"\x00" * 31 + b"\x01", SecretSource.RANDOM),
        ({SECRET_ENV: ""}, b"\x00" * 31 + b"\x01", SecretSource.RANDOM),  # empty counts as unset
        ({SECRET_ENV: "s" * 32}, b"s" * 32, SecretSource.ENVIRONMENT),
        ({SECRET_ENV: "s" * 32 + "\n"}, b"s" * 32, SecretSource.ENVIRONMENT),
    ],
)
def test_the_secret_comes_from_the_environment_or_is_made_for_this_process(
    environ: dict[str, str], value: bytes, source: SecretSource
) -> None:
    secret = server_secret(environ, random_bytes=counting_nonces())
    assert (secret.value, secret.source) == (value, source)
    assert repr(value) not in repr(secret)


@pytest.mark.parametrize(
    ("environ", "required", "message"),
    [
        ({SECRET_ENV: "short"}, False, "at least 32 bytes"),
        ({}, True, f"{SECRET_ENV} is not set"),
    ],
)
def test_an_unusable_secret_is_a_config_error(
    environ: dict[str, str], required: bool, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        server_secret(environ, required=required)


def test_a_shared_secret_survives_a_restart_and_a_random_one_does_not() -> None:
    shared = {SECRET_ENV: "a-secret-the-operator-set-for-all-processes"}
    backend = CallTokens(server_secret(shared).value)
    restarted_server = CallTokens(server_secret(shared).value)
    assert restarted_server.redeem(backend.mint(T0, subject="bob"), T0).subject == "bob"

    before, after = (CallTokens(server_secret({}).value) for _ in range(2))
    with pytest.raises(CallTokenRejected) as caught:
        after.redeem(before.mint(T0), T0)
    assert caught.value.reason is R.FORGED

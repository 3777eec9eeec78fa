"""Offer checks: what a browser sends is answered; the rest is refused in words a user reads."""

from __future__ import annotations

import importlib.util

import pytest

from voxpipe.errors import OfferRejected, OfferRejectReason, Side
from voxpipe.webrtc.offer import (
    DEFAULT_MAX_BYTES,
    CandidatePolicy,
    OfferAccepted,
    candidate_allowed,
    check_offer,
    parse_candidate,
)

R = OfferRejectReason
LOOPBACK, UDP = CandidatePolicy.LOOPBACK, CandidatePolicy.UDP

# Headless Chromium 156, audio transceiver then data channel, gathering complete,
# captured unchanged (TEST-NET address and ULA IPv6 of the capture machine).
CHROMIUM_OFFER = [
    "v=0",
    "o=- 1374468326530128501 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS",
    "m=audio 48603 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 192.0.2.2",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:160208162 1 udp 2113937151 192.0.2.2 48603 typ host generation 0 network-cost 999",
    "a=candidate:251591058 1 udp 2113942271 fd00::2 46919 typ host generation 0 network-cost 999",
    "a=ice-ufrag:LDyX",
    "a=ice-pwd:dvMdJ41T07MLy0xmIHB24wvk",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 DE:65:5A:83:BF:CC:05:28:EC:DC:01:52:55:51:D7:2B:21:0C:10:91:1F:F0:49:"
    "40:E5:D5:72:B4:A7:C4:36:B9",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv",
    "a=msid:- 5ea4b5e5-17fa-4fbc-9339-9a5c0b8e8568",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtcp-xr:rcvr-rtt=all",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:1778530363 cname:3Q9jG05n7SoDhS+4",
    "a=ssrc:1778530363 msid:- 5ea4b5e5-17fa-4fbc-9339-9a5c0b8e8568",
    "m=application 58622 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 192.0.2.2",
    "a=candidate:160208162 1 udp 2113937151 192.0.2.2 58622 typ host generation 0 network-cost 999",
    "a=candidate:251591058 1 udp 2113942271 fd00::2 40244 typ host generation 0 network-cost 999",
    "a=ice-ufrag:LDyX",
    "a=ice-pwd:dvMdJ41T07MLy0xmIHB24wvk",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 DE:65:5A:83:BF:CC:05:28:EC:DC:01:52:55:51:D7:2B:21:0C:10:91:1F:F0:49:"
    "40:E5:D5:72:B4:A7:C4:36:B9",
    "a=setup:actpass",
    "a=mid:1",
    "a=sctp-port:5000",
    "a=max-message-size:262144",
]
AUDIO_START = CHROMIUM_OFFER.index("m=audio 48603 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126")
DATA_START = CHROMIUM_OFFER.index("m=application 58622 UDP/DTLS/SCTP webrtc-datachannel")

# Chromium's candidate lines for the other kinds of address it can offer.
LOOPBACK_UDP = "a=candidate:1 1 udp 2113937151 127.0.0.1 48603 typ host generation 0"
MDNS = "a=candidate:2 1 udp 2113937151 9b36eaac-bb2e-49bb-bb78-21c41c499900.local 40 typ host"
LOOPBACK_TCP = "a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active generation 0"
LOOPBACK_V6 = "a=candidate:4 1 udp 2122262783 ::1 50000 typ host generation 0"
SRFLX = "a=candidate:5 1 udp 1686052607 203.0.113.7 61000 typ srflx raddr 192.0.2.2 rport 48603"

# Firefox puts the DTLS fingerprint at session level and spells UDP in capitals.
FIREFOX_SHAPED_OFFER = [
    "v=0",
    "o=mozilla...THIS_IS_SDPARTA-99.0 5813264190470911270 0 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=fingerprint:sha-256 2B:8C:41:0E:1D:55:1A:74:9F:3C:52:88:7A:40:C1:1B:0F:3E:99:12:56:AB:"
    "CD:EF:01:23:45:67:89:AB:CD:EF",
    "a=group:BUNDLE 0 1",
    "a=ice-options:trickle",
    "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101",
    "c=IN IP4 0.0.0.0",
    "a=candidate:0 1 UDP 2122252543 127.0.0.1 50000 typ host",
    "a=sendrecv",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level",
    "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1",
    "a=fmtp:101 0-15",
    "a=ice-pwd:3f7cbb5b6e2ad4ba1ef1aa64e4b0b2c1",
    "a=ice-ufrag:9a6d3c21",
    "a=mid:0",
    "a=msid:{7d6e} {0a8f}",
    "a=rtcp-mux",
    "a=rtpmap:109 opus/48000/2",
    "a=rtpmap:9 G722/8000/1",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000/1",
    "a=setup:actpass",
    "a=ssrc:2718281828 cname:{5b4f}",
    "a=end-of-candidates",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=sendrecv",
    "a=ice-pwd:3f7cbb5b6e2ad4ba1ef1aa64e4b0b2c1",
    "a=ice-ufrag:9a6d3c21",
    "a=mid:1",
    "a=setup:actpass",
    "a=sctp-port:5000",
    "a=max-message-size:1073741823",
]


def sdp(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


def with_audio_lines(*extra: str) -> list[str]:
    """The Chromium offer with ``extra`` lines at the end of its audio section."""
    return [*CHROMIUM_OFFER[:DATA_START], *extra, *CHROMIUM_OFFER[DATA_START:]]


def without(*prefixes: str) -> list[str]:
    return [line for line in CHROMIUM_OFFER if not line.startswith(prefixes)]


def replaced(old: str, new: str) -> list[str]:
    assert any(old in line for line in CHROMIUM_OFFER), old
    return [line.replace(old, new) for line in CHROMIUM_OFFER]


AUDIO = CHROMIUM_OFFER[AUDIO_START:DATA_START]
DATA = CHROMIUM_OFFER[DATA_START:]
SESSION = CHROMIUM_OFFER[:AUDIO_START]
DATA_WITHOUT_ICE = [line for line in DATA if not line.startswith("a=ice-")]
VIDEO = [line.replace("m=audio", "m=video").replace("opus/48000/2", "VP8/90000") for line in AUDIO]


# -- offers a browser sends are answered -----------------------------------------


@pytest.mark.parametrize(
    ("offer", "policy", "kept", "dropped"),
    [
        (CHROMIUM_OFFER, UDP, 4, 0),  # a LAN and an IPv6 host candidate per section
        (CHROMIUM_OFFER, LOOPBACK, 0, 4),  # none can reach a loopback-only server
        (with_audio_lines(LOOPBACK_UDP, MDNS, LOOPBACK_TCP, LOOPBACK_V6), LOOPBACK, 1, 7),
        (with_audio_lines(LOOPBACK_UDP, MDNS, LOOPBACK_TCP, LOOPBACK_V6, SRFLX), UDP, 8, 1),
        (FIREFOX_SHAPED_OFFER, LOOPBACK, 1, 0),
        (SESSION + AUDIO, UDP, 2, 0),  # no data channel: still a call
    ],
)
def test_a_browser_offer_is_accepted_with_the_candidates_the_server_can_use(
    offer: list[str], policy: CandidatePolicy, kept: int, dropped: int
) -> None:
    accepted = check_offer(sdp(offer), policy=policy)
    assert (accepted.candidates_kept, accepted.candidates_dropped) == (kept, dropped)
    kept_lines = [line for line in accepted.sdp.split("\r\n") if line.startswith("a=candidate")]
    assert len(kept_lines) == kept
    assert all(candidate_allowed(line, policy) for line in kept_lines)
    # Everything but the dropped candidates reaches aiortc as the browser wrote it.
    others = [line for line in offer if not line.startswith("a=candidate")]
    assert [line for line in accepted.sdp.split("\r\n") if line in others] == others


def test_what_the_offer_carries_is_reported() -> None:
    chromium = check_offer(sdp(CHROMIUM_OFFER), policy=UDP)
    firefox = check_offer(sdp(FIREFOX_SHAPED_OFFER), policy=UDP)
    no_channel = check_offer(sdp(SESSION + AUDIO), policy=UDP)
    assert (chromium.opus_payload_type, chromium.has_data_channel) == (111, True)
    assert (firefox.opus_payload_type, firefox.has_data_channel) == (109, True)
    assert no_channel.has_data_channel is False


def test_line_endings_are_normalised_and_the_offer_ends_with_one() -> None:
    accepted = check_offer("\n".join(CHROMIUM_OFFER) + "\n\n", policy=UDP)
    assert accepted.sdp == sdp(CHROMIUM_OFFER)
    assert check_offer("\r\n".join(CHROMIUM_OFFER), policy=UDP).sdp == sdp(CHROMIUM_OFFER)


# -- candidates, offered or trickled ---------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "on_loopback", "elsewhere"),
    [
        (LOOPBACK_UDP, True, True),
        (LOOPBACK_UDP.removeprefix("a="), True, True),  # trickled: RTCIceCandidate.candidate
        ("candidate:0 1 UDP 2122252543 127.0.0.1 50000 typ host", True, True),  # Firefox
        (MDNS, False, True),  # aioice resolves .local names over mDNS
        ("candidate:1 1 udp 2113937151 192.168.1.20 50000 typ host", False, True),
        ("candidate:1 1 udp 2122262783 2001:db8::20 50000 typ host", False, True),
        (LOOPBACK_V6, False, True),
        (SRFLX, False, True),
        (LOOPBACK_TCP, False, False),  # aiortc's ICE speaks no ICE-TCP
        ("candidate:1 1 udp 2113937151 127.0.0.2 50000 typ host", False, True),
        # Names other than mDNS would make the server resolve what the page chose.
        ("candidate:1 1 udp 2113937151 attacker.example 50000 typ host", False, False),
        ("candidate:1 1 udp 2113937151 0.0.0.0 50000 typ host", False, False),
        ("candidate:1 1 udp 2113937151 224.0.0.251 5353 typ host", False, False),
        ("candidate:1 1 udp 2113937151 127.0.0.1 0 typ host", False, False),
        # Malformed: aioice would throw on them, so they never reach it.
        ("", False, False),  # end of candidates
        ("candidate:", False, False),
        ("candidate:1 1 udp 2113937151 127.0.0.1 50000 host", False, False),
        ("candidate:1 1 udp 2113937151 127.0.0.1 50000 typ bogus", False, False),
        ("candidate:1 x udp 2113937151 127.0.0.1 50000 typ host", False, False),
        ("candidate:1 1 udp 2113937151 127.0.0.1 70000 typ host", False, False),
        ("candidate:1 1 udp 2113937151 127.0.0.1 -1 typ host", False, False),
        ("candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host rport x", False, False),
        ("candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0x1", False, False),
        ("candidate:1 1 udp 2113937151 127.0.0.1 ５０ typ host", False, False),  # full-width 50
        ("ice-ufrag:abcd", False, False),
        (None, False, False),  # a trickle message without a candidate string
        (LOOPBACK_UDP + " x" * 1000, False, False),  # longer than any browser sends
    ],
)
def test_candidates_are_kept_only_where_the_server_can_reach_them(
    candidate: object, on_loopback: bool, elsewhere: bool
) -> None:
    assert candidate_allowed(candidate, LOOPBACK) is on_loopback
    assert candidate_allowed(candidate, UDP) is elsewhere


@pytest.mark.parametrize(
    ("host", "policy"),
    [
        ("127.0.0.1", LOOPBACK),
        ("::1", LOOPBACK),
        ("localhost", LOOPBACK),
        ("0.0.0.0", UDP),
        ("192.168.1.20", UDP),
        ("voice.example.com", UDP),
    ],
)
def test_the_policy_follows_the_address_the_server_binds(
    host: str, policy: CandidatePolicy
) -> None:
    assert CandidatePolicy.for_host(host) is policy


# -- offers that are refused -------------------------------------------------------


def padded_to(n_bytes: int) -> str:
    text = sdp(CHROMIUM_OFFER)
    return text + "a=x-pad:" + "p" * (n_bytes - len(text) - len("a=x-pad:\r\n")) + "\r\n"


REFUSED: list[tuple[str, object, OfferRejectReason]] = [
    # size
    ("one byte over 16 KiB", padded_to(DEFAULT_MAX_BYTES + 1), R.TOO_LARGE),
    ("a megabyte", "v=0\r\n" + "a=x\r\n" * 200_000, R.TOO_LARGE),
    ("few characters, many bytes", sdp(CHROMIUM_OFFER) + "a=x-é:" + "é" * 8000, R.TOO_LARGE),
    # not SDP
    ("nothing", "", R.NOT_SDP),
    ("not text", None, R.NOT_SDP),
    ("bytes", sdp(CHROMIUM_OFFER).encode(), R.NOT_SDP),
    ("a JSON body", '{"sdp": "v=0", "type": "offer"}', R.NOT_SDP),
    ("garbage", "garbage", R.NOT_SDP),
    ("version 1", sdp(["v=1", *CHROMIUM_OFFER[1:]]), R.NOT_SDP),
    ("v=0 not first", sdp([*CHROMIUM_OFFER[1:2], "v=0", *CHROMIUM_OFFER[2:]]), R.NOT_SDP),
    ("a blank line inside", sdp([*SESSION, "", *AUDIO, *DATA]), R.NOT_SDP),
    ("a line that is not key=value", sdp([*SESSION, "nonsense", *AUDIO]), R.NOT_SDP),
    ("a capital key", sdp([*SESSION, "A=foo", *AUDIO]), R.NOT_SDP),
    ("a NUL byte", sdp(with_audio_lines("a=mid:0\x00")), R.NOT_SDP),
    ("a Unicode line separator", sdp(with_audio_lines("a=x-y:1\u2028m=video")), R.NOT_SDP),
    ("a lone surrogate", sdp(with_audio_lines("a=x-y:\ud800")), R.NOT_SDP),
    ("m-line without formats", sdp(replaced(" 111 63 9 0 8 13 110 126", "")), R.NOT_SDP),
    ("m-line port 70000", sdp(replaced("m=audio 48603", "m=audio 70000")), R.NOT_SDP),
    ("payload type 200", sdp(replaced("SAVPF 111 63", "SAVPF 111 200")), R.NOT_SDP),
    ("payload type 72", sdp(replaced("SAVPF 111 63", "SAVPF 111 72")), R.NOT_SDP),
    ("payload type 'x'", sdp(replaced("SAVPF 111 63", "SAVPF 111 x")), R.NOT_SDP),
    ("a full-width payload type", sdp(replaced("SAVPF 111 63", "SAVPF 111 ６３")), R.NOT_SDP),
    ("a bad connection line", sdp(replaced("c=IN IP4 192.0.2.2", "c=somewhere")), R.NOT_SDP),
    ("a setup role aiortc lacks", sdp(replaced("a=setup:actpass", "a=setup:holdconn")), R.NOT_SDP),
    ("a fingerprint flag", sdp(with_audio_lines("a=fingerprint")), R.NOT_SDP),
    ("an rtpmap without rate", sdp(replaced("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU")), R.NOT_SDP),
    ("an fmtp without rtpmap", sdp(with_audio_lines("a=fmtp:100 mode=1")), R.NOT_SDP),
    ("fmtp minptime not a number", sdp(replaced("minptime=10", "minptime=ten")), R.NOT_SDP),
    ("an ssrc without attribute", sdp(with_audio_lines("a=ssrc:1778530363 cname")), R.NOT_SDP),
    ("an extmap with id x", sdp(replaced("a=extmap:1 ", "a=extmap:x ")), R.NOT_SDP),
    ("sctp-port not a number", sdp(replaced("a=sctp-port:5000", "a=sctp-port:any")), R.NOT_SDP),
    ("no DTLS fingerprint", sdp(without("a=fingerprint")), R.NOT_SDP),
    ("no DTLS setup role", sdp(without("a=setup")), R.NOT_SDP),
    # media
    ("no m-line", sdp(SESSION), R.NO_AUDIO),
    ("a data channel only", sdp(SESSION + DATA), R.NO_AUDIO),
    ("video only", sdp(SESSION + VIDEO), R.NO_AUDIO),
    ("audio and video", sdp(SESSION + AUDIO + VIDEO + DATA), R.UNSUPPORTED_MEDIA),
    ("two audio streams", sdp(SESSION + AUDIO + AUDIO + DATA), R.UNSUPPORTED_MEDIA),
    ("two data channel sections", sdp(SESSION + AUDIO + DATA + DATA), R.UNSUPPORTED_MEDIA),
    ("a text stream", sdp([*SESSION, *AUDIO, "m=text 9 RTP/AVP 98"]), R.UNSUPPORTED_MEDIA),
    ("RTCP not multiplexed", sdp(without("a=rtcp-mux")), R.UNSUPPORTED_MEDIA),
    ("data channel first", sdp(SESSION + DATA + AUDIO), R.AUDIO_NOT_FIRST),
    # codec
    ("no Opus", sdp(without("a=rtpmap:111", "a=fmtp:111", "a=fmtp:63")), R.NO_OPUS),
    ("mono Opus", sdp(replaced("opus/48000/2", "opus/48000/1")), R.NO_OPUS),
    ("Opus at 16 kHz", sdp(replaced("opus/48000/2", "opus/16000/2")), R.NO_OPUS),
    ("Opus mapped but not listed", sdp(replaced("SAVPF 111 63", "SAVPF 63")), R.NO_OPUS),
    # ICE
    ("no ICE ufrag", sdp(without("a=ice-ufrag")), R.NO_ICE_CREDENTIALS),
    ("no ICE password", sdp(without("a=ice-pwd")), R.NO_ICE_CREDENTIALS),
    ("ICE ufrag too short", sdp(replaced("ufrag:LDyX", "ufrag:LDy")), R.NO_ICE_CREDENTIALS),
    ("ICE password too short", sdp(replaced("pwd:dvMdJ41T07MLy0x", "pwd:")), R.NO_ICE_CREDENTIALS),
    ("ICE ufrag with a space", sdp(replaced("ufrag:LDyX", "ufrag:LD yX")), R.NO_ICE_CREDENTIALS),
    ("ICE only for audio", sdp(SESSION + AUDIO + DATA_WITHOUT_ICE), R.NO_ICE_CREDENTIALS),
]  # fmt: skip


@pytest.mark.parametrize(("offer", "reason"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_an_offer_voxpipe_cannot_answer_is_refused_with_a_reason(
    offer: object, reason: OfferRejectReason
) -> None:
    with pytest.raises(OfferRejected) as caught:
        check_offer(offer, policy=UDP)
    assert caught.value.reason is reason
    assert caught.value.side is Side.REMOTE and not caught.value.retryable
    # A sentence the page can show: it names the offer and ends like one.
    assert caught.value.message.startswith("The call offer") and caught.value.message.endswith(".")


def test_session_level_ice_credentials_count_for_every_section() -> None:
    ice = [line for line in AUDIO if line.startswith(("a=ice-ufrag", "a=ice-pwd"))]
    offer = [*SESSION, *ice, *[line for line in AUDIO + DATA if line not in ice]]
    assert isinstance(check_offer(sdp(offer), policy=UDP), OfferAccepted)


@pytest.mark.parametrize(("limit", "refused"), [(1000, True), (len(sdp(CHROMIUM_OFFER)), False)])
def test_the_size_limit_is_configurable(limit: int, refused: bool) -> None:
    if refused:
        with pytest.raises(OfferRejected, match="larger than 1000 bytes"):
            check_offer(sdp(CHROMIUM_OFFER), policy=UDP, max_bytes=limit)
    else:
        check_offer(sdp(CHROMIUM_OFFER), policy=UDP, max_bytes=limit)


# -- nothing that passes makes aiortc's own parser throw ---------------------------


def mutations(offer: list[str]) -> list[list[str]]:
    """Every line of ``offer`` dropped, emptied, cut short, doubled or given a stray value."""
    out = []
    for i, line in enumerate(offer):
        sep = ":" if line.startswith("a=") else "="
        key, _, value = line.partition(sep)
        for variant in (
            [],
            [key],
            [key + sep],
            [line[: len(line) // 2]],
            [line, line],
            [key + sep + "x"],
            [key + sep + value + " x"],
            [key + sep + "-1"],
        ):
            out.append([*offer[:i], *variant, *offer[i + 1 :]])
    return out


@pytest.mark.skipif(importlib.util.find_spec("aiortc") is None, reason="aiortc is not installed")
def test_an_accepted_offer_always_parses_in_aiortc() -> None:
    from aiortc.sdp import SessionDescription  # the I/O side's parser, read here only

    accepted = refused = 0
    offers = [CHROMIUM_OFFER, FIREFOX_SHAPED_OFFER, with_audio_lines(LOOPBACK_UDP, MDNS, SRFLX)]
    for lines in [mutated for offer in offers for mutated in mutations(offer)]:
        try:
            checked = check_offer(sdp(lines), policy=UDP)
        except OfferRejected:
            refused += 1
            continue
        accepted += 1
        parsed = SessionDescription.parse(checked.sdp)
        assert parsed.media[0].kind == "audio"
        assert sum(len(m.ice_candidates) for m in parsed.media) == checked.candidates_kept
    assert accepted > 100 and refused > 100  # both sides of the line were exercised


@pytest.mark.skipif(importlib.util.find_spec("aiortc") is None, reason="aiortc is not installed")
def test_a_kept_trickled_candidate_reads_the_same_in_aiortc() -> None:
    from aiortc.sdp import candidate_from_sdp

    for line in (LOOPBACK_UDP, MDNS, SRFLX, LOOPBACK_V6):
        value = line.removeprefix("a=candidate:")
        ours, theirs = parse_candidate(line), candidate_from_sdp(value)
        assert ours is not None
        assert (ours.address, ours.port, ours.type) == (theirs.ip, theirs.port, theirs.type)

"""Check a browser's SDP offer before any peer connection is built.

aiortc answers almost any offer, so without this check a nonsense offer gets a
200 and a call that never connects and never ends. :func:`check_offer` refuses
what voxpipe cannot answer (too large, not SDP, no audio or audio not first,
video, no Opus, no ICE credentials) with an
:class:`~voxpipe.errors.OfferRejected` whose message the page can show its
user, and returns the offer with only the ICE candidates the server may use.

Which candidates: on a loopback host (the default ``voxpipe serve``) only UDP
candidates on 127.0.0.1 — aioice sends connectivity checks to every candidate
it is given, and on a loopback-only machine mDNS ``.local`` names, LAN and
IPv6 addresses and TCP candidates can never connect. Elsewhere, every
well-formed UDP candidate on an IP address or an mDNS ``.local`` name (aiortc's
ICE speaks no ICE-TCP, and a page must not make the server resolve other
names). A trickled candidate goes through :func:`candidate_allowed`, the same
rule.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re

from voxpipe.errors import ConfigError, OfferRejected, OfferRejectReason
from voxpipe.webrtc.sdp import MediaSection, SessionDescription, parse_attribute, parse_sdp

DEFAULT_MAX_BYTES = 16 * 1024  # a browser's audio + data channel offer is 2-5 KiB
LOOPBACK_ADDRESS = "127.0.0.1"

_ICE_UFRAG = re.compile(r"[A-Za-z0-9+/]{4,256}")  # RFC 8839 ice-char, 4-256 of them
_ICE_PWD = re.compile(r"[A-Za-z0-9+/]{22,256}")
# What a browser hides its address behind (RFC 8828); aioice resolves it over mDNS.
_MDNS_NAME = re.compile(r"[a-zA-Z0-9-]{1,63}\.local")
_CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
_INT_EXTENSIONS = frozenset({"rport", "generation"})  # aioice converts these with int()
_OPUS = ("opus", "48000", "2")
_MAX_CANDIDATE_CHARS = 1024  # a browser's are under 200


class CandidatePolicy(enum.Enum):
    """Which offered ICE candidates the server keeps."""

    LOOPBACK = "loopback"  # UDP on 127.0.0.1 only
    UDP = "udp"  # any UDP candidate

    @classmethod
    def for_host(cls, host: str) -> CandidatePolicy:
        """LOOPBACK when the server binds a loopback address (or ``localhost``), else UDP."""
        if host == "localhost":
            return cls.LOOPBACK
        try:
            return cls.LOOPBACK if ipaddress.ip_address(host).is_loopback else cls.UDP
        except ValueError:
            return cls.UDP  # a host name: the server is reachable beyond loopback


@dataclasses.dataclass(frozen=True)
class IceCandidate:
    """The fields of one ``candidate:`` attribute that decide whether it is kept."""

    foundation: str
    component: int
    transport: str  # lower case: "udp" or "tcp"
    priority: int
    address: str
    port: int
    type: str


@dataclasses.dataclass(frozen=True)
class OfferAccepted:
    """An offer voxpipe will answer.

    ``sdp`` is the offer as received (CRLF line endings) minus the dropped
    ``a=candidate`` lines. With no candidate kept, the page must trickle one
    the policy allows, or the call cannot connect.
    """

    sdp: str
    opus_payload_type: int
    has_data_channel: bool
    candidates_kept: int
    candidates_dropped: int


def check_offer(
    sdp: object, *, policy: CandidatePolicy, max_bytes: int = DEFAULT_MAX_BYTES
) -> OfferAccepted:
    """Validate a browser's offer; raise :class:`OfferRejected` or return what to answer."""
    if max_bytes <= 0:
        raise ConfigError(f"max_bytes must be positive, got {max_bytes}")
    text = _text_within(sdp, max_bytes)
    description = parse_sdp(text)
    audio = _check_media(description)
    opus = _opus_payload_type(audio)
    _check_transport(description)
    kept, dropped = _filter_candidates(text, policy)
    return OfferAccepted(
        sdp="\r\n".join(kept) + "\r\n",
        opus_payload_type=opus,
        has_data_channel=any(m.media == "application" for m in description.media),
        candidates_kept=sum(line.startswith("a=candidate:") for line in kept),
        candidates_dropped=dropped,
    )


def parse_candidate(candidate: object) -> IceCandidate | None:
    """Read ``[a=]candidate:<foundation> <component> <transport> <priority> <address>
    <port> typ <type> ...``; None if it is malformed (aioice would throw on it)."""
    if not isinstance(candidate, str) or len(candidate) > _MAX_CANDIDATE_CHARS:
        return None
    value = candidate.removeprefix("a=")
    if not value.startswith("candidate:") or not value.isascii():
        return None
    bits = value.removeprefix("candidate:").split()
    if len(bits) < 8 or bits[6] != "typ" or bits[7] not in _CANDIDATE_TYPES:
        return None
    numbers = [bits[1], bits[3], bits[5]]
    numbers += [bits[i + 1] for i in range(8, len(bits) - 1, 2) if bits[i] in _INT_EXTENSIONS]
    if not all(n.isdecimal() and len(n) <= 10 for n in numbers) or int(bits[5]) > 65535:
        return None
    return IceCandidate(
        foundation=bits[0],
        component=int(bits[1]),
        transport=bits[2].lower(),
        priority=int(bits[3]),
        address=bits[4],
        port=int(bits[5]),
        type=bits[7],
    )


def candidate_allowed(candidate: object, policy: CandidatePolicy) -> bool:
    """Whether the server may use this offered or trickled candidate.

    ``candidate`` is an ``a=candidate:`` line or a trickled
    ``RTCIceCandidate.candidate`` string. The empty string (end of
    candidates) is not a candidate: False.
    """
    parsed = parse_candidate(candidate)
    if parsed is None or parsed.transport != "udp" or parsed.port == 0:
        return False
    if policy is CandidatePolicy.LOOPBACK:
        return parsed.address == LOOPBACK_ADDRESS
    return _routable(parsed.address) or _MDNS_NAME.fullmatch(parsed.address) is not None


def _routable(address: str) -> bool:
    """An IP literal a connectivity check can go to (aioice would resolve any other name)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_unspecified or ip.is_multicast)


def _text_within(sdp: object, max_bytes: int) -> str:
    if not isinstance(sdp, str) or not sdp:
        raise _rejected(OfferRejectReason.NOT_SDP, "The call offer is missing or is not text.")
    too_large = OfferRejected(
        f"The call offer is larger than {max_bytes} bytes.",
        reason=OfferRejectReason.TOO_LARGE,
        hint="a browser's audio offer is a few KiB; check the page sends only the SDP",
    )
    if len(sdp) > max_bytes:  # before encoding: a huge string costs nothing more
        raise too_large
    try:
        size = len(sdp.encode("utf-8"))
    except UnicodeEncodeError:
        raise _rejected(OfferRejectReason.NOT_SDP, "The call offer is not valid text.") from None
    if size > max_bytes:
        raise too_large
    return sdp


def _check_media(description: SessionDescription) -> MediaSection:
    kinds = [m.media for m in description.media]
    if "audio" not in kinds:
        raise _rejected(
            OfferRejectReason.NO_AUDIO,
            "The call offer has no audio. Allow the microphone and try again.",
        )
    unsupported = sorted({k for k in kinds if k not in ("audio", "application")})
    if unsupported:
        raise _rejected(
            OfferRejectReason.UNSUPPORTED_MEDIA,
            f"The call offer asks for {' and '.join(unsupported)}; voxpipe calls are audio only.",
        )
    for kind, what in (("audio", "audio stream"), ("application", "data channel section")):
        if kinds.count(kind) > 1:
            raise _rejected(
                OfferRejectReason.UNSUPPORTED_MEDIA,
                f"The call offer has {kinds.count(kind)} {what}s; a call has one.",
            )
    if kinds[0] != "audio":
        raise _rejected(
            OfferRejectReason.AUDIO_NOT_FIRST,
            "The call offer must put its audio first (add the audio transceiver "
            "before creating the data channel).",
        )
    return description.media[0]


def _opus_payload_type(audio: MediaSection) -> int:
    for value in audio.attributes("rtpmap"):
        payload_type, _, encoding = (value or "").partition(" ")
        name, *rest = encoding.split("/")
        if (name.lower(), *rest) == _OPUS and payload_type in audio.formats:
            return int(payload_type)
    raise _rejected(
        OfferRejectReason.NO_OPUS,
        "The call offer does not offer Opus audio (opus/48000/2); use a current browser.",
    )


def _check_transport(description: SessionDescription) -> None:
    """What aiortc requires of every section before it will connect."""
    for section in description.media:
        ufrag = description.attribute(section, "ice-ufrag")
        pwd = description.attribute(section, "ice-pwd")
        if not (ufrag and _ICE_UFRAG.fullmatch(ufrag) and pwd and _ICE_PWD.fullmatch(pwd)):
            raise _rejected(
                OfferRejectReason.NO_ICE_CREDENTIALS,
                f"The call offer's {section.media} section has no valid ICE username "
                "fragment and password.",
            )
        dtls = [description.attribute(section, name) for name in ("fingerprint", "setup")]
        if None in dtls:
            raise _rejected(
                OfferRejectReason.NOT_SDP,
                f"The call offer is not a WebRTC offer: its {section.media} section has no "
                "DTLS fingerprint and setup role.",
            )
    if None not in description.media[0].attributes("rtcp-mux"):
        raise _rejected(
            OfferRejectReason.UNSUPPORTED_MEDIA,
            "The call offer's audio does not multiplex RTCP (a=rtcp-mux); use a current browser.",
        )


def _filter_candidates(text: str, policy: CandidatePolicy) -> tuple[list[str], int]:
    kept: list[str] = []
    dropped = 0
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        attribute = parse_attribute(line)
        is_candidate = attribute is not None and attribute.name == "candidate"
        if is_candidate and not candidate_allowed(line, policy):
            dropped += 1
            continue
        kept.append(line)
    while kept and kept[-1] == "":
        kept.pop()
    return kept, dropped


def _rejected(reason: OfferRejectReason, message: str) -> OfferRejected:
    return OfferRejected(message, reason=reason)

"""A small strict SDP reader for offers that come from a browser.

Nothing from the page is trusted, and aiortc's own parser answers garbage with
``AssertionError``, ``KeyError`` or ``StopIteration`` (and accepts more than it
can use). This reader is stricter than aiortc's on every line aiortc reads, so
an offer that passes here never makes aiortc's parser throw: ``v=0`` first,
then ``<letter>=<value>`` lines, ``m=<media> <port> <proto> <fmt> ...``
sections, and a grammar for each attribute aiortc interprets (see
``_ATTRIBUTE_GRAMMAR``). Candidate lines are left to :mod:`voxpipe.webrtc.offer`,
which drops the ones it does not like instead of refusing the offer.

A violation raises :class:`~voxpipe.errors.OfferRejected` with reason
``NOT_SDP`` and the line number, in words a browser user can pass on.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

from voxpipe.errors import OfferRejected, OfferRejectReason

_LINE = re.compile(r"[a-z]=[^\x00-\x1f\x7f]*")
# aiortc's own m-line pattern, narrowed: port 0-65535, payload types checked below.
_MEDIA_LINE = re.compile(r"m=([a-z]+) ([0-9]{1,5}) ([A-Z]+(?:/[A-Z]+)*) (\S+(?: \S+)*)")
_CONNECTION = re.compile(r"IN IP[46] \S+")
_UINT = r"[0-9]{1,10}"
_PAYLOAD_TYPE = r"[0-9]{1,3}"
_UINT_RE, _PAYLOAD_TYPE_RE = re.compile(_UINT), re.compile(_PAYLOAD_TYPE)
_ATTRIBUTE_GRAMMAR: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern)
    for name, pattern in {
        "fingerprint": r"[A-Za-z0-9-]+ [0-9A-Fa-f:]+",
        "setup": r"active|passive|actpass",
        "extmap": rf"{_UINT}(?:/[a-z]+)? \S+",
        "rtpmap": rf"{_PAYLOAD_TYPE} [^\s/]+/{_UINT}(?:/{_UINT})?",
        "fmtp": rf"{_PAYLOAD_TYPE} \S.*",
        "rtcp-fb": rf"(?:\*|{_PAYLOAD_TYPE}) \S+(?: .*)?",
        "rtcp": rf"{_UINT}(?: IN IP[46] \S+)?",
        "sctp-port": _UINT,
        "max-message-size": _UINT,
        "ssrc": rf"{_UINT} [^\s:]+:.*",
        "ssrc-group": rf"\S+(?: {_UINT})*",
        "sctpmap": rf"{_UINT} \S.*",
        "group": r".*",  # any value, but a value
        "msid-semantic": r".*",
    }.items()
}
# fmtp parameters aiortc converts with int().
_INT_FMTP_PARAMETERS = frozenset(
    {"apt", "max-fr", "max-fs", "maxplaybackrate", "minptime", "stereo", "useinbandfec"}
)
# RTP payload types are 7 bits; 72-76 would collide with RTCP packet types (RFC 5761).
_RTCP_CONFLICT = range(72, 77)


@dataclasses.dataclass(frozen=True)
class Attribute:
    """One ``a=name[:value]`` line."""

    name: str
    value: str | None


@dataclasses.dataclass(frozen=True)
class MediaSection:
    """One ``m=`` line and the lines under it, as received."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    lines: tuple[str, ...]  # the m-line first

    def attributes(self, name: str) -> list[str | None]:
        """The values of every ``a=name`` line in this section (None for a flag)."""
        return attribute_values(self.lines, name)

    @property
    def is_rtp(self) -> bool:
        """Whether the section carries RTP (its formats are payload types)."""
        return "RTP" in self.proto.split("/")


@dataclasses.dataclass(frozen=True)
class SessionDescription:
    """A parsed offer: the session-level lines, then each media section."""

    session: tuple[str, ...]  # ``v=0`` first
    media: tuple[MediaSection, ...]

    def attribute(self, section: MediaSection, name: str) -> str | None:
        """The first ``a=name`` value of ``section``, else of the session (ICE, DTLS)."""
        for lines in (section.lines, self.session):
            values = [v for v in attribute_values(lines, name) if v is not None]
            if values:
                return values[0]
        return None


def parse_attribute(line: str) -> Attribute | None:
    """``a=name:value`` -> Attribute; None for a line that is not an attribute."""
    if not line.startswith("a="):
        return None
    name, colon, value = line[2:].partition(":")
    return Attribute(name, value if colon else None)


def attribute_values(lines: tuple[str, ...] | list[str], name: str) -> list[str | None]:
    """The values of every ``a=name`` line among ``lines``."""
    found = [parse_attribute(line) for line in lines]
    return [a.value for a in found if a is not None and a.name == name]


def parse_sdp(text: str) -> SessionDescription:
    """Read ``text`` strictly; raise OfferRejected(NOT_SDP) naming the first bad line."""
    lines = _split_lines(text)
    if not lines or lines[0] != "v=0":
        raise _not_sdp("it must start with the line v=0")
    for number, line in enumerate(lines, start=1):
        _check_line(number, line)
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    bounds = itertools.pairwise([*starts, len(lines)])
    media = tuple(_media_section(lines, start, end) for start, end in bounds)
    return SessionDescription(tuple(lines[: starts[0] if starts else len(lines)]), media)


def _split_lines(text: str) -> list[str]:
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and lines[-1] == "":
        lines.pop()  # the final line ending
    return lines


def _check_line(number: int, line: str) -> None:
    if not _LINE.fullmatch(line) or len(line.splitlines()) != 1:
        raise _not_sdp(f"line {number} is not of the form key=value")
    if line.startswith("c=") and not _CONNECTION.fullmatch(line[2:]):
        raise _not_sdp(f"line {number} is not a valid connection line")
    attribute = parse_attribute(line)
    grammar = _ATTRIBUTE_GRAMMAR.get(attribute.name) if attribute else None
    if attribute is None or grammar is None:
        return
    if attribute.value is None or not grammar.fullmatch(attribute.value):
        raise _not_sdp(f"line {number} is not a valid a={attribute.name} attribute")
    if attribute.name == "fmtp" and not _int_parameters_ok(attribute.value):
        raise _not_sdp(f"line {number} has a non-numeric a=fmtp parameter")


def _int_parameters_ok(fmtp_value: str) -> bool:
    parameters = fmtp_value.split(" ", 1)[1].split(";")
    for key, _, value in (p.partition("=") for p in parameters):
        if key in _INT_FMTP_PARAMETERS and not _UINT_RE.fullmatch(value):
            return False
    return True


def _media_section(lines: list[str], start: int, end: int) -> MediaSection:
    match = _MEDIA_LINE.fullmatch(lines[start])
    number = start + 1
    if match is None or int(match[2]) > 65535:
        raise _not_sdp(f"line {number} is not a valid m= line")
    section = MediaSection(
        media=match[1],
        port=int(match[2]),
        proto=match[3],
        formats=tuple(match[4].split(" ")),
        lines=tuple(lines[start:end]),
    )
    if section.is_rtp:
        _check_payload_types(section, number)
    return section


def _check_payload_types(section: MediaSection, number: int) -> None:
    for fmt in section.formats:
        if not _PAYLOAD_TYPE_RE.fullmatch(fmt) or int(fmt) > 127 or int(fmt) in _RTCP_CONFLICT:
            raise _not_sdp(f"line {number} lists {fmt!r}, which is not an RTP payload type")
    mapped = {v.split(" ", 1)[0] for v in section.attributes("rtpmap") if v}
    for value in section.attributes("fmtp"):
        # aiortc looks the codec up by its rtpmap and fails if there is none
        if value and value.split(" ", 1)[0] not in mapped:
            raise _not_sdp(f"the {section.media} section has an a=fmtp without an a=rtpmap")


def _not_sdp(detail: str) -> OfferRejected:
    return OfferRejected(
        f"The call offer is not valid SDP: {detail}.",
        reason=OfferRejectReason.NOT_SDP,
        hint="the page must send the offer its RTCPeerConnection created, unchanged",
    )

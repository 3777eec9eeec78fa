"""What answers a provider's voice webhook: the XML that connects the call to our stream.

- Telnyx: TeXML ``<Connect><Stream url bidirectionalMode="rtp">``, the codec
  both ways (PCMU or PCMA), and ``<Parameter>``\\ s that come back in the
  stream's ``start`` as ``custom_parameters``.
- Plivo: ``<Stream bidirectional="true" keepCallAlive="true">``, mu-law at
  8 kHz, and ``extraHeaders`` that come back in ``start`` as
  ``extra_headers``. Plivo takes only letters and digits in them (512 bytes
  at most), so a value goes as the hex of its UTF-8 (:func:`plivo_header_value`).

(Twilio's TwiML is :func:`voxpipe.telephony.webhook.connect_stream_twiml`.)
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

from voxpipe.errors import ConfigError
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.plivo import CONTENT_TYPE
from voxpipe.telephony.telnyx import CODECS

PLIVO_MAX_HEADERS = 512
_XML = '<?xml version="1.0" encoding="UTF-8"?>'


def connect_stream_texml(
    stream_url: str, parameters: Mapping[str, str], law: AudioEncoding = AudioEncoding.MULAW
) -> str:
    """TeXML connecting the call to a bidirectional RTP stream at ``stream_url``."""
    codec = quoteattr(CODECS[law])
    params = "".join(
        f"<Parameter name={quoteattr(name)} value={quoteattr(value)}/>"
        for name, value in parameters.items()
    )
    stream = (
        f'<Stream url={quoteattr(stream_url)} track="inbound_track" codec={codec} '
        f'bidirectionalMode="rtp" bidirectionalCodec={codec}>{params}</Stream>'
    )
    return f"{_XML}<Response><Connect>{stream}</Connect></Response>"


def plivo_stream_xml(stream_url: str, headers: Mapping[str, str]) -> str:
    """Plivo XML streaming the call both ways to ``stream_url``, the call held while it lasts."""
    extra = ",".join(f"{name}={value}" for name, value in headers.items())
    if not all(part.isascii() and part.isalnum() for kv in headers.items() for part in kv):
        raise ConfigError("Plivo's extraHeaders take letters and digits only")
    if len(extra) > PLIVO_MAX_HEADERS:
        raise ConfigError(f"Plivo's extraHeaders take {PLIVO_MAX_HEADERS} bytes at most")
    attributes = (
        f'bidirectional="true" keepCallAlive="true" audioTrack="inbound" '
        f"contentType={quoteattr(CONTENT_TYPE)} extraHeaders={quoteattr(extra)}"
    )
    return f"{_XML}<Response><Stream {attributes}>{escape(stream_url)}</Stream></Response>"


def plivo_header_value(text: str) -> str:
    """``text`` as Plivo's extraHeaders carry it: letters and digits (hex of its UTF-8)."""
    return text.encode("utf-8").hex()


def from_plivo_header_value(value: str | None) -> str | None:
    """The text :func:`plivo_header_value` made, or None if ``value`` is not one."""
    if not value:
        return None
    try:
        return bytes.fromhex(value).decode("utf-8")
    except (ValueError, binascii.Error):
        return None

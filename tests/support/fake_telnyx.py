"""A fake Telnyx on loopback: the far end of a media stream as Telnyx documents it (no tests here).

From Telnyx's TeXML and media streaming documentation (bidirectional RTP):
it posts the TeXML webhook to ``/telnyx/voice`` form-encoded, signed with
ed25519 over ``<telnyx-timestamp>|<body>`` when it holds a key, reads
``<Connect><Stream url codec bidirectionalMode="rtp">``, opens the stream
and sends ``connected`` then ``start`` (``stream_id`` beside it;
``call_control_id``, ``media_format`` in the TeXML's codec, the
``<Parameter>``\\ s as ``custom_parameters``); media, marks and ``clear`` as
:mod:`fake_phone` plays them (a clear returns the queued marks); ``stop``
when the caller hangs up.
"""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fake_phone import FakeCarrier

from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.signatures import telnyx_signature

CODECS = {"PCMU": AudioEncoding.MULAW, "PCMA": AudioEncoding.ALAW}


@dataclass
class TexmlAnswer:
    """What the webhook answered: the stream URL, its parameters and its codec."""

    status: int
    url: str = ""
    parameters: dict[str, str] | None = None
    codec: str = ""


async def post_texml(
    base_url: str,
    form: dict[str, str],
    key: Ed25519PrivateKey | None = None,
    *,
    timestamp: float | None = None,
    headers: dict[str, str] | None = None,
) -> TexmlAnswer:
    """POST the TeXML webhook as Telnyx would (signed with ``key`` at ``timestamp``)."""
    body = urlencode(form).encode()
    sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    if key is not None:
        stamp = str(int(time.time() if timestamp is None else timestamp))
        sent["telnyx-timestamp"] = stamp
        sent["telnyx-signature-ed25519"] = telnyx_signature(key, body, stamp)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/telnyx/voice", data=body, headers=sent) as r,
    ):
        if r.status != 200:
            return TexmlAnswer(r.status)
        stream = ET.fromstring(await r.text()).find("./Connect/Stream")
    assert stream is not None and stream.get("bidirectionalMode") == "rtp"
    assert stream.get("codec") == stream.get("bidirectionalCodec")
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return TexmlAnswer(200, stream.get("url", ""), parameters, stream.get("codec", ""))


@dataclass
class FakeTelnyx(FakeCarrier):
    """One call's stream, as Telnyx would carry it."""

    call_control_id: str = "v3:fake-call-control-0001"
    stream_id: str = "32de0dea-53cb-4b21-89a4-9e1819c043bc"
    key: Ed25519PrivateKey | None = None
    _sequence: int = 0

    async def answer(self, base_url: str, **form: str) -> tuple[str, dict[str, str]]:
        """Post the TeXML webhook; the stream URL and its parameters (in the codec asked)."""
        params = {"CallSid": self.call_control_id, "AccountSid": "acct", "From": "+15550001"}
        answer = await post_texml(base_url, {**params, **form}, self.key)
        assert answer.status == 200, answer
        self.law = CODECS[answer.codec]
        assert answer.parameters is not None
        return answer.url, answer.parameters

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    def opening(self, parameters: dict[str, str]) -> list[dict[str, Any]]:
        codec = next(name for name, law in CODECS.items() if law is self.law)
        start = {
            "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
            "call_control_id": self.call_control_id,
            "from": "+15550001",
            "to": "+15550002",
            "media_format": {"encoding": codec, "sample_rate": 8000, "channels": 1},
            "custom_parameters": parameters,
        }
        return [
            {"event": "connected", "version": "1.0.0"},
            {
                "event": "start",
                "sequence_number": self._next(),
                "start": start,
                "stream_id": self.stream_id,
            },
        ]

    def media_message(self, index: int, payload: bytes) -> dict[str, Any]:
        media = {"track": "inbound", "chunk": str(index + 1), "timestamp": str(index * 20)}
        media["payload"] = base64.b64encode(payload).decode()
        return self._framed("media", media=media)

    def echo_message(self, name: str) -> dict[str, Any]:
        return self._framed("mark", mark={"name": name})

    def stop(self) -> None:
        """Telnyx ends the stream (the caller hung up)."""
        self.stop_speaking()
        stop = {"user_id": "u", "call_control_id": self.call_control_id}
        self.post(self._framed("stop", stop=stop))

    def press(self, digit: str) -> None:
        self.post(self._framed("dtmf", occurred_at="2026-01-01T00:00:00Z", dtmf={"digit": digit}))

    def report_error(self, code: int, detail: str) -> None:
        payload = {"code": code, "title": "error", "detail": detail}
        self.post({"event": "error", "payload": payload, "stream_id": self.stream_id})

    def _framed(self, event: str, **body: Any) -> dict[str, Any]:
        return {
            "event": event,
            "sequence_number": self._next(),
            **body,
            "stream_id": self.stream_id,
        }

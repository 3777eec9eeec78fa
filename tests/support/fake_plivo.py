"""A fake Plivo on loopback: the far end of an audio stream as Plivo documents it (no tests here).

From Plivo's XML and audio streaming documentation (bidirectional): it posts
the answer webhook to ``/plivo/voice`` form-encoded, signed with
``X-Plivo-Signature-V3`` and its nonce when it holds the auth token, reads
``<Stream bidirectional="true" extraHeaders>url</Stream>``, opens the stream
and sends ``start`` (no ``connected``; ``callId``, ``streamId``,
``mediaFormat``, the extra headers as ``extra_headers``); it plays
``playAudio``, answers a ``checkpoint`` with ``playedStream`` once the audio
before it has played, and a ``clearAudio`` with ``clearedAudio``, never
returning the checkpoints the clear dropped. The caller hanging up closes
the socket (Plivo sends no stop).
"""

from __future__ import annotations

import base64
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import aiohttp
from fake_phone import FakeCarrier

from voxpipe.telephony.plivo import extra_headers
from voxpipe.telephony.signatures import plivo_signature


@dataclass
class PlivoAnswer:
    """What the webhook answered: the stream URL and its extra headers."""

    status: int
    url: str = ""
    headers: dict[str, str] | None = None


async def post_answer(
    base_url: str,
    form: dict[str, str],
    auth_token: str | None = None,
    *,
    nonce: str | None = None,
    headers: dict[str, str] | None = None,
) -> PlivoAnswer:
    """POST the answer webhook as Plivo would (signed with ``auth_token``)."""
    url = f"{base_url}/plivo/voice"
    sent = dict(headers or {})
    if auth_token is not None:
        nonce = nonce or secrets.token_hex(10)
        sent["X-Plivo-Signature-V3-Nonce"] = nonce
        sent["X-Plivo-Signature-V3"] = plivo_signature(auth_token, "POST", url, form.items(), nonce)
    async with aiohttp.ClientSession() as http, http.post(url, data=form, headers=sent) as r:
        if r.status != 200:
            return PlivoAnswer(r.status)
        stream = ET.fromstring(await r.text()).find("./Stream")
    assert stream is not None and stream.get("bidirectional") == "true"
    assert stream.get("contentType") == "audio/x-mulaw;rate=8000"
    return PlivoAnswer(200, (stream.text or "").strip(), extra_headers(stream.get("extraHeaders")))


@dataclass
class FakePlivo(FakeCarrier):
    """One call's stream, as Plivo would carry it."""

    MEDIA = "playAudio"
    MARK = "checkpoint"
    CLEAR = "clearAudio"
    FLUSHES_MARKS = False

    call_uuid: str = "12345678-1234-1234-1234-123456789abc"
    stream_id: str = "87654321-4321-4321-4321-cba987654321"
    auth_token: str | None = None
    _sequence: int = 0

    async def answer(self, base_url: str, **form: str) -> tuple[str, dict[str, str]]:
        """Post the answer webhook; the stream URL and its extra headers."""
        params = {"CallUUID": self.call_uuid, "From": "+15550001", "To": "+15550002"}
        answer = await post_answer(base_url, {**params, **form}, self.auth_token)
        assert answer.status == 200 and answer.headers is not None, answer
        return answer.url, answer.headers

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    def opening(self, parameters: dict[str, str]) -> list[dict[str, Any]]:
        start = {
            "callId": self.call_uuid,
            "streamId": self.stream_id,
            "accountId": "MAXXXXXXXXXXXXXXXXXX",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        }
        headers = ";".join(f"{name}={value}" for name, value in parameters.items())
        return [
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": start,
                "extra_headers": headers,
            },
        ]

    def media_message(self, index: int, payload: bytes) -> dict[str, Any]:
        media = {"track": "inbound", "timestamp": str(index * 20), "chunk": index + 1}
        media["payload"] = base64.b64encode(payload).decode()
        return self._framed("media", media=media)

    def echo_message(self, name: str) -> dict[str, Any]:
        return self._framed("playedStream", name=name)

    def cleared_message(self) -> dict[str, Any]:
        return self._framed("clearedAudio")

    def mark_name_of(self, message: dict[str, Any]) -> str:
        return str(message["name"])

    async def hang_up(self) -> None:
        """The caller hangs up: Plivo closes the stream's socket."""
        await self.drop()

    def press(self, digit: str) -> None:
        dtmf = {"track": "inbound", "digit": digit, "timestamp": "0"}
        self.post(self._framed("dtmf", dtmf=dtmf))

    def _framed(self, event: str, **body: Any) -> dict[str, Any]:
        return {"event": event, "sequenceNumber": self._next(), "streamId": self.stream_id, **body}

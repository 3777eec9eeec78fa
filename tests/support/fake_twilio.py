"""A fake Twilio on loopback: the far end of a Media Stream as Twilio documents it (no tests here).

From Twilio's Media Streams documentation (bidirectional, ``<Connect><Stream>``):
it fetches TwiML from ``POST /twilio/voice`` (signed as Twilio signs, when
given the auth token), opens the ``<Stream url>`` and sends ``connected``,
then ``start`` with the ``<Parameter>``\\ s as ``customParameters``; media,
marks and ``clear`` as :mod:`fake_phone` plays them (a clear returns every
pending mark at once); ``stop`` when the caller hangs up.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import aiohttp
from fake_phone import CHUNK, FakeCarrier, Segment, phone_recording

from voxpipe.telephony.webhook import twilio_signature

__all__ = ["CHUNK", "SILENCE", "FakeTwilio", "Segment", "mulaw_recording"]

SILENCE = b"\xff" * CHUNK


def mulaw_recording(path: Any) -> bytes:
    """A recording as Twilio carries it: 8 kHz mu-law."""
    return phone_recording(path)


@dataclass
class FakeTwilio(FakeCarrier):
    """One call's stream, as Twilio would carry it."""

    call_sid: str = "CA00000000000000000000000000000001"
    stream_sid: str = "MZ00000000000000000000000000000001"

    async def answer(
        self, base_url: str, auth_token: str | None = None, **form: str
    ) -> tuple[str, dict[str, str]]:
        """Ask the voice webhook for TwiML; the stream URL and its parameters."""
        params = {"CallSid": self.call_sid, "AccountSid": "AC0001", "From": "+15550001", **form}
        url = f"{base_url}/twilio/voice"
        headers = {}
        if auth_token is not None:
            headers["X-Twilio-Signature"] = twilio_signature(auth_token, url, params.items())
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=params, headers=headers) as r,
        ):
            assert r.status == 200, (r.status, await r.text())
            stream = ET.fromstring(await r.text()).find("./Connect/Stream")
        assert stream is not None
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        return stream.get("url", ""), parameters

    def opening(self, parameters: dict[str, str]) -> list[dict[str, Any]]:
        media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        start = {
            "accountSid": "AC0001",
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": media_format,
            "customParameters": parameters,
        }
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        started = {"event": "start", "sequenceNumber": "1", "start": start}
        return [connected, {**started, "streamSid": self.stream_sid}]

    def media_message(self, index: int, payload: bytes) -> dict[str, Any]:
        media = {"track": "inbound", "chunk": str(index + 1), "timestamp": str(index * 20)}
        media["payload"] = base64.b64encode(payload).decode()
        return {"event": "media", "streamSid": self.stream_sid, "media": media}

    def echo_message(self, name: str) -> dict[str, Any]:
        return {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}

    def stop(self) -> None:
        """Twilio ends the stream (the caller hung up)."""
        self.stop_speaking()
        stop = {"accountSid": "AC0001", "callSid": self.call_sid}
        self.post({"event": "stop", "streamSid": self.stream_sid, "stop": stop})

    def press(self, digit: str) -> None:
        dtmf = {"track": "inbound_track", "digit": digit}
        self.post({"event": "dtmf", "streamSid": self.stream_sid, "dtmf": dtmf})

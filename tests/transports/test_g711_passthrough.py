"""A phone caller's G.711 reaches the embedded Realtime server unchanged, and the bot's comes back.

Real parts on loopback: aiohttp serving the Twilio routes, the embedded
Realtime server (scripted brain, twice real time), the voxpipe graph; the far
end is ``fake_twilio`` (mu-law, Twilio's buffer, marks and clear). What the
server was sent is read where it takes each ``input_audio_buffer.append``
apart; what it sent is read from the deltas the call received.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fake_phone import FakeCarrier, phone_recording
from fake_telnyx import FakeTelnyx
from fake_twilio import CHUNK, FakeTwilio, mulaw_recording
from loopback import serving as serving_app
from phone_calls import barge_in_recordings, calling, the_call, until
from pipecat.services.openai.realtime import events as rt
from realtime_calls import LONG_REPLY, compose

import voxpipe.realtime_server.session as server_session
from voxpipe.audio import AudioFormat
from voxpipe.call.events import ItemTruncated, Reconnected
from voxpipe.pipelines.live_call import LiveCallSpec
from voxpipe.pipelines.simulated_call import LOCAL_SERVER_KEY
from voxpipe.processors.realtime import RealtimeService
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.transports.realtime_server import ScriptedBrain, ServerConfig, running_realtime_server
from voxpipe.transports.telephony.routes import TwilioConfig
from voxpipe.transports.telephony.telnyx_routes import TelnyxConfig
from voxpipe.transports.telephony.transport import PhoneCallTransport
from voxpipe.transports.webrtc.app import ServeApp, ServeConfig


class Wire:
    """What crossed the Realtime socket: appends the server took, deltas and updates it sent."""

    def __init__(self) -> None:
        self.appended: list[tuple[bytes, AudioFormat]] = []
        self.deltas: dict[str, bytearray] = defaultdict(bytearray)  # by item
        self.updated = 0

    def sent_to_server(self, fmt: AudioFormat = AudioFormat.G711_ULAW) -> bytes:
        assert {fmt for _, fmt in self.appended} == {fmt}
        return b"".join(data for data, _ in self.appended)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    seen = Wire()
    decode_append = server_session.decode_append

    def taking_apart(audio_b64: str, fmt: AudioFormat) -> bytes:
        data = decode_append(audio_b64, fmt)
        seen.appended.append((data, fmt))
        return data

    monkeypatch.setattr(server_session, "decode_append", taking_apart)
    on_message = RealtimeService._on_message

    async def received(self: RealtimeService, message: str | bytes) -> None:
        event = json.loads(message)
        if event.get("type") == "response.output_audio.delta":
            seen.deltas[event["item_id"]] += base64.b64decode(event["delta"])
        elif event.get("type") == "session.updated":
            seen.updated += 1
        await on_message(self, message)

    monkeypatch.setattr(RealtimeService, "_on_message", received)
    return seen


@asynccontextmanager
async def serving(
    tmp_path: Path, replies: list[str], session_max_seconds: float = 3600, **phones: Any
) -> AsyncIterator[tuple[str, ServeApp, Any]]:
    brain = ScriptedBrain(replies, pace=2.0)
    config = ServerConfig(api_key=LOCAL_SERVER_KEY, session_max_seconds=session_max_seconds)
    async with running_realtime_server(config=config, brain=brain) as server:
        spec = LiveCallSpec(server_url=server.realtime_url, api_key=LOCAL_SERVER_KEY)
        serve = ServeApp(ServeConfig(call=spec, **(phones or {"twilio": TwilioConfig()})))
        async with serving_app(serve.build_app()) as base:
            yield base, serve, server.server


def fake_sent(fake: FakeCarrier, chunks: int = 2000) -> bytes:
    """Every byte the fake's caller sends: the recording, then a quiet line."""
    return fake.caller + bytes([fake.law.silence]) * (CHUNK * chunks - len(fake.caller))


def played(fake: FakeCarrier, item_id: str) -> bytes:
    return b"".join(s.payload for s in fake.segments if s.key == item_id)


def server_formats(server: Any) -> set[tuple[AudioFormat, AudioFormat]]:
    return {(d.core.config.input_format, d.core.config.output_format) for d in server.live_sessions}


async def test_the_callers_and_the_bots_mulaw_pass_through_unchanged_across_a_session_update(
    make_speech: Any, tmp_path: Path, wire: Wire
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [1000, "What time do you open on Saturday?", 7000, "Do you take cards?", 6000],
        recording,
    )
    replies = ["We open at nine.", "Yes, we take cards and cash."]
    async with serving(tmp_path, replies) as (base, serve, server):
        twilio = FakeTwilio(mulaw_recording(recording))
        stream_url, parameters = await twilio.answer(base)
        async with calling(twilio, stream_url, parameters):
            await until(lambda: serve.calls)
            call = the_call(serve)
            service = call.graph.brain
            assert isinstance(service, RealtimeService)
            await until(lambda: wire.deltas and twilio.loud_ms() > 500, 25)
            assert server_formats(server) == {(AudioFormat.G711_ULAW, AudioFormat.G711_ULAW)}
            # Mid-call updates that name PCM, or no format at all (pipecat's own, a
            # rollover's), leave the session in the caller's law.
            updated = wire.updated
            pcm = rt.AudioConfiguration(
                input=rt.AudioInput(format=rt.PCMAudioFormat()),
                output=rt.AudioOutput(format=rt.PCMAudioFormat()),
            )
            reset = rt.SessionProperties(instructions="Be brief.", audio=pcm)
            await service.send_client_event(rt.SessionUpdateEvent(session=reset))
            await service._send_session_update()
            await until(lambda: wire.updated >= updated + 2, 10)
            assert server_formats(server) == {(AudioFormat.G711_ULAW, AudioFormat.G711_ULAW)}

            # The second question is answered, in mu-law, after the updates.
            before = set(wire.deltas)

            def answered_again() -> bool:
                return any(i not in before and twilio.heard_ms(i) > 800 for i in wire.deltas)

            await until(answered_again, 30)
            transport = call.transport
            assert isinstance(transport, PhoneCallTransport)
            passthrough = transport.passthrough
            assert passthrough is not None and service.g711_input is not None
            counts_in, counts_out = service.g711_input.counts, passthrough.counts
    sent = wire.sent_to_server()
    print(
        f"\ncaller: {len(sent) / 8:.0f} ms appended, {counts_in.passed} bytes passed, "
        f"{counts_in.transcoded} transcoded; bot: {counts_out.passed} bytes passed, "
        f"{counts_out.encoded} encoded"
    )
    # The server took the fake's own bytes: one unbroken run of what it sent.
    assert len(sent) > 8 * 3000
    assert sent in fake_sent(twilio)
    # Caller frames a processor changed (the echo guard silencing echo) were encoded again.
    assert counts_in.passed + counts_in.transcoded == len(sent)
    assert counts_in.passed > 8 * 3000  # the question, at least, went as it came
    # The fake played the server's bytes for each reply, as the server made them
    # (the last chunk of a reply is padded with silence to 20 ms).
    # (the last chunk of a reply is padded with silence to 20 ms; a reply cut by a
    # barge-in, as when the server's VAD splits a question in two, was played in part).
    heard = {item: played(twilio, item) for item in wire.deltas if played(twilio, item)}
    assert heard and len(max(heard.values(), key=len)) >= 8 * 800
    whole = 0
    for item, fake_bytes in heard.items():
        server_bytes = bytes(wire.deltas[item])
        assert fake_bytes[: len(server_bytes)] == server_bytes[: len(fake_bytes)]
        if len(fake_bytes) >= len(server_bytes):
            assert len(fake_bytes) - len(server_bytes) < CHUNK
            whole += len(server_bytes)
    assert whole >= 8 * 800 and counts_out.passed >= whole


async def test_a_barge_in_truncates_a_passed_through_reply_where_twilio_stopped_playing(
    make_speech: Any, tmp_path: Path, wire: Wire
) -> None:
    question, barge_in = barge_in_recordings(make_speech, tmp_path)
    async with serving(tmp_path, [LONG_REPLY, "Sure."]) as (base, serve, server):
        # The caller barges in once a second of the reply has played (fake_phone).
        line = mulaw_recording(barge_in)
        twilio = FakeTwilio(mulaw_recording(question), latency_ms=60, barge_in=line)
        stream_url, parameters = await twilio.answer(base)
        async with calling(twilio, stream_url, parameters):
            await until(lambda: serve.calls)
            call = the_call(serve)
            events: list[Any] = call.graph.brain.events  # type: ignore[attr-defined]

            def heard_cut() -> ItemTruncated | None:
                cuts = [e for e in events if isinstance(e, ItemTruncated)]
                return next((c for c in cuts if twilio.heard_ms(c.item_id) > 0), None)

            await until(lambda: heard_cut() is not None, 90)
            cut = heard_cut()
            assert cut is not None
            heard = twilio.heard_ms(cut.item_id)
            estimated = call.transport.cuts_estimated  # type: ignore[attr-defined]
            formats = server_formats(server)
    print(f"\nheard {heard:.0f} ms of {cut.item_id}, truncated at {cut.audio_end_ms}")
    assert formats == {(AudioFormat.G711_ULAW, AudioFormat.G711_ULAW)}
    # Cut mid-answer, after what was heard before the barge-in, in G.711 milliseconds.
    assert twilio.barge_in_heard_ms - 40 <= cut.audio_end_ms < cut.received_ms
    assert abs(cut.audio_end_ms - heard) <= 40
    assert estimated == 0
    server_bytes, fake_bytes = bytes(wire.deltas[cut.item_id]), played(twilio, cut.item_id)
    assert fake_bytes and server_bytes.startswith(fake_bytes[: len(server_bytes)])
    assert twilio.media_after_clear == 0


async def test_an_alaw_caller_on_telnyx_passes_through_in_alaw(
    make_speech: Any, tmp_path: Path, wire: Wire
) -> None:
    recording = tmp_path / "caller.wav"
    compose(make_speech, [1000, "What time do you open on Saturday?", 6000], recording)
    alaw = AudioFormat.G711_ALAW
    telnyx_config = TelnyxConfig(law=AudioEncoding.ALAW)
    async with serving(tmp_path, ["We open at nine."], telnyx=telnyx_config) as (
        base,
        serve,
        server,
    ):
        telnyx = FakeTelnyx(phone_recording(recording, AudioEncoding.ALAW))
        stream_url, parameters = await telnyx.answer(base)
        async with calling(telnyx, stream_url, parameters):
            await until(lambda: serve.calls)
            await until(lambda: wire.deltas and telnyx.heard_ms(next(iter(wire.deltas))) > 800, 25)
            formats = server_formats(server)
    assert telnyx.law is AudioEncoding.ALAW
    assert formats == {(alaw, alaw)}
    sent = wire.sent_to_server(alaw)
    assert len(sent) > 8 * 2000 and sent in fake_sent(telnyx)
    item = next(iter(wire.deltas))
    server_bytes, fake_bytes = bytes(wire.deltas[item]), played(telnyx, item)
    assert len(fake_bytes) >= 8 * 800
    assert fake_bytes[: len(server_bytes)] == server_bytes[: len(fake_bytes)]


async def test_a_new_session_after_the_old_one_expired_speaks_the_callers_law_from_the_start(
    make_speech: Any, tmp_path: Path, wire: Wire
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [1000, "What time do you open on Saturday?", 5000, "Do you take cards?", 6000],
        recording,
    )
    replies = ["We open at nine.", "Yes, we take cards and cash."]
    async with serving(tmp_path, replies, session_max_seconds=7) as (base, serve, server):
        twilio = FakeTwilio(mulaw_recording(recording))
        stream_url, parameters = await twilio.answer(base)
        async with calling(twilio, stream_url, parameters):
            await until(lambda: serve.calls)
            service = the_call(serve).graph.brain
            assert isinstance(service, RealtimeService)
            await until(lambda: any(isinstance(e, Reconnected) for e in service.events), 30)
            formats = server_formats(server)  # the new session, ready
            before = set(wire.deltas)

            def answered_on_the_new_session() -> bool:
                return any(i not in before and twilio.heard_ms(i) > 800 for i in wire.deltas)

            await until(answered_on_the_new_session, 30)
    assert formats == {(AudioFormat.G711_ULAW, AudioFormat.G711_ULAW)}
    sent = wire.sent_to_server()  # every append, to either session, was mu-law
    assert sent and len(wire.appended) > 100
    item = next(i for i in wire.deltas if i not in before and played(twilio, i))
    server_bytes, fake_bytes = bytes(wire.deltas[item]), played(twilio, item)
    assert fake_bytes[: len(server_bytes)] == server_bytes[: len(fake_bytes)]

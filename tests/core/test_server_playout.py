"""The WebRTC playout ledger: started/stopped/cleared events and where a barge-in cuts."""

from __future__ import annotations

import base64

from openai.types.realtime import InputAudioBufferAppendEvent

from voxpipe.realtime_server.effects import PlayoutCutRequested
from voxpipe.realtime_server.ids import IdFactory
from voxpipe.realtime_server.server_playout import PlayoutCut, ServerPlayout
from voxpipe.realtime_server.session import Media, RealtimeSession


def _types(events: list[object]) -> list[str]:
    return [getattr(e, "type", type(e).__name__) for e in events]


def test_started_once_per_response_and_stopped_after_done_and_drained() -> None:
    playout = ServerPlayout(IdFactory("t"))
    assert _types(playout.queued("resp_1", "item_1", 0, 100)) == ["output_audio_buffer.started"]
    assert playout.queued("resp_1", "item_1", 0, 100) == []
    playout.sent("item_1", 120)
    assert playout.drained() == []  # the response goes on: a gap, not the end
    assert playout.response_done("resp_1") == []  # 80 ms still queued
    playout.sent("item_1", 80)
    stopped = playout.drained()
    assert _types(stopped) == ["output_audio_buffer.stopped"]
    assert stopped[0].response_id == "resp_1"
    assert not playout.active


def test_done_after_the_audio_drained_stops_at_once() -> None:
    playout = ServerPlayout(IdFactory("t"))
    playout.queued("resp_1", "item_1", 0, 40)
    playout.sent("item_1", 40)
    assert _types(playout.response_done("resp_1")) == ["output_audio_buffer.stopped"]
    assert playout.response_done("resp_other") == []


def test_a_cut_truncates_at_what_went_out() -> None:
    playout = ServerPlayout(IdFactory("t"))
    playout.queued("resp_1", "item_1", 0, 3000)
    playout.sent("item_1", 1240)
    cut, events = playout.cut()
    assert cut == PlayoutCut("resp_1", "item_1", 0, 1240)
    assert _types(events) == ["output_audio_buffer.cleared"]
    assert playout.cut() == (None, [])  # nothing is playing any more


def test_a_cut_after_everything_went_out_truncates_nothing() -> None:
    playout = ServerPlayout(IdFactory("t"))
    playout.queued("resp_1", "item_1", 0, 500)
    playout.sent("item_1", 500)
    cut, events = playout.cut()
    assert cut is None and _types(events) == ["output_audio_buffer.cleared"]


def test_output_buffer_clear_is_a_webrtc_event_only() -> None:
    webrtc = RealtimeSession(model="m", ids=IdFactory("a"), now_ms=0, media=Media.WEBRTC)
    assert webrtc.receive('{"type": "output_audio_buffer.clear"}', 0) == [PlayoutCutRequested()]
    socket = RealtimeSession(model="m", ids=IdFactory("b"), now_ms=0)
    refused = socket.receive('{"type": "output_audio_buffer.clear"}', 0)
    assert _types(refused) == ["error"]


def test_media_audio_fills_the_buffer_as_an_append_does() -> None:
    pcm = bytes(4800)  # 100 ms of 24 kHz PCM16 silence
    webrtc = RealtimeSession(model="m", ids=IdFactory("a"), now_ms=0, media=Media.WEBRTC)
    socket = RealtimeSession(model="m", ids=IdFactory("b"), now_ms=0)
    webrtc.media_audio(pcm, 0)
    append = InputAudioBufferAppendEvent(
        type="input_audio_buffer.append", audio=base64.b64encode(pcm).decode()
    )
    socket.receive(append.model_dump_json(), 0)
    assert webrtc.buffer.buffered_ms == socket.buffer.buffered_ms == 100

"""G.711 passthrough's pure parts: the output's byte keeper, the caller's bytes, the formats."""

from __future__ import annotations

import numpy as np
import pytest
from pipecat.services.openai.realtime import events as rt

from voxpipe.audio import AudioFormat
from voxpipe.call import CallConfig
from voxpipe.call.realtime_call import RealtimeCall
from voxpipe.errors import AudioFormatError, ConfigError
from voxpipe.frames import G711InputAudioFrame
from voxpipe.playback import PlaybackLedger
from voxpipe.processors.realtime.formats import (
    G711Input,
    passthrough_format,
    session_format,
    with_audio_formats,
)
from voxpipe.realtime_server.input_audio import InputAudioBuffer
from voxpipe.telephony.codec import AudioEncoding
from voxpipe.telephony.passthrough import G711Passthrough

ULAW, ALAW, PCM = AudioFormat.G711_ULAW, AudioFormat.G711_ALAW, AudioFormat.PCM16_24K


def speech_like(n: int, seed: int = 1) -> bytes:
    """G.711 bytes of every code, both zeros of mu-law included."""
    return bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8))


@pytest.mark.parametrize("law", list(AudioEncoding))
def test_chunks_cut_anywhere_get_the_bytes_the_frames_brought(law: AudioEncoding) -> None:
    keeper = G711Passthrough(law)
    frames = [speech_like(n, seed=n) for n in (800, 800, 333, 1200)]
    for g711 in frames:
        keeper.brought(g711)
    pcm = law.decode(b"".join(frames))
    out = b"".join(keeper.chunk(pcm[i : i + 320]) for i in range(0, len(pcm), 320))
    assert out == b"".join(frames)
    assert keeper.counts.passed == len(out) and keeper.counts.encoded == 0
    assert keeper.held == 0


def test_mulaws_two_zeros_survive_where_re_encoding_would_not() -> None:
    law = AudioEncoding.MULAW
    negative_zero = bytes([0x7F]) * 160  # what voxpipe's server encodes silence as
    assert law.encode(law.decode(negative_zero)) != negative_zero
    keeper = G711Passthrough(law)
    keeper.brought(negative_zero)
    assert keeper.chunk(law.decode(negative_zero)) == negative_zero


def test_a_padded_tail_is_encoded_and_a_mismatch_never_carries_over() -> None:
    law = AudioEncoding.MULAW
    keeper = G711Passthrough(law)
    reply = speech_like(250)
    keeper.brought(reply)
    pcm = law.decode(reply)
    first = keeper.chunk(pcm[:320])
    tail = keeper.chunk(pcm[320:] + bytes(320 - len(pcm[320:])))  # pipecat pads the last chunk
    assert first + tail[:90] == reply
    assert tail[90:] == law.encode(bytes(140))
    assert keeper.counts.encoded == 70
    # Audio that never came as G.711 (or was changed) is encoded, and what was held is dropped.
    keeper.brought(speech_like(160, seed=7))
    other = law.decode(speech_like(160, seed=8))
    assert keeper.chunk(other) == law.encode(other)
    assert keeper.held == 0


def test_an_interruption_drops_what_is_held() -> None:
    keeper = G711Passthrough(AudioEncoding.ALAW)
    keeper.brought(speech_like(800))
    keeper.dropped()
    after = speech_like(160, seed=3)
    keeper.brought(after)
    assert keeper.chunk(AudioEncoding.ALAW.decode(after)) == after


def test_the_callers_bytes_go_as_they_came_unless_a_processor_changed_the_audio() -> None:
    g711 = speech_like(160)
    pcm = AudioEncoding.MULAW.decode(g711)
    pcm16k = pcm + pcm  # stands in for the pipeline's 16 kHz PCM
    source = G711Input(ULAW)
    frame = G711InputAudioFrame(pcm16k, 16_000, 1, g711=g711, g711_format=ULAW)
    assert source.audio(frame, frame.audio, frame.sample_rate) == g711
    frame.audio = bytes(len(pcm16k))  # the echo guard silenced it
    silenced = source.audio(frame, frame.audio, frame.sample_rate)
    assert silenced == b"\xff" * 160  # transcoded once, to the same law
    # Another law's bytes are not this session's: transcoded too.
    alaw = G711Input(ALAW)
    other = G711InputAudioFrame(pcm16k, 16_000, 1, g711=g711, g711_format=ULAW)
    assert len(alaw.audio(other, other.audio, other.sample_rate)) == 160
    assert (source.counts.passed, source.counts.transcoded) == (160, 160)
    assert alaw.counts.transcoded == 160


def test_a_session_update_always_carries_a_g711_calls_formats() -> None:
    pcm = rt.AudioConfiguration(
        input=rt.AudioInput(format=rt.PCMAudioFormat()), output=rt.AudioOutput(voice="ash")
    )
    for session in (rt.SessionProperties(instructions="x"), rt.SessionProperties(audio=pcm)):
        pinned = with_audio_formats(session, ULAW, ULAW)
        assert pinned.audio and pinned.audio.input and pinned.audio.output
        assert pinned.audio.input.format == rt.PCMUAudioFormat()
        assert pinned.audio.output.format == rt.PCMUAudioFormat()
    assert pinned.audio.output.voice == "ash"  # the rest of the update is kept
    # A PCM call's update without a format is left alone; one that names G.711 is corrected.
    plain = rt.SessionProperties(instructions="x")
    assert with_audio_formats(plain, PCM, PCM) is plain
    wrong = rt.SessionProperties(
        audio=rt.AudioConfiguration(input=rt.AudioInput(format=rt.PCMAAudioFormat()))
    )
    fixed = with_audio_formats(wrong, PCM, PCM)
    assert fixed.audio and fixed.audio.input and fixed.audio.input.format == rt.PCMAudioFormat()
    assert session_format(ALAW) == rt.PCMAAudioFormat()


def test_only_a_transport_that_offers_g711_gets_a_g711_session() -> None:
    class Phone:
        g711_format: AudioFormat | None = ALAW

    class Browser:
        pass

    assert passthrough_format(Phone()) is ALAW
    assert passthrough_format(Browser()) is PCM
    off = Phone()
    off.g711_format = None
    assert passthrough_format(off) is PCM


def test_a_g711_call_counts_its_audio_in_g711_milliseconds() -> None:
    config = CallConfig(input_format=ULAW, output_format=ULAW)
    assert config.preroll_bytes == 8 * config.preroll_ms
    call = RealtimeCall(config, random=lambda: 0.5, new_id=lambda: "item_x")
    assert call.ledger.audio_format is ULAW
    assert call.sent_audio.on_append(1600, frame_id=1, now_ms=0).end_ms == 200
    with pytest.raises(ConfigError, match="ledger counts audio/pcm"):
        RealtimeCall(config, ledger=PlaybackLedger(), random=lambda: 0.5, new_id=lambda: "i")
    with pytest.raises(AudioFormatError):
        AudioEncoding.of(PCM)


def test_a_chunk_dropped_after_a_cut_takes_its_bytes_along() -> None:
    law = AudioEncoding.MULAW
    keeper = G711Passthrough(law)
    late, reply = speech_like(160, seed=4), speech_like(320, seed=5)
    keeper.brought(late)  # arrived after the cut, before the next reply's marker
    keeper.brought(reply)
    keeper.skipped(law.decode(late))
    pcm = law.decode(reply)
    assert keeper.chunk(pcm[:320]) + keeper.chunk(pcm[320:]) == reply
    assert keeper.counts.passed == 320 and keeper.counts.encoded == 0


@pytest.mark.parametrize("fmt", [ULAW, ALAW])
def test_the_embedded_servers_vad_hears_g711_as_it_is_appended(fmt: AudioFormat) -> None:
    # soxr's stream held 8 kHz audio back 100 ms and released it in 104 ms blocks,
    # so a barge-in on a G.711 session was heard up to 200 ms late.
    buffer = InputAudioBuffer(fmt)
    buffer.enable_vad(True)
    law = AudioEncoding.of(fmt)
    tone = (np.sin(np.arange(160) / 3) * 8000).astype("<i2").tobytes()
    heard_ms = 0
    for appended in range(1, 51):
        for frame in buffer.append(law.encode(tone)):
            heard_ms = frame.end_ms
        assert appended * 20 - heard_ms < 32 + 5  # at most one VAD frame (32 ms) waits
    assert heard_ms >= 1000 - 32

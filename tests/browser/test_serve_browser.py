"""``voxpipe serve`` in real headless Chromium: the package's page, a fake microphone playing
real speech, the embedded Realtime server answering from a script in a real voice, and the
page recording what it played (``?record=1``), all inside a loopback-only network namespace.

The brain is scripted, so the replies are known; where it hears the caller with Whisper, the
page's captions and ``transcript.json`` show what the server understood. Whisper does not judge
the page's recording: at a load average of 9-11 on 2 cores it lost up to a third of the agent's
audio; how long it was loud, and when, is judged instead.

A fake microphone plays its file on its own clock, whatever the call is doing; on a loaded
machine a reply can start 7 s after the question and play 2 s behind on the page, so a next
question at a fixed offset lands in the reply. A caller who waits for the answer is the page
muting its microphone and unmuting it, once the reply has played out, in the silence before
the next take of the line (:func:`say_once`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
from browser import Browser, BrowserError, in_loopback_netns, launch_browser
from hearing import assert_heard
from pipecat.frames.frames import BotStartedSpeakingFrame
from realtime_calls import LONG_REPLY, compose

from voxpipe.call.events import ItemTruncated
from voxpipe.engines import shared_stt, shared_tts
from voxpipe.pipelines.live_call import CallEnd, LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
from voxpipe.playback import PlaybackLedger
from voxpipe.transports.realtime_server import ScriptedBrain
from voxpipe.transports.realtime_server.brains import _SENTENCE_END as SENTENCE_END
from voxpipe.transports.realtime_server.brains import Voice, speak
from voxpipe.transports.webrtc.app import RunningServe, ServeConfig, running_serve
from voxpipe.webrtc.call_tokens import CallTokens
from voxpipe.webrtc.playout import RTP_MODULUS

Spoken = tuple[int, int]  # a spoken part's start and end in a microphone file, ms
QUESTIONS = ["What time do you open on Saturday?", "Do you take credit cards?"]
REPLIES = ["We open at nine on Saturday morning.", "Yes, we take cards and cash."]
ARTIFACTS = ("call.wav", "transcript.json", "timeline.jsonl", "report.json", "report.html")
LEAD_MS = 1500  # Chromium starts the fake-mic file at getUserMedia, before media flows
GAP_MS = 3000  # silence between takes of a line in a microphone file
TAKES = 8  # takes of a line said once: a wait of up to 8 * (3 s + the line) for the answer
# Takes of a first line: said once the call is connected, which on a loaded machine can be more
# than the lead after Chromium starts the file.
FIRST_TAKES = 3
LIVENESS_MS = 5000  # ServeConfig.silent_ms: a browser not heard from this long is gone
BOT_CAPTIONS = "window.voxpipe.captions.filter((c) => c.role === 'bot' && c.final)"
# Reply number N has played out on the page: the agent was heard after its bot_started_speaking
# (the audio lags the data channel) and not for the last 1.2 s (longer than a reply's pauses).
PLAYED_OUT = """((v, n) => {
  const started = v.events.filter((e) => e.name === "bot_started_speaking");
  const r = v.recording;
  return started.length >= n && r !== null && r.soundAt > started[n - 1].at
    && r.samples - r.soundUntil > 1.2 * r.rate;
})(window.voxpipe, %d)"""
# The recording's sample count soon after reply number N's first sound reached the page.
REPLY_BEGAN = """((v, n) => {
  const started = v.events.filter((e) => e.name === "bot_started_speaking");
  const r = v.recording;
  return started.length >= n && r !== null && r.soundAt !== null && r.soundAt > started[n - 1].at
    ? r.samples : 0;
})(window.voxpipe, %d)"""
# Mute or unmute the page's microphone at a moment of its file (ms since getUserMedia).
MIC_AT = """((fileMs, muted) => new Promise((done) => {
  const v = window.voxpipe;
  const wait = v.times.micReady + fileMs - performance.now();
  setTimeout(() => { v.setMicMuted(muted); done(); }, wait);
}))"""


class ListeningScript(ScriptedBrain):
    """The script's replies; the caller heard by Whisper (for captions and transcripts)."""

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        stt = await shared_stt()
        return await asyncio.to_thread(stt.transcribe, pcm16, sample_rate)


class SpokenAhead:
    """The local voice with the script's sentences spoken before the call, as a provider streams
    its reply faster than real time. Piper on a loaded 2-core machine does not: one long sentence
    took over 8 s, which the call takes for a dead connection, and short ones left holes in the
    reply."""

    def __init__(self, voice: Voice, replies: Sequence[str]) -> None:
        self.sample_rate = voice.sample_rate
        sentences = {s for reply in replies for s in SENTENCE_END.split(reply)}
        self._said = {s: b"".join(voice.synthesize(s)) for s in sentences}

    @classmethod
    async def speaking(cls, replies: Sequence[str]) -> SpokenAhead:
        return await asyncio.to_thread(cls, await shared_tts(), replies)

    def synthesize(self, text: str) -> Iterator[bytes]:
        yield self._said[text]


@asynccontextmanager
async def serving(
    tmp_path: Path,
    replies: Sequence[str] = REPLIES,
    *,
    listening: bool = True,
    voice: SpokenAhead | None = None,
    pace: float = 2.0,
    **config: Any,
) -> AsyncIterator[RunningServe]:
    """``voxpipe serve`` on the embedded default, recording every call under ``tmp_path``; the
    brain speaks ``replies`` in a real voice and, ``listening``, transcribes the caller."""
    brain_type = ListeningScript if listening else ScriptedBrain
    if listening:
        # Whisper loaded before the call, as a serving agent has it: loaded by the first turn,
        # at a load average of 11, the first question went unanswered for a minute.
        await shared_stt()
    voice = voice or await SpokenAhead.speaking(replies)
    brain = brain_type(list(replies), voice=voice, pace=pace)
    async with embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key):
        spec = LiveCallSpec(server_url=url, api_key=key, record_dir=tmp_path / "calls")
        async with running_serve(ServeConfig(call=spec, **config)) as serve:
            yield serve


async def until(predicate: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - the server's state
            await asyncio.sleep(0.05)


async def connected_call(
    browser: Browser, url: str, query: str = "", *, muted: bool = False
) -> str:
    """Open the page and call, recording what it hears (``muted``: the microphone off from the
    start); the call id once connected."""
    if muted:
        await browser.navigate(f"{url}/?record=1{query}")
        await browser.evaluate("window.voxpipe.setMicMuted(true); window.voxpipe.start()")
    else:
        await browser.navigate(f"{url}/?autostart=1&record=1{query}")
    await browser.wait_for("window.voxpipe.state === 'connected'", 20)
    call_id: str = await browser.wait_for("window.voxpipe.callId")
    return call_id


def microphone(
    make_speech: Any, path: Path, first: str | None, line: str | None, takes: int = TAKES
) -> tuple[list[Spoken], list[Spoken]]:
    """A microphone file: after the lead, takes of ``first`` then ``takes`` of ``line`` between
    gaps, for :func:`say_once`. The (start, end) ms in the file of each take of each."""
    firsts = [] if first is None else [first] * FIRST_TAKES
    parts: list[str | int] = [LEAD_MS]
    lines = [] if line is None else [line] * takes
    for said in [*firsts, *lines]:
        parts += [said, GAP_MS]
    spans: list[Spoken] = compose(make_speech, parts, path)
    return spans[: len(firsts)], spans[len(firsts) :]


async def say_once(browser: Browser, takes: Sequence[Spoken]) -> None:
    """Unmute the page's microphone in the gap before the next take of a line, mute it in the
    gap after: the caller says the line once, now."""
    margin = GAP_MS // 2  # the file's clock and the page's agree within this
    now = await browser.evaluate("performance.now() - window.voxpipe.times.micReady")
    take = next((t for t in takes if t[0] - margin > now + 300), None)
    assert take is not None, f"the microphone file has no take left {now:.0f} ms in"
    await browser.evaluate(f"{MIC_AT}({take[0] - margin}, false)")
    await browser.evaluate(f"{MIC_AT}({take[1] + margin}, true)")


async def on_page(browser: Browser, expression: str, timeout_s: float, what: str) -> Any:
    """Wait for ``expression`` to be truthy on the page; its value. Fails saying ``what`` did not
    happen, with the page's state."""
    try:
        return await browser.wait_for(expression, timeout_s)
    except BrowserError as exc:
        page = await browser.evaluate("window.voxpipe")
        keys = ("state", "captions", "events", "errors", "recording", "lastPlayout", "micMuted")
        seen = {key: page[key] for key in keys}
        raise AssertionError(f"{what} within {timeout_s} s: {seen}") from exc


async def replies_heard(browser: Browser, count: int, timeout_s: float) -> None:
    """Wait for ``count`` replies to be told finished and then played out on the page (its
    recording quiet for longer than a reply's pauses: a loaded page plays seconds behind)."""
    what = f"{count} replies were not heard"
    await on_page(browser, f"{BOT_CAPTIONS}.length >= {count}", timeout_s, what)
    await on_page(browser, PLAYED_OUT % count, timeout_s, what)


async def reply_playing(browser: Browser, n: int, heard_ms: int) -> None:
    """Wait until the page has played ``heard_ms`` of reply number ``n`` (by its recording: the
    audio lags the data channel's ``bot_started_speaking``, by seconds on a loaded machine)."""
    what = f"reply {n} did not play for {heard_ms} ms"
    began = await on_page(browser, REPLY_BEGAN % n, 60, what)  # samples near its first sound
    rate = await browser.evaluate("window.voxpipe.recording.rate")
    until_sample = began + heard_ms * rate // 1000
    await on_page(browser, f"window.voxpipe.recording.soundUntil > {until_sample}", 30, what)


async def page_recording(browser: Browser) -> tuple[np.ndarray, int]:
    wav = base64.b64decode(await browser.evaluate("window.voxpipe.recordedWav()"))
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, rate


async def assert_page_played(browser: Browser, voice: SpokenAhead, replies: Sequence[str]) -> None:
    """The page played the replies: its recording is loud for at least 70% as long as they are.

    Where Whisper cannot judge (two Chromiums, or a rejoin, on a loaded 2-core machine: holes
    in the page's audio had Whisper hear "some cash" for "Yes, we take cards and cash.").
    """
    recorded, rate = await page_recording(browser)
    played = loud_ms(soxr.resample(recorded, rate, 24_000), 24_000)
    spoken = [np.frombuffer(await speak(voice, r), "<i2") / 32768 for r in replies]
    expected = sum(loud_ms(audio, 24_000) for audio in spoken)
    assert played > 0.7 * expected, (played, expected)


def timeline(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "timeline.jsonl").read_text().splitlines()]


def assert_recorded(
    out: Path, end: CallEnd, questions: Sequence[str], *, listening: bool = True
) -> dict[str, Any]:
    """The call's ``--record`` artifacts; its transcript (the caller's words in it when the
    brain was ``listening``)."""
    for name in ARTIFACTS:
        assert (out / name).exists(), name
    audio, rate = sf.read(str(out / "call.wav"))
    assert audio.shape[1] == 2 and rate == 24_000
    assert np.abs(audio[:, 0]).max() > 0.05 and np.abs(audio[:, 1]).max() > 0.05  # both spoke
    events = timeline(out)
    assert events[-1]["type"] == "call_ended" and events[-1]["reason"] == end.value
    transcript: dict[str, Any] = json.loads((out / "transcript.json").read_text())
    assert len(transcript["turns"]) == len(questions), transcript
    for turn, question in zip(transcript["turns"], questions, strict=True):
        if listening:
            assert_heard(question, turn["heard"])
    assert json.loads((out / "report.json").read_text())["turns"]
    return transcript


class SentOnly(PlaybackLedger):
    """A ledger of what the output sent, deaf to the page's reports: the server's estimate."""

    def position_confirmed(self, key: str, played_ms: float, now_ms: float) -> None:
        return

    def reports_cut_positions(self, within_ms: float) -> None:
        return

    def cut_position(self, key: str, played_ms: float, now_ms: float) -> None:
        return


def heard_until(recorded: np.ndarray, rate: int, reply: np.ndarray) -> tuple[float, float]:
    """Where the page stopped playing a cut reply: between the end of the last of it heard and
    the start of the next sound it did not play (ms into the reply; the two meet mid-word and
    lie apart when the cut fell in a pause, where silence played and silence cut sound alike).

    ``recorded`` is the page's recording and ``reply`` the reply as the server spoke it, both at
    ``rate``; the reply is found in the recording by cross-correlation, and is heard up to the
    first second of silence (the page muted it; a next reply comes seconds later).
    """
    size = 1 << int(np.ceil(np.log2(recorded.size + reply.size)))
    spectrum = np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(reply, size))
    lag = int(np.argmax(np.fft.irfft(spectrum, size)[: recorded.size]))
    block = rate // 100  # 10 ms
    count = min(reply.size, recorded.size - lag) // block
    played = recorded[lag : lag + count * block].reshape(count, block)
    spoken = reply[: count * block].reshape(count, block)
    played_rms = np.sqrt((played**2).mean(axis=1))
    spoken_rms = np.sqrt((spoken**2).mean(axis=1))
    both = (played_rms > 0.01) & (spoken_rms > 0.01)
    gain = float(np.median(played_rms[both] / spoken_rms[both]))  # Opus and the page's level
    loud_played = played_rms > 0.01
    loud_spoken = spoken_rms * gain > 0.01
    last = 0
    for index in np.flatnonzero(loud_played):
        if index - last > 100:
            break  # a second of silence: the page muted the reply before this
        last = int(index)
    following = np.flatnonzero(loud_spoken[last + 1 :])
    next_sound = last + 1 + (int(following[0]) if following.size else count - last - 1)
    return (last + 1) * 10.0, next_sound * 10.0


def loud_ms(audio: np.ndarray, rate: int) -> float:
    """How long ``audio`` is louder than -40 dBFS, in 10 ms blocks."""
    block = rate // 100
    blocks = audio[: audio.size // block * block].reshape(-1, block)
    return float((np.sqrt((blocks**2).mean(axis=1)) > 0.01).sum() * 10)


def off_by(position_ms: float, heard: tuple[float, float]) -> float:
    """How far ``position_ms`` lies outside the ``heard`` interval (0 inside it)."""
    return max(heard[0] - position_ms, position_ms - heard[1], 0.0)


def silence(path: Path, seconds: float = 30) -> Path:
    sf.write(str(path), np.zeros(int(16_000 * seconds)), 16_000, subtype="PCM_16")
    return path


@pytest.mark.timeout(180)
@in_loopback_netns
async def test_a_two_question_call_from_the_page_is_heard_answered_and_recorded(
    make_speech: Any, tmp_path: Path
) -> None:
    mic = tmp_path / "mic.wav"
    firsts, seconds = microphone(make_speech, mic, QUESTIONS[0], QUESTIONS[1])
    async with serving(tmp_path) as serve, launch_browser(mic) as browser:
        call_id = await connected_call(browser, serve.url, muted=True)
        assert list(serve.app.calls) == [call_id]
        await say_once(browser, firsts)
        await replies_heard(browser, 1, 60)
        await say_once(browser, seconds)  # the caller heard the answer, and asks again
        await replies_heard(browser, 2, 60)
        page = await browser.evaluate("window.voxpipe")
        shown = await browser.evaluate("document.getElementById('captions').innerText")
        await browser.evaluate("window.voxpipe.hangup()")
        await until(lambda: not serve.app.calls, 10)
        assert serve.app.ended == [(call_id, CallEnd.HUNG_UP)]
        state = await browser.evaluate("window.voxpipe.state")
    # The page showed both sides of both turns, and ended as the caller asked.
    finals = {role: [c["text"] for c in page["captions"] if c["role"] == role and c["final"]]
              for role in ("caller", "bot")}  # fmt: skip
    assert finals["bot"] == REPLIES
    assert len(finals["caller"]) == 2
    for question, caption in zip(QUESTIONS, finals["caller"], strict=True):
        assert_heard(question, caption)
    assert all(f"Agent:{reply}" in shown for reply in REPLIES)
    started = [e for e in page["events"] if e["name"] == "bot_started_speaking"]
    assert len(started) == 2 and page["remoteMuted"] is False
    assert page["errors"] == [] and page["counters"]["ignored"] == 0
    assert state == "ended"
    transcript = assert_recorded(tmp_path / "calls" / call_id, CallEnd.HUNG_UP, QUESTIONS)
    assert [(t["replied"], t["interrupted"]) for t in transcript["turns"]] == [
        (reply, False) for reply in REPLIES
    ]


@pytest.mark.timeout(180)
@in_loopback_netns
async def test_a_barge_in_from_the_page_is_cut_where_the_page_stopped_playing(
    make_speech: Any, tmp_path: Path
) -> None:
    mic = tmp_path / "mic.wav"
    firsts, barge_ins = microphone(make_speech, mic, QUESTIONS[0], "Sorry, one more thing.")
    replies = [LONG_REPLY, "Sure."]

    # ?dsp=0: the fake microphone holds no echo to cancel, and Chromium's echo canceller would
    # duck the caller while the agent plays, which is the moment of a barge-in.
    voice = await SpokenAhead.speaking(replies)
    async with (
        serving(tmp_path, replies, listening=False, voice=voice, pace=1.2) as serve,
        launch_browser(mic) as browser,
    ):
        call_id = await connected_call(browser, serve.url, "&dsp=0", muted=True)
        live = serve.app.calls[call_id].call
        sent = SentOnly()  # what the server would say without the page's reports
        live.transport.output().report_playback_to(sent)
        await say_once(browser, firsts)
        # The caller has heard a second of the (13 s) answer, and talks over it while the server
        # still streams it (at 1.2 times real time).
        await reply_playing(browser, 1, 1000)
        await say_once(browser, barge_ins)
        await browser.wait_for("window.voxpipe.events.some((e) => e.name === 'interrupted')", 30)
        events: list[Any] = live.graph.brain.events  # type: ignore[attr-defined]
        await until(lambda: any(isinstance(e, ItemTruncated) for e in events), 10)
        cut = next(e for e in events if isinstance(e, ItemTruncated))
        sent_ms = sent.played_ms(cut.item_id, live.transport.now_ms())  # frozen at the cut
        # pipecat's output, writing the chunk it held when the cut came, says the bot started
        # speaking again (seen once in five runs: it unmuted the page, which played 1.4 s more
        # of the cut reply from its buffers). The server tells the page nothing of it; a start
        # for the cut reply that reaches the page all the same leaves it muted.
        await live.transport.output().push_frame(BotStartedSpeakingFrame())
        page_channel = live.transport.connection
        late = {"type": "event", "name": "bot_started_speaking", "item_id": cut.item_id}
        page_channel.send_app_message(late)
        page_channel.send_app_message({"type": "event", "name": "after_the_late_start"})
        await browser.wait_for(
            "window.voxpipe.events.some((e) => e.name === 'after_the_late_start')", 10
        )
        await replies_heard(browser, 2, 60)  # "Sure.", after the cut reply
        recorded, rate = await page_recording(browser)
        page = await browser.evaluate("window.voxpipe")
        playout = live.transport.playout
        await browser.evaluate("window.voxpipe.hangup()")
        await until(lambda: not serve.app.calls, 10)
    # Where the page said it had stopped playing (its answer to the server's playout_request,
    # sent as it muted the reply), worked out here from the server's RTP origin and the reply's
    # place in the stream.
    answer = page["requestedPlayouts"][0]
    assert playout is not None, "the sender's RTP origin was not learned"
    stream_ms = ((answer["rtp"] - playout.origin_rtp) % RTP_MODULUS) / 48
    stream_ms += max(answer["now"] - answer["ssrc_ts"], 0) - answer["delay_ms"]
    located = playout.locate(stream_ms)
    assert located is not None and located[0] == cut.item_id
    page_ms = located[1]
    # What the page recorded of the reply: printed, not judged. WebAudio gets the track through
    # a buffer of its own, which under load falls 0-1.2 s behind the element's playout.
    sf.write(str(tmp_path / "page.wav"), recorded, rate, subtype="PCM_16")
    said = [await speak(voice, sentence) for sentence in SENTENCE_END.split(LONG_REPLY)]
    spoken = np.frombuffer(b"".join(said), "<i2").astype(np.float32) / 32768  # as the brain said
    heard = heard_until(soxr.resample(recorded, rate, 24_000), 24_000, spoken)
    print(
        f"\nthe page stopped playing the reply {page_ms:.0f} ms in (its recording"
        f" {heard[0]:.0f}-{heard[1]:.0f} ms); truncated at {cut.audio_end_ms} ms"
        f" ({cut.audio_end_ms - page_ms:+.0f}); the server's own estimate {sent_ms:.0f} ms"
        f" ({sent_ms - page_ms:+.0f}); load {os.getloadavg()[0]:.1f}"
    )
    assert 1000 < cut.audio_end_ms < cut.received_ms  # cut mid-answer
    assert abs(cut.audio_end_ms - page_ms) <= 60
    # The page muted the cut reply and played the next one; the server cancelled the first.
    names = [e["name"] for e in page["events"]]
    assert names.count("bot_started_speaking") >= 2
    assert page["errors"] == []
    # Muted at the cut; unmuted only for the next reply: the late start sent straight to the
    # page was ignored there, and the server sent none.
    mutes = [(m["muted"], m["item"]) for m in page["mutes"]]
    assert all(item not in (cut.item_id, None) for muted, item in mutes if not muted), mutes
    assert mutes[0] == (True, cut.item_id) and page["counters"]["cutStarts"] == 1
    # Told once (the server's VAD and the caller's both stop the bot), for the cut reply.
    assert [e["item"] for e in page["events"] if e["name"] == "interrupted"] == [cut.item_id]
    assert page["counters"]["playoutRequests"] == 1
    out = tmp_path / "calls" / call_id
    kinds = [e["type"] for e in timeline(out)]
    assert kinds.count("response_cancelled") == 1 and kinds.count("item_truncated") == 1
    truncated = next(e for e in timeline(out) if e["type"] == "item_truncated")
    assert truncated["audio_end_ms"] == cut.audio_end_ms
    transcript = assert_recorded(out, CallEnd.HUNG_UP, [QUESTIONS[0], ""], listening=False)
    turns = [(t["replied"], t["interrupted"]) for t in transcript["turns"]]
    assert turns[0][1] is True and turns[1] == ("Sure.", False)


@pytest.mark.timeout(180)
@in_loopback_netns
async def test_a_network_switch_on_the_page_rejoins_the_same_call_with_its_context(
    make_speech: Any, tmp_path: Path
) -> None:
    mic = tmp_path / "mic.wav"
    firsts, seconds = microphone(make_speech, mic, QUESTIONS[0], QUESTIONS[1])
    voice = await SpokenAhead.speaking(REPLIES)
    async with (
        serving(tmp_path, listening=False, voice=voice) as serve,
        launch_browser(mic) as browser,
    ):
        call_id = await connected_call(browser, serve.url, muted=True)
        live = serve.app.calls[call_id].call
        await say_once(browser, firsts)
        await replies_heard(browser, 1, 60)
        before = await browser.evaluate("window.voxpipe")
        # Wi-Fi to 4G: the page drops its peer connection and offers a new one with its resume
        # token, keeping the microphone.
        await browser.evaluate("window.voxpipe.rejoin()")
        await browser.wait_for("window.voxpipe.state === 'connected'", 20)
        after = await browser.evaluate("window.voxpipe")
        assert (after["resumed"], after["callId"]) == (True, call_id)
        assert after["pcId"] != before["pcId"] and list(serve.app.calls) == [call_id]
        await say_once(browser, seconds)  # the caller asks the next question on the new network
        await replies_heard(browser, 2, 60)
        said = json.dumps(live.graph.context.get_messages())
        page = await browser.evaluate("window.voxpipe")
        await browser.evaluate("window.voxpipe.hangup()")
        await until(lambda: not serve.app.calls, 10)
    assert serve.app.ended == [(call_id, CallEnd.HUNG_UP)]
    # The embedded server's session went on: a new one would have answered with the first reply.
    assert REPLIES[0] in said and REPLIES[1] in said
    assert [c["text"] for c in page["captions"] if c["role"] == "bot"] == REPLIES
    assert page["counters"]["rejoins"] == 1 and page["errors"] == []
    out = tmp_path / "calls" / call_id
    kinds = [e["type"] for e in timeline(out)]
    assert kinds.count("call_started") == 1 and kinds.count("transport_rejoined") == 1
    transcript = assert_recorded(out, CallEnd.HUNG_UP, QUESTIONS, listening=False)
    assert [t["replied"] for t in transcript["turns"]] == REPLIES


@pytest.mark.timeout(180)
@in_loopback_netns
async def test_a_browser_killed_mid_answer_ends_its_call_within_seconds(
    make_speech: Any, tmp_path: Path
) -> None:
    question = "What are your opening hours at the weekend?"
    mic = tmp_path / "mic.wav"
    questions, _ = microphone(make_speech, mic, question, None)
    replies = [LONG_REPLY]
    async with serving(tmp_path, replies, listening=False) as serve, launch_browser(mic) as browser:
        call_id = await connected_call(browser, serve.url, muted=True)
        await say_once(browser, questions)
        # Mid-answer: the reply (about 13 s) has played on the page for 1.5 s.
        await browser.wait_for(
            "window.voxpipe.events.some((e) => e.name === 'bot_started_speaking'"
            " && performance.now() - e.at > 1500)",
            40,
        )
        assert not await browser.evaluate(f"{BOT_CAPTIONS}.length")  # still speaking
        # The tab dies: its whole process group, no goodbye, no close.
        os.killpg(browser.process.pid, signal.SIGKILL)
        killed_ms = time.monotonic() * 1000
        await browser.process.wait()
        await until(lambda: not serve.app.calls, 20)
        gone_ms = time.monotonic() * 1000
    assert serve.app.ended == [(call_id, CallEnd.PEER_SILENT)]
    out = tmp_path / "calls" / call_id
    ended_ms = timeline(out)[-1]["t_ms"]  # the transport's clock: time.monotonic() in ms
    # The caller was last heard just before the kill; its call ends 5 s later, give or take
    # one 250 ms look at its liveness and a loaded event loop. The loop's lag counts twice:
    # the last ping is heard when it is read, not when it was sent, and the end is noticed
    # when the loop next runs; a fresh-clone run at load 12 (the loop waiting for a CPU
    # 44% of the time) ended 6.4 s after the kill. Either way far short of the 30 s a
    # silent peer would live on ICE consent alone, which is the bug this guards against.
    print(f"ended {ended_ms - killed_ms:.0f} ms after the kill, gone {gone_ms - killed_ms:.0f} ms")
    assert LIVENESS_MS - 1000 < ended_ms - killed_ms < LIVENESS_MS + 3000
    assert_recorded(out, CallEnd.PEER_SILENT, [question], listening=False)


@pytest.mark.timeout(180)
@in_loopback_netns
async def test_two_browsers_at_once_are_both_answered_and_both_hang_up(
    make_speech: Any, tmp_path: Path
) -> None:
    # Both calls are live at once; the second caller asks once the first has its answer. Two
    # replies streamed at the same moment, with two Chromiums, on 2 cores at a load average of
    # 5-11, came out of the server with 30-180 ms holes (a 2.3 s reply spread over 5 s) and
    # were misheard (at 10-13 even one reply could): how many calls one process holds in real
    # time is the benchmark's to say.
    mics = [tmp_path / "mic-0.wav", tmp_path / "mic-1.wav"]
    firsts, _ = microphone(make_speech, mics[0], QUESTIONS[0], None)
    # The second page's file plays from its start while the first call's turn runs (up to
    # a minute on a loaded machine): twice the takes. With 8, at load ~20 the file ran out
    # before the second caller's turn (fc16, fc20).
    _, takes = microphone(make_speech, mics[1], None, QUESTIONS[1], takes=2 * TAKES)
    voice = await SpokenAhead.speaking(REPLIES)
    async with (
        serving(tmp_path, listening=False, voice=voice) as serve,
        AsyncExitStack() as stack,
    ):
        browsers = [await stack.enter_async_context(launch_browser(mic)) for mic in mics]
        call_ids = await asyncio.gather(
            connected_call(browsers[0], serve.url, muted=True),
            connected_call(browsers[1], serve.url, muted=True),
        )
        assert sorted(serve.app.calls) == sorted(call_ids) and len(set(call_ids)) == 2
        await say_once(browsers[0], firsts)
        await replies_heard(browsers[0], 1, 60)
        await say_once(browsers[1], takes)
        await replies_heard(browsers[1], 1, 60)
        for browser in browsers:  # each call's first turn: the script's first reply
            await assert_page_played(browser, voice, REPLIES[:1])
        for browser, call_id in zip(browsers, call_ids, strict=True):
            await browser.evaluate("window.voxpipe.hangup()")
            await until(lambda: call_id not in serve.app.calls, 10)  # noqa: B023 - awaited here
            assert await browser.evaluate("window.voxpipe.state") == "ended"
        ended = list(serve.app.ended)
    assert ended == [(call_id, CallEnd.HUNG_UP) for call_id in call_ids]
    for call_id, question in zip(call_ids, QUESTIONS, strict=True):
        out = tmp_path / "calls" / call_id
        transcript = assert_recorded(out, CallEnd.HUNG_UP, [question], listening=False)
        assert transcript["turns"][0]["replied"] == REPLIES[0]


@pytest.mark.timeout(180)
@in_loopback_netns
async def test_a_call_token_admits_one_page_once_and_refusals_are_shown(tmp_path: Path) -> None:
    tokens = CallTokens(b"s" * 32, ttl_s=60)
    mic = silence(tmp_path / "silence.wav")
    async with (
        serving(tmp_path, listening=False, call_tokens=tokens) as serve,
        launch_browser(mic) as first,
        launch_browser(mic) as second,
    ):
        # No token: the page shows the refusal, and no call is left behind.
        await first.navigate(f"{serve.url}/?autostart=1")
        await first.wait_for("window.voxpipe.state === 'failed'", 20)
        refused = await first.evaluate("window.voxpipe.refused")
        note = await first.evaluate("document.getElementById('note').textContent")
        assert (refused["status"], refused["code"]) == (401, "token_required")
        assert note == f"the server refused the call (401): {refused['message']}"
        assert "call token" in note
        assert not serve.app.calls and not serve.app.ended

        token = tokens.mint(time.time())
        call_id = await connected_call(first, serve.url, f"&token={token}")
        assert list(serve.app.calls) == [call_id]

        # The same token in another page: refused as reused; the first call goes on.
        await second.navigate(f"{serve.url}/?autostart=1&token={token}")
        await second.wait_for("window.voxpipe.state === 'failed'", 20)
        refused = await second.evaluate("window.voxpipe.refused")
        assert (refused["status"], refused["code"]) == (401, "token_reused")
        note = await second.evaluate("document.getElementById('note').textContent")
        assert "already used" in note
        assert list(serve.app.calls) == [call_id]

        # A token minted two minutes ago (valid for one): refused as expired.
        stale = tokens.mint(time.time() - 120)
        await second.navigate(f"{serve.url}/?autostart=1&token={stale}")
        await second.wait_for("window.voxpipe.state === 'failed'", 20)
        refused = await second.evaluate("window.voxpipe.refused")
        assert (refused["status"], refused["code"]) == (401, "token_expired")
        note = await second.evaluate("document.getElementById('note').textContent")
        assert "expired" in note
        assert list(serve.app.calls) == [call_id]
        assert await first.evaluate("window.voxpipe.state") == "connected"

        await first.evaluate("window.voxpipe.hangup()")
        await until(lambda: not serve.app.calls, 10)
    assert serve.app.ended == [(call_id, CallEnd.HUNG_UP)]

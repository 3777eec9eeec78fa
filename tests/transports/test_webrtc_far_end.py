"""The far end's playout position: a WebRTC barge-in is truncated where the caller stopped hearing.

An aiortc caller plays every frame as it arrives and reports, as the page
does, the RTP timestamp it is playing. The server learns its sender's RTP
origin (aiortc keeps it private; aiortc is pinned, and this test fails if the
hook stops working), maps the reports to positions in each reply, and the
ledger takes them as confirmed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from realtime_calls import LONG_REPLY, compose
from webrtc_peer import calling

from voxpipe.call.events import ItemTruncated
from voxpipe.pipelines.live_call import LiveCallSpec
from voxpipe.pipelines.simulated_call import Mode, embedded_realtime
from voxpipe.transports.realtime_server import ScriptedBrain
from voxpipe.transports.webrtc.app import ServeConfig, running_serve
from voxpipe.transports.webrtc.transport import WebRTCCallTransport
from voxpipe.webrtc.playout import RTP_MODULUS


async def until(predicate: Any, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - the call's state
            await asyncio.sleep(0.05)


async def test_a_barge_in_is_truncated_where_the_far_end_had_played(
    make_speech: Any, tmp_path: Path
) -> None:
    recording = tmp_path / "caller.wav"
    compose(
        make_speech,
        [1000, "What time do you open on Saturday?", 3500, "Sorry, one more thing.", 3000],
        recording,
    )
    brain = ScriptedBrain([LONG_REPLY, "Sure."], pace=2.0)
    async with (
        embedded_realtime(Mode.REALTIME, None, None, brain) as (url, key),
        running_serve(ServeConfig(call=LiveCallSpec(server_url=url, api_key=key))) as serve,
        calling(serve.url, recording, report_playout=True) as caller,
    ):
        call_id = caller.answer["call_id"]
        live = serve.app.calls[call_id].call
        transport = live.transport
        assert isinstance(transport, WebRTCCallTransport)
        events: list[Any] = live.graph.brain.events  # type: ignore[attr-defined]
        await until(lambda: any(isinstance(e, ItemTruncated) for e in events))
        await until(lambda: bool(caller.interrupted_rtp), 5)
        playout = transport.playout
        assert playout is not None, "the sender's RTP origin was not learned"
        cut = next(e for e in events if isinstance(e, ItemTruncated))
        stopped_rtp = caller.interrupted_rtp[0]
        first_rtp = caller.heard.first_rtp

    # The first frame the caller got sits at the start of the stream the server counts.
    assert first_rtp is not None
    assert (first_rtp - playout.origin_rtp) % RTP_MODULUS < 48 * 200
    # Where the far end was playing when it was told of the interruption, in that reply.
    stream_ms = ((stopped_rtp - playout.origin_rtp) % RTP_MODULUS) / 48
    located = playout.locate(stream_ms)
    assert located is not None and located[0] == cut.item_id
    heard_ms = located[1]
    print(f"\nfar end heard {heard_ms:.0f} ms of {cut.item_id}, truncated at {cut.audio_end_ms}")
    assert 300 < cut.audio_end_ms < cut.received_ms  # cut mid-answer
    assert abs(heard_ms - cut.audio_end_ms) <= 60
    assert playout.ignored == {reason: 0 for reason in playout.ignored}  # every report used

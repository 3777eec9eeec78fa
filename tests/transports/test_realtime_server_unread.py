"""A client that stops reading meets the outbox bound: 50,000 queued events (issue 19).

The stall limit is set far off (60 s), so only the bound can end the session: a
brain streaming as fast as it can (1 ms audio deltas) to a client that reads
nothing fills the socket's buffers, then the outbox. At 50,000 queued events the
session drops what waits, stops its brain and sends a 1008 close with its
reason; the client, reading again, gets every event already on the wire and
then that close. Meanwhile another session on the same server is answered.
Real server, aiohttp clients on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from loguru import logger
from test_realtime_server_support import API_KEY, raw_client

from voxpipe.realtime_server.effects import AudioProduced, BrainOutput, BrainRequest, TextProduced
from voxpipe.realtime_server.session_config import Modality
from voxpipe.transports.realtime_server import ServerConfig, running_realtime_server
from voxpipe.transports.realtime_server.driver import MAX_OUTBOX_EVENTS

MS_OF_AUDIO = bytes(48)  # 1 ms of 24 kHz PCM16: a small event, many of them


class FloodBrain:
    """Audio for ever to an audio response; a short text answer to a text one."""

    def __init__(self) -> None:
        self.flooded = 0

    async def transcribe(self, pcm16: bytes, sample_rate: int) -> str | None:
        return None

    async def respond(self, request: BrainRequest) -> AsyncIterator[BrainOutput]:
        if request.modality is Modality.TEXT:
            yield TextProduced("Still here.")
            return
        while True:
            for _ in range(200):
                self.flooded += 1
                yield AudioProduced(MS_OF_AUDIO)
            await asyncio.sleep(0)  # a fast brain, not one that holds the loop


async def test_a_client_that_reads_nothing_is_closed_at_the_outbox_bound() -> None:
    brain = FloodBrain()
    warnings: list[str] = []
    overflowed = asyncio.Event()

    def sink(message: object) -> None:
        warnings.append(str(message))
        if f"{MAX_OUTBOX_EVENTS} events wait for the client" in str(message):
            overflowed.set()

    handle = logger.add(sink, level="WARNING")
    config = ServerConfig(api_key=API_KEY, write_stall_s=60.0)
    try:
        async with (
            running_realtime_server(config=config, brain=brain) as srv,
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"{srv.realtime_url}?model=gpt-realtime",
                headers={"Authorization": f"Bearer {API_KEY}"},
                max_msg_size=0,
            ) as ws,
        ):
            created = await ws.receive_json(timeout=10)
            assert created["type"] == "session.created"
            await ws.send_json({"type": "response.create"})  # then read nothing
            async with raw_client(srv) as other:
                text = {"output_modalities": ["text"]}
                while not overflowed.is_set():  # the other session is answered throughout
                    await other.send({"type": "response.create", "response": text})
                    done = await other.until("response.done", wait_s=30)
                    assert done["response"]["status"] == "completed"
                    await asyncio.wait({asyncio.ensure_future(overflowed.wait())}, timeout=0.5)
                flooded_at_close = brain.flooded
                # Reading again: everything on the wire, then the close and its reason.
                deltas = 0
                async with asyncio.timeout(45):
                    while (message := await ws.receive()).type is aiohttp.WSMsgType.TEXT:
                        deltas += '"response.output_audio.delta"' in message.data
                assert message.type is aiohttp.WSMsgType.CLOSE
                assert (message.data, message.extra) == (1008, "client is not reading")
                # Still healthy for the other session, and the flood stopped at the bound.
                await other.send({"type": "response.create", "response": text})
                assert (await other.until("response.done", wait_s=30))["response"]["status"] == (
                    "completed"
                )
            async with asyncio.timeout(10):
                while srv.server.live_sessions:  # noqa: ASYNC110 - the server's own record
                    await asyncio.sleep(0.05)
    finally:
        logger.remove(handle)
    # Events reached the wire before the bound (the socket's buffers); none after it.
    print(f"{flooded_at_close} deltas made, {deltas} reached the client before the close")
    assert 0 < deltas <= flooded_at_close - MAX_OUTBOX_EVENTS + 10  # the queued ones dropped
    assert brain.flooded - flooded_at_close <= 200  # the brain was stopped at once
    assert sum("events wait for the client; closing" in w for w in warnings) == 1

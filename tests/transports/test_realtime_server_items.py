"""The embedded server's conversation over a long call, through a real socket (issue 19).

Every item once kept its audio for the session's life; now the session holds
its audio budget and no more, old items keep their length and words, and a
``conversation.item.truncate`` is what a later retrieve and the next
response's brain read. Real server, raw aiohttp client on loopback.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from test_realtime_server_support import API_KEY, noise, raw_client

from voxpipe.realtime_server.conversation import ConversationLimits
from voxpipe.realtime_server.effects import BrainOutput, BrainRequest
from voxpipe.transports.realtime_server import ScriptedBrain, ServerConfig, running_realtime_server

BUDGET_MS = 5_000
TURNS = 30
ANSWER = "One two three four five six seven eight."


class ListeningBrain(ScriptedBrain):
    """The scripted brain, keeping each request it was given."""

    def __init__(self) -> None:
        super().__init__([ANSWER], pace=0)
        self.requests: list[BrainRequest] = []

    async def respond(self, request: BrainRequest) -> AsyncIterator[BrainOutput]:
        self.requests.append(request)
        async for output in super().respond(request):
            yield output


async def test_a_long_call_holds_its_audio_budget_and_truncate_is_what_comes_next() -> None:
    brain = ListeningBrain()
    config = ServerConfig(
        api_key=API_KEY, conversation_limits=ConversationLimits(audio_kept_ms=BUDGET_MS)
    )
    async with (
        running_realtime_server(config=config, brain=brain) as srv,
        raw_client(srv) as client,
    ):
        await client.push_to_talk()
        (driver,) = srv.server.live_sessions
        kept: list[int] = []
        answers: list[str] = []
        users: list[str] = []
        for turn in range(TURNS):
            await client.append(noise(1_000, seed=turn))
            await client.send({"type": "input_audio_buffer.commit"})
            users.append((await client.until("input_audio_buffer.committed"))["item_id"])
            await client.send({"type": "response.create"})
            done = await client.until("response.done", wait_s=30)
            assert done["response"]["status"] == "completed"
            answers.append(done["response"]["output"][0]["id"])
            kept.append(driver.core.conversation.kept_audio_bytes())
        newest = driver.core.conversation.get(answers[-1])
        # The budget plus the newest answer, which is never touched.
        assert max(kept) <= BUDGET_MS * 48 + len(newest.audio)
        assert len(driver.core.conversation) == 2 * TURNS

        async def retrieve(item_id: str) -> dict[str, Any]:
            await client.send({"type": "conversation.item.retrieve", "item_id": item_id})
            event = await client.until("conversation.item.retrieved")
            return dict(event["item"]["content"][0])

        first = await retrieve(users[0])
        assert first.get("audio") is None  # its bytes went with the budget
        full = await retrieve(answers[-1])
        full_ms = len(base64.b64decode(full["audio"])) // 48
        assert full["transcript"].split() == ANSWER.split(" ")
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": answers[-1],
                "content_index": 0,
                "audio_end_ms": full_ms // 2,
            }
        )
        assert (await client.until("conversation.item.truncated"))["audio_end_ms"] == full_ms // 2
        cut = await retrieve(answers[-1])
        assert len(base64.b64decode(cut["audio"])) // 48 == full_ms // 2
        heard = cut["transcript"].split()
        assert 0 < len(heard) < 8 and heard == full["transcript"].split()[: len(heard)]
        await client.send({"type": "response.create"})
        await client.until("response.done", wait_s=30)
    last = brain.requests[-1].messages
    assert last[-1] == {"role": "assistant", "content": cut["transcript"]}
    assert brain.requests[-2].messages[-1]["content"] != cut["transcript"]

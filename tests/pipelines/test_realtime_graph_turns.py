"""The realtime graph's turns are the server's from the start (issue 19).

pipecat's default user-turn strategies load the smart-turn v3 model for every
call; the realtime path never uses it (the server's VAD decides turns, and
pipecat's realtime service swaps in external strategies once it runs), so each
call start held the event loop 84-100 ms of CPU loading a model for nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from pipecat.turns.user_start import ExternalUserTurnStartStrategy
from pipecat.turns.user_stop import ExternalUserTurnStopStrategy, TurnAnalyzerUserTurnStopStrategy

from voxpipe.pipelines.chained import TurnSettings
from voxpipe.pipelines.realtime import build_realtime_pipeline
from voxpipe.transports.file import FileTransport


def strategies(graph: object) -> tuple[list[object], list[object]]:
    controller = graph.user_aggregator._user_turn_controller  # type: ignore[attr-defined]
    turns = controller._user_turn_strategies
    return list(turns.start), list(turns.stop)


def quiet(tmp_path: Path) -> Path:
    path = tmp_path / "quiet.wav"
    sf.write(str(path), np.zeros(1600, dtype="<i2"), 16_000, subtype="PCM_16")
    return path


def test_with_the_servers_vad_no_smart_turn_model_is_built(tmp_path: Path) -> None:
    graph = build_realtime_pipeline(
        FileTransport(quiet(tmp_path)), server_url="ws://127.0.0.1:9/v1/realtime", api_key="k"
    )
    start, stop = strategies(graph)
    assert [type(s) for s in start] == [ExternalUserTurnStartStrategy]
    assert [type(s) for s in stop] == [ExternalUserTurnStopStrategy]  # before: smart-turn's


def test_local_turns_keep_their_own_strategies(tmp_path: Path) -> None:
    graph = build_realtime_pipeline(
        FileTransport(quiet(tmp_path)),
        server_url="ws://127.0.0.1:9/v1/realtime",
        api_key="k",
        local_turns=TurnSettings(),
    )
    _, stop = strategies(graph)
    assert stop and not any(isinstance(s, ExternalUserTurnStopStrategy) for s in stop)
    assert not any(isinstance(s, TurnAnalyzerUserTurnStopStrategy) for s in stop)

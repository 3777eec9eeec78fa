"""User audio relay: hold during a switch, replay the unfinished turn, bounded memory."""

from __future__ import annotations

from voxpipe.audio import AudioFormat
from voxpipe.call.user_audio import RelayStats, SendUserAudio, UserAudioRelay

CHUNK = bytes(20 * 48)  # 20 ms of PCM16 24 kHz


def connected_relay(max_ms: int = 30_000) -> UserAudioRelay:
    relay = UserAudioRelay(max_ms=max_ms)
    assert relay.on_connected() == []
    return relay


def test_connected_audio_goes_straight_out() -> None:
    relay = connected_relay()
    assert relay.on_audio(CHUNK) == [SendUserAudio(0, CHUNK)]
    assert relay.on_audio(CHUNK) == [SendUserAudio(1, CHUNK)]
    assert relay.last_seq == 1


def test_switch_replays_unfinished_turn_then_held_audio_in_order() -> None:
    relay = connected_relay()
    relay.on_audio(CHUNK)  # seq 0: part of a committed turn
    relay.on_committed()
    relay.on_audio(CHUNK)  # seq 1, 2: the turn in progress when the socket drops
    relay.on_audio(CHUNK)
    relay.on_disconnected()
    assert relay.on_audio(CHUNK) == []  # seq 3, 4 arrive during the switch
    assert relay.on_audio(CHUNK) == []
    replay = relay.on_connected()
    assert [c.seq for c in replay] == [1, 2, 3, 4]
    assert all(c.replayed for c in replay)
    assert relay.on_audio(CHUNK) == [SendUserAudio(5, CHUNK)]
    assert relay.stats() == RelayStats(sent_ms=160, held_ms=40, replayed_ms=80, dropped_ms=0)


def test_committed_turn_is_not_replayed() -> None:
    relay = connected_relay()
    relay.on_audio(CHUNK)
    relay.on_committed()
    relay.on_disconnected()
    assert relay.on_connected() == []


def test_long_outage_drops_oldest_and_counts_it() -> None:
    relay = connected_relay(max_ms=100)
    relay.on_disconnected()
    for _ in range(8):  # 160 ms held, 100 ms kept
        relay.on_audio(CHUNK)
    replay = relay.on_connected()
    assert [c.seq for c in replay] == [3, 4, 5, 6, 7]
    assert relay.stats().dropped_ms == 60


def test_trimming_while_connected_is_not_a_loss() -> None:
    relay = connected_relay(max_ms=40)
    for _ in range(5):  # a long turn: the session has it all, the replay window is 40 ms
        relay.on_audio(CHUNK)
    assert relay.stats().dropped_ms == 0
    relay.on_disconnected()
    assert [c.seq for c in relay.on_connected()] == [3, 4]


def test_g711_sizes() -> None:
    relay = UserAudioRelay(AudioFormat.G711_ULAW)
    relay.on_connected()
    relay.on_audio(bytes(8 * 20))
    assert relay.stats().sent_ms == 20


def test_audio_before_the_first_session_is_held() -> None:
    relay = UserAudioRelay()
    assert not relay.connected
    assert relay.on_audio(CHUNK) == []
    assert [c.seq for c in relay.on_connected()] == [0]


def test_another_brain_takes_the_uncommitted_turn_and_the_held_audio_in_order() -> None:
    relay = connected_relay()
    relay.on_audio(b"\x01" * 960)  # committed: the session's, not handed over
    relay.on_committed()
    relay.on_audio(b"\x02" * 960)  # sent, never committed: the turn under way
    relay.on_disconnected()
    relay.on_audio(b"\x03" * 960)  # held: no session took it
    assert relay.take_uncommitted() == [b"\x02" * 960, b"\x03" * 960]
    assert relay.take_uncommitted() == []  # handed over once
    assert relay.on_connected() == []  # a later session does not replay it either
    assert relay.stats().dropped_ms == 0

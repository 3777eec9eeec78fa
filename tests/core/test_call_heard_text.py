"""What the caller heard of a cut reply: every word they heard, none they did not.

The benchmark's words-lost figure (``benchmarks/failover.py``) showed the
chained brain's seed one word short in 18 of 19 switches: the heard share of
the reply's *word count* was rounded down, so a reply cut anywhere but on a
word boundary lost its last heard word. The call-level tests replay the
benchmark's two faults (the server's synthetic voice, each word's text just
before its audio) through the realtime call's core.
"""

from __future__ import annotations

from call_script import CONNECT, SERVER_TURN, audio, event_of, played, run, words

from voxpipe.call.heard_text import TextDelta, heard_text
from voxpipe.call.rollover import Role

# -- the estimate ----------------------------------------------------------------------


def test_words_with_their_own_anchors_are_heard_once_half_of_them_played() -> None:
    # "The" 0-200 ms, "capital" 200-600, "of" 600-750 (each anchored when its text came).
    deltas = [TextDelta(0, "The "), TextDelta(200, "capital "), TextDelta(600, "of ")]
    received = 750
    assert heard_text(deltas, 0, received) == ""
    assert heard_text(deltas, 100, received) == "The"
    # "capital " spans 200-600 ms: its seven letters 200-550, half of it by 375.
    assert heard_text(deltas, 370, received) == "The"
    assert heard_text(deltas, 380, received) == "The capital"
    assert heard_text(deltas, 750, received) == "The capital of"


def test_a_word_whose_text_came_without_audio_was_never_heard() -> None:
    deltas = [TextDelta(0, "The "), TextDelta(200, "capital ")]
    assert heard_text(deltas, 200, 200) == "The"  # "capital"'s text, none of its audio


def test_a_word_whose_audio_had_only_begun_to_arrive_is_not_taken_as_heard() -> None:
    # The pace so far is 50 ms a character: "capital " takes ~400 ms, 50 of it came.
    deltas = [TextDelta(0, "The "), TextDelta(200, "capital ")]
    assert heard_text(deltas, 250, 250) == "The"


def test_text_ahead_of_the_audio_is_spread_over_it_by_letters_not_by_words() -> None:
    # One anchor: the whole text came before its audio (1000 ms, 30 characters).
    text = "a b c extraordinarily done now"
    deltas = [TextDelta(0, text)]
    # "extraordinarily" is chars 6-21: 200-700 ms, its middle at 450 ms.
    assert heard_text(deltas, 440, 1000) == "a b c"
    assert heard_text(deltas, 460, 1000) == "a b c extraordinarily"
    assert heard_text(deltas, 1000, 1000) == text


def test_a_word_split_across_deltas_is_one_word() -> None:
    deltas = [TextDelta(0, "Hon"), TextDelta(150, "shu "), TextDelta(300, "is ")]
    assert heard_text(deltas, 160, 400) == "Honshu"
    assert heard_text(deltas, 100, 400) == ""


def test_nothing_said_nothing_heard() -> None:
    assert heard_text([], 500, 1000) == ""
    assert heard_text([TextDelta(0, "   ")], 500, 1000) == ""


# -- the seed of a brain switch --------------------------------------------------------

REPLY = "The capital of Japan is Tokyo, a very large city."


def _synthetic_reply(call, sent_ms: int, now: int) -> int:
    """The server's synthetic voice: 55 ms a letter + 40 ms after each word, text first."""
    sent = 0
    for word in REPLY.split():
        if sent >= sent_ms:
            break  # the fault: nothing more comes
        call.server_event(event_of(words("resp_1", "item_1", word + " ")), now)
        ms = 55 * len(word) + 40
        call.server_event(event_of(audio("resp_1", "item_1", ms)), now)
        sent += ms
    return sent


def _seeded_reply(call) -> str:
    seed = call.handover_seed
    assert seed is not None
    texts = [t.text for t in seed.verbatim if t.role is Role.ASSISTANT]
    assert len(texts) == 1
    return texts[0]


def test_a_stalled_reply_seeds_every_word_played_including_the_last() -> None:
    call = run([*CONNECT, *SERVER_TURN])
    sent = _synthetic_reply(call, 1200, 2100)  # the benchmark's Stall(after_ms=1200)
    assert sent == 1245  # "The capital of Japan is" (the pause comes after a whole word)
    # The output held back its last part-chunk: 1225 of the 1245 ms played by the switch.
    played("item_1", 1225)(call, 2100)
    call.switch_away(2100 + 1245 + 2000)
    # Before: int(5 words * 1225/1245) = 4, "The capital of Japan" (the last word lost).
    assert _seeded_reply(call) == "The capital of Japan is (interrupted)"
    assert call.reask_owed


def test_a_reply_cut_early_seeds_the_word_being_heard_once_half_of_it_played() -> None:
    call = run([*CONNECT, *SERVER_TURN])
    _synthetic_reply(call, 1200, 2100)
    # The close: the output had played 420 ms when the switch stopped it. "capital"
    # (205-630 ms, its letters 205-590) was past its middle (~397 ms): heard.
    played("item_1", 1245)(call, 2100)
    call.switch_away(2100 + 420)
    # Before: int(5 * 420/1245) = 1, "The".
    assert _seeded_reply(call) == "The capital (interrupted)"


def test_a_word_cut_in_its_first_half_is_not_seeded() -> None:
    call = run([*CONNECT, *SERVER_TURN])
    _synthetic_reply(call, 1200, 2100)
    played("item_1", 1245)(call, 2100)
    call.switch_away(2100 + 300)  # "capital" began at 205 ms: a syllable at most
    assert _seeded_reply(call) == "The (interrupted)"


def test_the_handover_preview_is_the_seed_the_switch_then_gives_and_changes_nothing() -> None:
    call = run([*CONNECT, *SERVER_TURN])
    _synthetic_reply(call, 1200, 2100)
    played("item_1", 1225)(call, 2100)
    before = list(call.record.memory.turns)
    # The stall suspected half way to its 2 s limit: 1000 of the 1225 ms played so far,
    # all of it by the switch (the output plays on until the switch stops it).
    assert call.handover_preview(3100) is not None
    assert "Japan is" not in call.handover_preview(3100)[0].verbatim[-1].text  # type: ignore[index]
    preview = call.handover_preview(3100, at_ms=4100)
    assert preview is not None
    assert list(call.record.memory.turns) == before  # nothing remembered yet
    call.switch_away(4100)  # nothing more played meanwhile: the same seed
    seed, reask = preview
    assert call.handover_seed is not None
    assert seed.verbatim == call.handover_seed.verbatim
    assert seed.instructions("Be brief.") == call.handover_seed.instructions("Be brief.")
    assert reask and call.reask_owed
    assert call.handover_preview(4200) is None  # handed over: nothing to preview

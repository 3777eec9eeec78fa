"""A simulated caller's conversation core: its prompts, its lines, its hang-up, its turn budget."""

from __future__ import annotations

from voxpipe.evals.persona import (
    END_CALL,
    PICKED_UP,
    SILENT_BOT,
    CallerTurn,
    ChatCall,
    PersonaConversation,
    clean_line,
)


def test_the_bot_speaks_as_the_user_and_the_persona_as_the_assistant() -> None:
    talk = PersonaConversation("Sam, brief.", "Saturday's hours.", max_turns=5)
    first = talk.prompt()
    assert first[0]["role"] == "system"
    assert "Sam, brief." in first[0]["content"] and "Saturday's hours." in first[0]["content"]
    assert END_CALL in first[0]["content"]
    assert first[-1] == {"role": "user", "content": PICKED_UP}  # the caller opens
    assert talk.answered("What time do you open on Saturday?") == CallerTurn(
        "What time do you open on Saturday?"
    )
    talk.bot_said("We open at nine.")
    talk.bot_said("  ")
    talk.bot_said("Until one.")
    second = talk.prompt()
    assert second[-2:] == [
        {"role": "assistant", "content": "What time do you open on Saturday?"},
        {"role": "user", "content": "We open at nine. Until one."},
    ]
    talk.answered("And Sunday?")
    assert talk.prompt()[-1] == {"role": "user", "content": SILENT_BOT}  # the bot said nothing


def test_end_call_hangs_up_with_its_claim_and_a_goodbye_may_come_with_it() -> None:
    talk = PersonaConversation("Sam", "hours", max_turns=5)
    talk.answered("When do you open?")
    call = ChatCall(END_CALL, '{"success": true, "reason": "got the hours"}')
    turn = talk.answered("Thanks, bye.", [call])
    assert turn == CallerTurn("Thanks, bye.", hung_up=True, success=True, reason="got the hours")
    assert talk.done
    bare = PersonaConversation("Sam", "hours", max_turns=5)
    assert bare.answered("", [ChatCall(END_CALL, "not json")]) == CallerTurn("", hung_up=True)


def test_the_turn_budget_ends_a_persona_that_never_hangs_up() -> None:
    talk = PersonaConversation("Sam", "hours", max_turns=2)
    talk.answered("Hello?")
    assert not talk.done
    talk.answered("Hello? Anyone?")
    assert talk.done and not any(t.hung_up for t in talk.turns)


def test_without_tools_a_goodbye_hangs_up_and_an_empty_line_leaves() -> None:
    talk = PersonaConversation("Sam", "hours", max_turns=5, end_call=False)
    assert END_CALL not in talk.instruction and "goodbye" in talk.instruction
    assert not talk.answered("What time do you open?").hung_up
    assert talk.answered("Great, thanks. Goodbye!").hung_up
    with_tools = PersonaConversation("Sam", "hours", max_turns=5)
    assert not with_tools.answered("Great, thanks. Goodbye!").hung_up  # it must call end_call
    empty = PersonaConversation("Sam", "hours", max_turns=5).answered("  ")
    assert empty.hung_up and empty.reason == "the persona LLM gave no line"


def test_a_failed_model_hangs_up_and_says_why() -> None:
    talk = PersonaConversation("Sam", "hours", max_turns=5)
    turn = talk.failed("OpenAI chat refused the key")
    assert turn.hung_up and turn.error == "OpenAI chat refused the key" and talk.done
    assert CallerTurn.from_dict(turn.as_dict()) == turn


def test_a_line_is_what_a_caller_would_say() -> None:
    assert clean_line('Caller: "Hi, *smiles* do you open (politely) on Saturday?"') == (
        "Hi, do you open on Saturday?"
    )
    assert clean_line('Sure. {"name": "end_call", "arguments": {}}') == "Sure."
    long = "Word " * 100
    assert len(clean_line(long)) <= 300

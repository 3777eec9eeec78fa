"""The one rule cutting a streamed reply into pieces of speech (graph TTS, local brain, batch)."""

from __future__ import annotations

import pytest

from voxpipe.speech_text import SENTENCES_ONLY, PieceRule, SpeechTextSplitter, split_text

DEFAULT = PieceRule()
FIVE_WORDS = PieceRule(first_words=5)

# tokens as the LLM streams them -> pieces cut while streaming, then the tail at the end
CASES = [
    pytest.param(
        ["Sure", ",", " the pharmacy", " opens at nine", ",", " and closes at six.", " Bye", "."],
        DEFAULT,
        ["Sure, the pharmacy opens at nine,", "and closes at six."],
        "Bye.",
        id="a long first clause leaves at its comma, the rest sentence by sentence",
    ),
    pytest.param(
        ["Yes", ",", " it is", " open today."],
        DEFAULT,
        [],
        "Yes, it is open today.",
        id="a short opener waits for more words",
    ),
    pytest.param(
        ["Well, sure thing, Paris is the capital. And"],
        DEFAULT,
        ["Well, sure thing, Paris is the capital."],
        "And",
        id="a first clause needs four words",
    ),
    pytest.param(
        ["Here is what you need", ":", " a card."],
        DEFAULT,
        ["Here is what you need:"],
        "a card.",
        id="a colon ends a first clause",
    ),
    pytest.param(
        ["I checked the order; it ships today. Thanks."],
        DEFAULT,
        ["I checked the order;", "it ships today."],
        "Thanks.",
        id="so does a semicolon",
    ),
    pytest.param(
        ["Sure, the pharmacy opens at nine, and closes at six, every day. We deliver, "],
        DEFAULT,
        ["Sure, the pharmacy opens at nine,", "and closes at six, every day."],
        "We deliver,",
        id="only the first piece ends at a clause",
    ),
    pytest.param(
        ["Sure, the pharmacy opens at nine, and closes at six."],
        SENTENCES_ONLY,
        [],
        "Sure, the pharmacy opens at nine, and closes at six.",
        id="sentences only",
    ),
    pytest.param(
        ["It costs", " about 1", ",", "000 euros in total."],
        DEFAULT,
        [],
        "It costs about 1,000 euros in total.",
        id="a comma inside a number is no clause",
    ),
    pytest.param(
        ["It costs $29", ".", "99 today. Thanks."],
        DEFAULT,
        ["It costs $29.99 today."],
        "Thanks.",
        id="a decimal point is no sentence end",
    ),
    pytest.param(
        ["Dr", ". Smith will see", " you at ten. Bring your card."],
        DEFAULT,
        ["Dr. Smith will see you at ten."],
        "Bring your card.",
        id="an abbreviation is no sentence end",
    ),
    pytest.param(
        ["We open at 9 a.m. tomorrow. See you."],
        DEFAULT,
        ["We open at 9 a.m. tomorrow."],
        "See you.",
        id="nor is a.m.",
    ),
    pytest.param(
        ["Really? Yes! Sure."],
        DEFAULT,
        ["Really?", "Yes!"],
        "Sure.",
        id="questions and exclamations end sentences",
    ),
    pytest.param(
        ['He said "hi." Then he left.'],
        DEFAULT,
        ['He said "hi."'],
        "Then he left.",
        id="a closing quote stays with its sentence",
    ),
    pytest.param(
        ["The capital is Paris.", " It is"],
        DEFAULT,
        ["The capital is Paris."],
        "It is",
        id="a sentence leaves once the next word starts",
    ),
    pytest.param(
        ["Paris."],
        DEFAULT,
        [],
        "Paris.",
        id="a point with nothing after it may still continue (Paris.com)",
    ),
    pytest.param(
        ["First line.\nSecond line."],
        DEFAULT,
        ["First line."],
        "Second line.",
        id="a line break is whitespace",
    ),
    pytest.param(
        ["The capital", " city of", " Canada is", " Ottawa. It", " is", " in Ontario."],
        FIVE_WORDS,
        ["The capital city of Canada", "is Ottawa."],
        "It is in Ontario.",
        id="first_words cut the first piece without punctuation",
    ),
    pytest.param(
        [" The capital city of Canada is"],
        FIVE_WORDS,
        ["The capital city of Canada"],
        "is",
        id="first_words ignore leading whitespace",
    ),
    pytest.param(
        ["The capital city of Canada"],
        FIVE_WORDS,
        [],
        "The capital city of Canada",
        id="the fifth word may still be growing (Canadian): wait for its space",
    ),
    pytest.param(
        ["The capital is Ottawa. It"],
        FIVE_WORDS,
        ["The capital is Ottawa."],
        "It",
        id="a whole sentence before the fifth word goes whole",
    ),
    pytest.param(
        ["Yes. And it is in Ontario near"],
        FIVE_WORDS,
        ["Yes."],
        "And it is in Ontario near",
        id="later pieces are sentences only",
    ),
    pytest.param([], DEFAULT, [], None, id="no text"),
    pytest.param(["", ""], DEFAULT, [], None, id="empty tokens"),
    pytest.param(["  ", "\n", " "], DEFAULT, [], None, id="whitespace only"),
]


def cut(tokens: list[str], rule: PieceRule) -> tuple[list[str], str | None]:
    splitter = SpeechTextSplitter(rule)
    pieces = [piece for token in tokens for piece in splitter.feed(token)]
    return pieces, splitter.finish()


@pytest.mark.parametrize(("tokens", "rule", "pieces", "tail"), CASES)
def test_pieces_of_a_streamed_reply(
    tokens: list[str], rule: PieceRule, pieces: list[str], tail: str | None
) -> None:
    assert cut(tokens, rule) == (pieces, tail)


@pytest.mark.parametrize(("tokens", "rule", "pieces", "tail"), CASES)
def test_pieces_do_not_depend_on_how_the_text_was_chunked(
    tokens: list[str], rule: PieceRule, pieces: list[str], tail: str | None
) -> None:
    text = "".join(tokens)
    assert cut(list(text), rule) == cut([text], rule) == (pieces, tail)


def test_each_reply_gets_its_own_early_first_piece() -> None:
    splitter = SpeechTextSplitter()
    reply = "Well, I think that, in short, yes. Bye."
    first = (splitter.feed(reply), splitter.finish())
    second = (splitter.feed(reply), splitter.finish())
    assert first == second == (["Well, I think that,", "in short, yes."], "Bye.")


def test_an_interrupted_reply_drops_its_unspoken_text() -> None:
    splitter = SpeechTextSplitter()
    assert splitter.feed("Sure, the pharmacy opens at nine, and") == [
        "Sure, the pharmacy opens at nine,"
    ]
    assert splitter.pending == "and"
    splitter.clear()
    assert splitter.pending == "" and splitter.finish() is None
    # The next reply's first piece may end early again.
    assert splitter.feed("Yes, we have that one, in stock. ") == ["Yes, we have that one,"]


def test_split_text_cuts_a_whole_reply() -> None:
    assert split_text("Sure, the pharmacy opens at nine, and closes at six. Bye.") == [
        "Sure, the pharmacy opens at nine,",
        "and closes at six.",
        "Bye.",
    ]
    assert split_text("") == []


@pytest.mark.parametrize("field", ["clause_words", "first_words"])
def test_a_rule_needs_at_least_one_word(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PieceRule(**{field: 0})

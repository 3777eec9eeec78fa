"""Scoring helpers for evaluations and benchmarks."""

from __future__ import annotations

import re

# Whisper writes what a caller says as digits in many shapes: "4 7 2 9 1 6" comes back
# "4.72916" or "472 916", "7:45" comes back "745", "1600" "1,600", "8 pm" "8 p.m." and
# "$129.50" for "129 dollars and 50 cents". Read digit by digit, they are the same words.
_DOLLARS = re.compile(r"\$(\d[\d,]*)(?:\.(\d\d))?")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_DIGIT_JOINER = re.compile(r"(?<=\d)[.,:\-/](?=\d)")
_DOTTED_LETTERS = re.compile(r"\b((?:[a-z]\.){2,})")
_TITLES = {"dr.": "doctor", "mr.": "mister", "mrs.": "missus", "st.": "street"}


def normalise(text: str) -> str:
    """Lower case, numbers spelled out, letters only: what a listener counts as the same words."""
    from num2words import num2words

    spelled = re.sub(r"\d+", lambda m: f" {num2words(int(m.group()))} ", text.lower())
    return " ".join(re.sub(r"[^a-z' ]+", " ", spelled.replace("-", " ")).split())


def digit_by_digit(text: str) -> str:
    """``text`` with every number read digit by digit, as :func:`normalise` then spells it.

    For phone-style speech (account numbers, times, addresses, amounts), where
    how Whisper groups and punctuates the digits it heard is not what is scored.
    """
    from num2words import num2words

    lowered = text.lower()
    for title, word in _TITLES.items():
        lowered = re.sub(rf"\b{re.escape(title)}", word, lowered)
    lowered = _DOLLARS.sub(
        lambda m: f"{m.group(1)} dollars" + (f" and {m.group(2)} cents" if m.group(2) else ""),
        lowered,
    )
    lowered = _ORDINAL.sub(lambda m: f" {num2words(int(m.group(1)), to='ordinal')} ", lowered)
    lowered = _DIGIT_JOINER.sub("", lowered)
    lowered = _DOTTED_LETTERS.sub(lambda m: m.group(1).replace(".", ""), lowered)
    lowered = re.sub(r"(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)", " ", lowered)  # "12b" -> "12 b"
    return " ".join(
        num2words(int(d)) if d.isdigit() else d for d in re.sub(r"(\d)", r" \1 ", lowered).split()
    )


def word_error_rate(reference: str, hypothesis: str, *, digits: bool = False) -> float:
    """WER of ``hypothesis`` against ``reference`` after :func:`normalise` (jiwer).

    With ``digits``, numbers are first read digit by digit on both sides
    (:func:`digit_by_digit`), so "472 916" and "4 7 2 9 1 6" are the same words.
    """
    import jiwer

    if digits:
        reference, hypothesis = digit_by_digit(reference), digit_by_digit(hypothesis)
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp or "<empty>"))

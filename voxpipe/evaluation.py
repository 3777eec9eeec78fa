"""Scoring helpers for evaluations and benchmarks."""

from __future__ import annotations

import re


def normalise(text: str) -> str:
    """Lower case, numbers spelled out, letters only: what a listener counts as the same words."""
    from num2words import num2words

    spelled = re.sub(r"\d+", lambda m: f" {num2words(int(m.group()))} ", text.lower())
    return " ".join(re.sub(r"[^a-z' ]+", " ", spelled.replace("-", " ")).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference`` after :func:`normalise` (jiwer)."""
    import jiwer

    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp or "<empty>"))

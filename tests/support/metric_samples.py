"""Read one sample out of Prometheus text, as `/metrics` serves it (no tests here)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, metric: str, /, **labels: str) -> float | None:
    """The value of sample ``metric`` whose labels include ``labels`` (label order is not fixed)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric and labels.items() <= s.labels.items():
                return float(s.value)
    return None

from __future__ import annotations

from datetime import timedelta

import pytest

from facmon.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("250ms", 0.25),
        (90, 90),
        ("1.5h", 5400),
    ],
)
def test_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "m5", "5 minutes", "5m x", -1, True, None, "1h-5m"])
def test_refuse(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_round_trips() -> None:
    for text in ("5m", "1h30m", "2d", "45s", "1d2h3m4s"):
        assert format_duration(parse_duration(text)) == text

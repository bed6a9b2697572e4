"""Ollama's keep_alive values."""

import math

import pytest

from llmport.errors import InvalidParameter
from llmport.manager.keep_alive import parse_keep_alive


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("250ms", 0.25),
        ("0", 0.0),
        (0, 0.0),
        (30, 30.0),
        ("10", 10.0),
        (-1, math.inf),
        ("-1", math.inf),
        ("-5m", math.inf),
    ],
)
def test_parses_durations_numbers_and_forever(value: str | int | None, seconds: float) -> None:
    assert parse_keep_alive(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5 minutes", "m", "", "5x", True])
def test_rejects_what_is_not_a_duration(value: str | bool) -> None:
    with pytest.raises(InvalidParameter) as caught:
        parse_keep_alive(value)
    assert caught.value.param == "keep_alive"

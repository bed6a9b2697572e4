"""Sizes as users write them."""

import pytest

from llmport.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("512MiB", 512 << 20), ("8G", 8 << 30), ("1.5gib", 3 << 29), ("2k", 2048)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1G", "8 GB of RAM"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(3 << 29) == "1.50 GiB"
    assert format_size(300 << 20) == "300 MiB"

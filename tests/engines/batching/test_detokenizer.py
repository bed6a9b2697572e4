"""IncrementalDetokenizer against a fake token table: UTF-8 splits, stop strings, flush."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest

from llmport.engines.batching.detokenizer import IncrementalDetokenizer


def make(
    pieces: Sequence[bytes], stop: Sequence[str] = (), include_stop_str: bool = False
) -> IncrementalDetokenizer:
    """A detokenizer whose token i is pieces[i]."""
    table = dict(enumerate(pieces))
    return IncrementalDetokenizer(table.__getitem__, stop, include_stop_str)


def run(detok: IncrementalDetokenizer, num_tokens: int) -> list[str]:
    """Push tokens 0..num_tokens-1 then flush; return every returned chunk."""
    return [detok.push(i) for i in range(num_tokens)] + [detok.flush()]


def split_bytes(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def reference(text: str, stop: Sequence[str], include_stop_str: bool) -> str:
    """Cut text at the shortest prefix holding a stop string (longest stop on ties)."""
    for end in range(1, len(text) + 1):
        for s in sorted(stop, key=len, reverse=True):
            if text[:end].endswith(s):
                return text[:end] if include_stop_str else text[: end - len(s)]
    return text


@pytest.mark.parametrize("char", ["é", "✓", "🙂"])
def test_multibyte_char_split_byte_by_byte_is_never_emitted_in_part(char: str) -> None:
    data = char.encode()
    detok = make([data[i : i + 1] for i in range(len(data))])
    chunks = [detok.push(i) for i in range(len(data))]
    assert chunks == [""] * (len(data) - 1) + [char]
    assert detok.flush() == ""
    assert detok.text == char


def test_multibyte_chars_split_across_token_boundaries_reassemble() -> None:
    text = "caf\u00e9 \u2713 ok \U0001f642!"
    data = text.encode()
    pieces = split_bytes(data, [4, 8, 9, len(data) - 3])  # cuts inside é, ✓ and 🙂
    detok = make(pieces)
    chunks = run(detok, len(pieces))
    assert "".join(chunks) == text == detok.text
    assert all("\ufffd" not in c for c in chunks)


def test_stop_string_spanning_three_tokens_does_not_leak() -> None:
    detok = make([b"Hello", b" <", b"|e", b"nd|>", b" more"], stop=["<|end|>"])
    assert detok.push(0) == "Hello"
    assert detok.push(1) == " "
    assert detok.push(2) == ""
    assert not detok.stopped
    assert detok.push(3) == ""
    assert detok.stopped
    assert detok.matched_stop == "<|end|>"
    assert detok.push(4) == ""
    assert detok.flush() == ""
    assert detok.text == "Hello "


def test_stop_prefix_that_does_not_match_is_released_in_order() -> None:
    detok = make([b"a <", b"|en", b"try", b"!"], stop=["<|end|>"])
    assert detok.push(0) == "a "
    assert detok.push(1) == ""
    assert detok.push(2) == "<|entry"
    assert detok.push(3) == "!"
    assert detok.flush() == ""
    assert detok.text == "a <|entry!"
    assert not detok.stopped


def test_held_prefix_shrinks_to_the_longest_still_possible_prefix() -> None:
    detok = make([b"aa", b"a", b"b"], stop=["aab"])
    assert detok.push(0) == ""
    assert detok.push(1) == "a"  # "aaa": only the last "aa" can still start "aab"
    assert detok.push(2) == ""
    assert detok.stopped
    assert detok.text == "a"


def test_include_stop_str_keeps_the_stop_string() -> None:
    detok = make([b"x = 1", b"\n\n", b"y"], stop=["\n\n"], include_stop_str=True)
    assert run(detok, 3) == ["x = 1", "\n\n", "", ""]
    assert detok.text == "x = 1\n\n"


def test_include_stop_str_drops_text_after_it_in_the_same_token() -> None:
    detok = make([b"ab", b"cSTOPdef"], stop=["STOP"], include_stop_str=True)
    assert run(detok, 2) == ["ab", "cSTOP", ""]


def test_stop_inside_one_token_drops_text_after_it() -> None:
    detok = make([b"one ", b"two###three", b"four"], stop=["###"])
    assert detok.push(0) == "one "
    assert detok.push(1) == "two"
    assert detok.stopped
    assert detok.push(2) == ""
    assert detok.text == "one two"


def test_several_stop_strings_earliest_wins() -> None:
    detok = make([b"a STOP b END c"], stop=["END", "STOP"])
    assert detok.push(0) == "a "
    assert detok.matched_stop == "STOP"


def test_stop_strings_ending_together_prefer_the_longer() -> None:
    detok = make([b"xabcd"], stop=["cd", "abcd"])
    assert detok.push(0) == "x"
    assert detok.matched_stop == "abcd"


def test_stop_that_completes_first_wins_however_tokens_split() -> None:
    # "bc" is complete before "abcd" could be: streaming must stop there either way.
    for pieces in ([b"abcd"], [b"a", b"b", b"c", b"d"]):
        detok = make(pieces, stop=["abcd", "bc"])
        assert "".join(run(detok, len(pieces))) == "a"
        assert detok.matched_stop == "bc"


def test_flush_releases_held_stop_prefix() -> None:
    detok = make([b"done <|e"], stop=["<|end|>"])
    assert detok.push(0) == "done "
    assert detok.flush() == "<|e"
    assert detok.text == "done <|e"
    assert not detok.stopped


def test_flush_turns_dangling_partial_char_into_replacement() -> None:
    detok = make([b"ok", "🙂".encode()[:2]])
    assert detok.push(0) == "ok"
    assert detok.push(1) == ""
    assert detok.flush() == "\ufffd"
    assert detok.text == "ok\ufffd"


def test_flush_with_held_prefix_and_dangling_bytes() -> None:
    detok = make([b"x<", b"\xe2\x9c"], stop=["<<"])
    assert detok.push(0) == "x"
    assert detok.push(1) == ""  # no new character yet, so "<" may still start "<<"
    assert detok.flush() == "<\ufffd"
    assert detok.text == "x<\ufffd"


def test_invalid_byte_becomes_replacement_mid_stream() -> None:
    detok = make([b"a\xff", b"b"])
    assert run(detok, 2) == ["a\ufffd", "b", ""]


def test_empty_pieces_release_nothing_and_break_nothing() -> None:
    detok = make([b"", b"\xc3", b"", b"\xa9", b"", b"<", b"", b"/s>"], stop=["</s>"])
    assert run(detok, 8) == ["", "", "", "é", "", "", "", "", ""]
    assert detok.text == "é"
    assert detok.stopped


def test_no_stop_strings_releases_everything_at_once() -> None:
    detok = make([b"<|", b"end"])
    assert run(detok, 2) == ["<|", "end", ""]
    assert detok.matched_stop is None


def test_empty_stop_string_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        make([], stop=["ok", ""])


def test_flush_twice_and_flush_after_stop_return_nothing() -> None:
    detok = make([b"ab"], stop=["b"])
    assert detok.push(0) == "a"
    assert detok.flush() == ""
    assert detok.flush() == ""
    assert detok.text == "a"


ALPHABET = "ab <|>\n\u00e9\u2713\U0001f642"


def random_case(rng: random.Random) -> tuple[str, list[str], list[bytes]]:
    text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
    stop = [_random_stop(rng, text) for _ in range(rng.randint(0, 3))]
    data = text.encode()
    cuts = rng.sample(range(1, len(data)), min(rng.randint(0, len(data)), max(len(data) - 1, 0)))
    pieces = split_bytes(data, cuts)
    for _ in range(rng.randint(0, 3)):
        pieces.insert(rng.randint(0, len(pieces)), b"")
    return text, stop, pieces


def _random_stop(rng: random.Random, text: str) -> str:
    """Half the time a substring of text (likely to match), else random."""
    if text and rng.random() < 0.5:
        start = rng.randrange(len(text))
        return text[start : start + rng.randint(1, 5)]
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 4)))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("include_stop_str", [False, True])
def test_random_splits_match_reference(seed: int, include_stop_str: bool) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        text, stop, pieces = random_case(rng)
        detok = make(pieces, stop, include_stop_str)
        chunks = run(detok, len(pieces))
        expected = reference(text, stop, include_stop_str)
        assert "".join(chunks) == expected == detok.text, (text, stop, pieces)
        assert all("\ufffd" not in c for c in chunks)
        assert detok.stopped == (expected != text or any(s in text for s in stop))


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_decode_like_one_shot_replace(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        data = bytes(
            rng.choice([0x61, 0x80, 0xC3, 0xA9, 0xE2, 0xF0, 0x9F, 0xFF]) for _ in range(20)
        )
        cuts = rng.sample(range(1, len(data)), rng.randint(0, len(data) - 1))
        pieces = split_bytes(data, cuts)
        chunks = run(make(pieces), len(pieces))
        assert "".join(chunks) == data.decode(errors="replace"), pieces


def test_long_stream_holds_back_at_most_max_stop_len_minus_one() -> None:
    pieces = [b"ab<|" if i % 2 else b"x" for i in range(10_000)]
    detok = make(pieces, stop=["<|end|>"])
    for i in range(len(pieces)):
        released = len(detok.text)
        detok.push(i)
        assert len(detok.text) >= released
    assert len(detok.text) == sum(map(len, pieces)) - 2
    assert detok.flush() == "<|"

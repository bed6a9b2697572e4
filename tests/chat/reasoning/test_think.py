"""The ``<think>`` parsers split answers into reasoning and content, whole or streamed in
any pieces, and the template tells which parser a model needs."""

from __future__ import annotations

import random

import pytest

from llmport.chat.reasoning import ReasoningSplit, parser_for_template, reasoning_parser
from llmport.chat.reasoning.grammar import after_reasoning
from llmport.errors import UnsupportedOption

CASES = [
    # (answer, deepseek_r1's split, qwen3's split)
    ("<think>\nplan it\n</think>\n\nThe answer.", ("\nplan it\n", "The answer."),
     ("\nplan it\n", "The answer.")),
    ("plan it</think>The answer.", ("plan it", "The answer."), ("", "plan it</think>The answer.")),
    ("  <think>a<b</thin</think>x</think>y", ("a<b</thin", "x</think>y"),
     ("a<b</thin", "x</think>y")),
    ("<think>cut short", ("cut short", ""), ("cut short", "")),
    ("no tags at all", ("no tags at all", ""), ("", "no tags at all")),
    ("<thinking> is not the tag", ("<thinking> is not the tag", ""),
     ("", "<thinking> is not the tag")),
    ("", ("", ""), ("", "")),
]  # fmt: skip


@pytest.mark.parametrize(("text", "deepseek", "qwen"), CASES)
def test_whole_answers_split(text: str, deepseek: tuple[str, str], qwen: tuple[str, str]) -> None:
    assert reasoning_parser("deepseek_r1").parse(text) == ReasoningSplit(*deepseek)
    assert reasoning_parser("qwen3").parse(text) == ReasoningSplit(*qwen)


@pytest.mark.parametrize("name", ["deepseek_r1", "qwen3"])
@pytest.mark.parametrize(("text", "deepseek", "qwen"), CASES)
@pytest.mark.parametrize("seed", range(4))
def test_streamed_pieces_add_up_to_the_whole(
    name: str, text: str, deepseek: tuple[str, str], qwen: tuple[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    parser = reasoning_parser(name)
    reasoning, content, position = "", "", 0
    while position < len(text):
        size = rng.randint(1, 4)
        piece = parser.feed(text[position : position + size])
        position += size
        reasoning += piece.reasoning
        content += piece.content
        assert "</think>" not in reasoning and not content.startswith("<think>")
    rest = parser.finish()
    expected = deepseek if name == "deepseek_r1" else qwen
    assert (reasoning + rest.reasoning, content + rest.content) == expected


def test_streaming_holds_back_only_what_may_be_a_tag() -> None:
    parser = reasoning_parser("qwen3")
    assert parser.feed("<thi") == ("", "")  # Maybe <think>.
    assert parser.feed("nk>plan </th") == ("plan ", "")  # Maybe </think>.
    assert parser.feed("ink>\n") == ("", "")  # The whitespace before the answer waits.
    assert parser.feed("\nok") == ("", "ok")
    assert reasoning_parser("qwen3").feed("Hi") == ("", "Hi")  # Not <think>: content at once.


def test_the_template_picks_the_parser() -> None:
    assert parser_for_template(None) is None
    assert parser_for_template("{{ messages }}") is None
    assert parser_for_template("{% if enable_thinking %}<think>{% endif %}") == "qwen3"
    assert parser_for_template("<|Assistant|><think>\n") == "deepseek_r1"


def test_unknown_parser_is_refused() -> None:
    with pytest.raises(UnsupportedOption):
        reasoning_parser("gpt-oss-harmony")


def test_the_reasoning_grammar_puts_the_answer_after_the_block() -> None:
    grammar = after_reasoning('root ::= "{}"\n', reasoning_parser("qwen3"))
    assert grammar.startswith('root ::= "<think>" think-0')
    assert 'answer ::= "{}"' in grammar
    optional = after_reasoning('root ::= "{}"\n', reasoning_parser("deepseek_r1"))
    assert optional.startswith('root ::= "<think>"? think-0')
    with pytest.raises(ValueError):
        after_reasoning('other ::= "x"\n', reasoning_parser("qwen3"))

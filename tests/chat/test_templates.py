"""Chat templates: the model's own, the fallbacks, and the sandbox."""

from __future__ import annotations

import time

import pytest

from llmport.chat.templates import (
    CHATML_TEMPLATE,
    GEMMA_TEMPLATE,
    render_chat,
    template_source,
)
from llmport.errors import InvalidParameter

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Bye"},
]


def render(source: str, messages: list[dict[str, str]] = MESSAGES, **kwargs: object) -> str:
    return render_chat(source, messages, bos_token="<bos>", eos_token="<eos>", **kwargs)  # type: ignore[arg-type]


def test_gemma_fallback_uses_turn_markers_and_folds_the_system_prompt() -> None:
    assert render(GEMMA_TEMPLATE) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_chatml_fallback_and_generation_prompt_switch() -> None:
    text = render(CHATML_TEMPLATE, MESSAGES[:2], add_generation_prompt=False)
    assert text == "<bos><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def test_model_template_wins_over_the_fallback() -> None:
    assert template_source("{{ 'mine' }}", "gemma3") == "{{ 'mine' }}"
    assert template_source(None, "gemma3") == GEMMA_TEMPLATE
    assert template_source(None, "llama") == CHATML_TEMPLATE


def test_templates_get_hugging_face_helpers() -> None:
    source = (
        "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}"
        "{% endif %}{{ m | tojson }}{% endfor %}{{ tools | tojson }}"
    )
    assert render(source, MESSAGES[1:2], tools=[{"n": "é"}]) == (
        '{"role": "user", "content": "Hi"}[{"n": "é"}]'
    )
    with pytest.raises(InvalidParameter, match="no tools"):
        render(source, [{"role": "tool", "content": "x"}])


@pytest.mark.parametrize(
    "hostile",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{{ raise_exception.__globals__['os'] }}",
        "{% set x = messages.append(1) %}",
    ],
)
def test_the_sandbox_refuses_reaching_python_internals(hostile: str) -> None:
    with pytest.raises(InvalidParameter):
        render(hostile)


def test_a_broken_template_is_a_clear_error() -> None:
    with pytest.raises(InvalidParameter, match="chat template is invalid"):
        render("{% for %}")


@pytest.mark.parametrize(
    ("hostile", "problem"),
    [
        ("{% for i in range(10**9) %}x{% endfor %}", "range"),
        ("{% for i in range(90000) %}{% for j in range(90000) %}{% endfor %}{% endfor %}",
         "longer than"),
        ("{{ 'x' * 10**9 }}", "exponent|repetition"),
        ("{{ 'ab' * 9000000 }}", "repetition"),
        ("{% for i in range(99999) %}{{ 'y' * 99 }}{% endfor %}", "output over"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recurses"),
    ],
)  # fmt: skip
def test_templates_that_would_hang_or_flood_the_server_are_stopped(
    hostile: str, problem: str
) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidParameter, match=problem):
        render(hostile)
    assert time.monotonic() - started < 10


def test_an_oversized_template_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="limit"):
        render("x" * (300 * 1024))

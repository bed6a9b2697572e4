"""Chat templates: the model's own Jinja2 template, rendered in a sandbox.

Templates come from model files, so they are untrusted: Jinja2's immutable
sandbox refuses attribute walks to Python internals. Models without a template
get a fallback chosen by architecture (Gemma's turn markers, else ChatML).
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from typing import Any

import jinja2

from llmport.chat.sandbox import (
    MAX_TEMPLATE_CHARS,
    LimitedEnvironment,
    limited_range,
    render_limited,
)
from llmport.errors import InvalidParameter

GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] + '\\n\\n' %}{% set messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{{ ((system if loop.first else '') + (message['content'] or '')) | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] or '' }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: Fallbacks for models whose file carries no chat template, by GGUF architecture.
FALLBACK_TEMPLATES = {"gemma": GEMMA_TEMPLATE, "gemma2": GEMMA_TEMPLATE, "gemma3": GEMMA_TEMPLATE}


#: What a template's own expressions raise on messages it was not written for (``1/0``,
#: ``content + 5``...): the template and the messages are the client's, so these are 400s.
_TEMPLATE_ERRORS = (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError)


def is_jinja(template: str) -> bool:
    """Jinja2 (Hugging Face) rather than Go-template (Ollama) syntax."""
    return "{%" in template or "messages" in template


def template_source(chat_template: str | None, architecture: str) -> str:
    """The model's own template, else the documented fallback for its architecture."""
    return chat_template or FALLBACK_TEMPLATES.get(architecture, CHATML_TEMPLATE)


def render_chat(
    source: str,
    messages: list[dict[str, Any]],
    *,
    bos_token: str,
    eos_token: str,
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """The prompt text for ``messages``; a template error is the request's fault (400).

    ``extra`` adds variables (``enable_thinking``); the standard ones win over it."""
    try:
        context = {
            **(extra or {}),
            "messages": messages,
            "tools": tools,
            "documents": None,
            "add_generation_prompt": add_generation_prompt,
            "bos_token": bos_token,
            "eos_token": eos_token,
        }
        return render_limited(_compile(source), context)
    except _TEMPLATE_ERRORS as error:
        raise InvalidParameter(
            f"the chat template could not render these messages: {error}", param="messages"
        ) from error


@functools.lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise InvalidParameter(
            f"the chat template has {len(source)} characters (limit {MAX_TEMPLATE_CHARS})"
        )
    env = LimitedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["range"] = limited_range
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateError as error:
        raise InvalidParameter(f"the model's chat template is invalid: {error}") from error


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


_GO_IF = re.compile(
    r"\{\{-?\s*if\s+\.(System|Prompt)\s*-?\}\}(.*?)\{\{-?\s*end\s*-?\}\}", re.DOTALL
)
_GO_VAR = re.compile(r"\{\{-?\s*\.(System|Prompt|Response)\s*-?\}\}")


def render_go_prompt(template: str, *, system: str, prompt: str) -> str:
    """The simple Go-template subset Ollama's prompt templates use: ``{{ .System }}``,
    ``{{ .Prompt }}``, ``{{ .Response }}`` and ``{{ if .System }}...{{ end }}``.

    Anything else (ranges over ``.Messages``, functions) is refused rather than guessed.
    """
    values = {"System": system, "Prompt": prompt, "Response": ""}
    text = _GO_IF.sub(lambda m: m.group(2) if values[m.group(1)] else "", template)
    text = _GO_VAR.sub(lambda m: values[m.group(1)], text)
    if "{{" in text:
        raise InvalidParameter(
            "this template uses Go-template features beyond .System/.Prompt/.Response and "
            "'if'; use a Jinja2 chat template instead",
            param="template",
        )
    return text

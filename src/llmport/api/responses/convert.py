"""Responses bodies to engine types: input items to template-ready messages (a
``function_call`` joins the assistant's ``tool_calls``, a ``function_call_output`` is a
``tool`` message), flat function tools to the chat shape templates expect, ``text.format``
to a grammar."""

from __future__ import annotations

import json
import uuid
from typing import Any

from llmport.api.answer import reasoning_first, template_kwargs
from llmport.api.responses import protocol as p
from llmport.chat.structured import response_grammar
from llmport.chat.tools import ToolParser, tool_choice_grammar, tool_parser
from llmport.errors import InvalidParameter, UnsupportedOption
from llmport.manager.keep_alive import parse_keep_alive
from llmport.types import GenerationRequest, SamplingParams

_ROLES = frozenset({"user", "system", "developer", "assistant"})


def to_messages(items: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not items:
        raise InvalidParameter("input must not be empty", param="input")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, index))
        elif kind == "function_call":
            _add_call(messages, item, index)
        elif kind == "function_call_output":
            output = item.get("output")
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not isinstance(output, str | list):
                raise InvalidParameter(
                    f"input[{index}]: a function_call_output needs call_id and output",
                    param="input",
                )
            text = output if isinstance(output, str) else _parts_text(output, index)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
        elif kind != "reasoning":  # Earlier reasoning is not shown to the model again.
            raise UnsupportedOption(
                f"input[{index}]: items of type {kind!r} are not supported", param="input"
            )
    return messages


def _message(item: dict[str, Any], index: int) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise InvalidParameter(
            f"input[{index}].role must be one of {sorted(_ROLES)}, not {role!r}", param="input"
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if isinstance(content, list):
        return {"role": role, "content": _parts_text(content, index)}
    raise InvalidParameter(f"input[{index}].content must be text or parts", param="input")


def _parts_text(parts: list[Any], index: int) -> str:
    texts = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text"):
            raise UnsupportedOption(
                f"input[{index}]: content of type {kind!r} is not supported (text only)",
                param="input",
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _add_call(messages: list[dict[str, Any]], item: dict[str, Any], index: int) -> None:
    """Calls in a row belong to one assistant turn."""
    name, arguments = item.get("name"), item.get("arguments")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        parsed = None
    if not isinstance(name, str) or not isinstance(parsed, dict):
        raise InvalidParameter(
            f"input[{index}]: a function_call needs a name and arguments as a JSON object",
            param="input",
        )
    call = {"id": item.get("call_id"), "type": "function",
            "function": {"name": name, "arguments": parsed}}  # fmt: skip
    last = messages[-1] if messages else None
    if last is None or last["role"] != "assistant" or last.get("content"):
        last = {"role": "assistant", "content": ""}
        messages.append(last)
    last.setdefault("tool_calls", []).append(call)


def to_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Function tools in the chat shape (``{"type": "function", "function": {...}}``)."""
    if not tools:
        return None
    out = []
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise UnsupportedOption(
                f"tools[{index}]: only function tools are supported, not {tool.get('type')!r}",
                param="tools",
            )
        function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        out.append({"type": "function", "function": function})
    return out


def to_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def text_grammar(text: p.TextConfig | None) -> str | None:
    """``text.format``: text, json_object, or json_schema (its ``schema``)."""
    if text is None or not text.format:
        return None
    kind = str(text.format.get("type", "text"))
    schema = text.format.get("schema")
    if kind == "json_schema" and not isinstance(schema, dict):
        raise InvalidParameter("text.format json_schema needs a schema object", param="text")
    return response_grammar(kind, schema)


def to_request(
    body: p.ResponsesRequest,
    history: list[dict[str, Any]],
    parser_name: str,
    reasoning: str | None,
) -> tuple[GenerationRequest, ToolParser | None]:
    """The engine request (``history``: the stored conversation it continues), and the
    tool-call parser its answer goes through (if any)."""
    params = SamplingParams(
        max_tokens=body.max_output_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        grammar=text_grammar(body.text),
    )
    tools = to_tools(body.tools)
    choice = to_tool_choice(body.tool_choice)
    parser = None
    if tools and choice != "none":
        parser = tool_parser(parser_name, body.parallel_tool_calls)
        forced = tool_choice_grammar(parser, tools, choice)
        if forced is not None and params.grammar is not None:
            raise InvalidParameter(
                "tool_choice that forces a call and text.format cannot be combined",
                param="tool_choice",
            )
        params.grammar = forced or params.grammar
    params.grammar = reasoning_first(params.grammar, reasoning)
    instructions = [{"role": "system", "content": body.instructions}] if body.instructions else []
    named = {"temperature", "top_p"} & body.model_fields_set
    effort = body.reasoning.effort if body.reasoning else None
    request = GenerationRequest(
        request_id=f"resp_{uuid.uuid4().hex}",
        model=body.model,
        params=params,
        messages=[*instructions, *history, *to_messages(body.input)],
        tools=tools,
        keep_alive=parse_keep_alive(body.keep_alive),
        params_set=frozenset(named | ({"max_tokens"} if body.max_output_tokens else set())),
        chat_template_kwargs=template_kwargs(None, effort),
    )
    return request, parser

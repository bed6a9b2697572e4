"""Anthropic Messages bodies to engine types: template-ready messages (tool_use blocks
become the assistant's ``tool_calls``, tool_result blocks ``tool`` messages, thinking
blocks its ``reasoning_content``, image blocks images the user message shows), sampling
parameters, tools and tool_choice."""

from __future__ import annotations

import uuid
from typing import Any

from llmport.api.answer import reasoning_first, template_kwargs
from llmport.api.anthropic import protocol as p
from llmport.api.images import IMAGE_COUNT, ImageRef
from llmport.chat.tools import ToolParser, tool_choice_grammar, tool_parser
from llmport.errors import InvalidParameter
from llmport.types import GenerationRequest, SamplingParams


def to_messages(
    body: p.CountTokensRequest, images: list[ImageRef] | None = None
) -> list[dict[str, Any]]:
    """Template-ready messages; the user's image blocks go to ``images`` (in order)."""
    messages: list[dict[str, Any]] = []
    system = _text(body.system) if body.system is not None else ""
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(body.messages):
        if isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content})
        elif message.role == "assistant":
            messages.append(_assistant(message.content))
        else:
            messages += _user(message.content, index, [] if images is None else images)
    return messages


def _assistant(blocks: list[p.ContentBlock]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": ""}
    for block in blocks:
        if isinstance(block, p.TextBlock):
            out["content"] += block.text
        elif isinstance(block, p.ToolUseBlock):
            call = {"name": block.name, "arguments": block.input}
            out.setdefault("tool_calls", []).append(
                {"id": block.id, "type": "function", "function": call}
            )
        elif isinstance(block, p.ThinkingBlock):
            out["reasoning_content"] = out.get("reasoning_content", "") + block.thinking
    return out


def _user(blocks: list[p.ContentBlock], index: int, images: list[ImageRef]) -> list[dict[str, Any]]:
    """Tool results become ``tool`` messages, in order; text and images between them a
    user turn."""
    out: list[dict[str, Any]] = []
    text, count = "", 0
    for number, block in enumerate(blocks):
        if isinstance(block, p.ToolResultBlock):
            if text or count:
                out.append(_user_turn(text, count))
                text, count = "", 0
            content = block.content
            result = content if isinstance(content, str) else _text(content or [])
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": result})
        elif isinstance(block, p.TextBlock):
            text += block.text
        elif isinstance(block, p.ImageBlock):
            images.append(_image_ref(block.source, f"messages[{index}].content[{number}]"))
            count += 1
    if text or count or not out:
        out.append(_user_turn(text, count))
    return out


def _user_turn(text: str, num_images: int) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": "user", "content": text}
    if num_images:
        turn[IMAGE_COUNT] = num_images
    return turn


def _image_ref(source: p.ImageSource, where: str) -> ImageRef:
    """A base64 source as a data URL (its media type checked with it), or the URL."""
    if source.type == "url" and source.url:
        return ImageRef(source.url, where)
    if source.type == "base64" and source.media_type and source.data is not None:
        return ImageRef(f"data:{source.media_type};base64,{source.data}", where)
    raise InvalidParameter(
        f"{where}.source: base64 needs media_type and data, url needs url", param=where
    )


def _text(value: str | list[p.TextBlock]) -> str:
    return value if isinstance(value, str) else "".join(block.text for block in value)


def to_tools(tools: list[p.Tool] | None) -> list[dict[str, Any]] | None:
    """OpenAI's function shape, which chat templates expect."""
    if not tools:
        return None
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description or "",
                                          "parameters": t.input_schema}}
        for t in tools
    ]  # fmt: skip


def to_tool_choice(choice: p.ToolChoice | None) -> str | dict[str, Any] | None:
    """OpenAI's form of ``tool_choice``: any forces a call, tool names one."""
    if choice is None or choice.type == "auto":
        return None
    if choice.type == "any":
        return "required"
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return "none"


def thinking_wanted(body: p.CountTokensRequest) -> bool | None:
    """``thinking``: enabled, disabled, or unset (the model's way)."""
    return None if body.thinking is None else body.thinking.type == "enabled"


def to_request(
    body: p.MessagesRequest, parser_name: str, reasoning: str | None
) -> tuple[GenerationRequest, ToolParser | None, list[ImageRef]]:
    """The engine request, the tool-call parser its answer goes through (if any), and the
    images its messages show (loaded by the caller).

    Stop sequences stay in the text (the answer builder cuts one off and reports it as
    ``stop_sequence``)."""
    params = SamplingParams(
        max_tokens=body.max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        stop=list(body.stop_sequences or []),
        include_stop_str_in_output=True,
    )
    tools = to_tools(body.tools)
    choice = to_tool_choice(body.tool_choice)
    parser = None
    if tools and choice != "none":
        parallel = not (body.tool_choice and body.tool_choice.disable_parallel_tool_use)
        parser = tool_parser(parser_name, parallel)
        params.grammar = tool_choice_grammar(parser, tools, choice)
    named = {"temperature", "top_p", "top_k", "max_tokens"} & body.model_fields_set
    if body.stop_sequences:
        named.add("stop")
    images: list[ImageRef] = []
    request = GenerationRequest(
        request_id=f"msg_{uuid.uuid4().hex}",
        model=body.model,
        params=params,
        messages=to_messages(body, images),
        tools=tools,
        params_set=frozenset(named),
        chat_template_kwargs=template_kwargs(thinking_wanted(body)),
    )
    params.grammar = reasoning_first(params.grammar, reasoning)
    return request, parser, images

"""OpenAI bodies to engine types (``to_*``) and engine deltas to OpenAI bodies (``*_from``)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmport.api.answer import reasoning_first, template_kwargs
from llmport.api.images import IMAGE_COUNT, ImageRef
from llmport.api.openai import protocol as p
from llmport.chat.structured import response_grammar
from llmport.chat.tools import ToolCall, ToolParser, tool_choice_grammar, tool_parser
from llmport.chat.tools.json_stream import ToolDelta
from llmport.errors import InvalidParameter, UnsupportedOption
from llmport.manager.keep_alive import parse_keep_alive
from llmport.types import GenerationRequest, Output, SamplingParams, TokenLogprob
from llmport.types import Usage as EngineUsage


def to_sampling_params(
    body: p.SamplingFields, max_tokens: int | None, logprobs: int | None
) -> SamplingParams:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return SamplingParams(
        n=body.n,
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        min_p=body.min_p or 0.0,
        repetition_penalty=body.repetition_penalty or 1.0,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        seed=body.seed,
        stop=stop,
        stop_token_ids=list(body.stop_token_ids or []),
        ignore_eos=body.ignore_eos,
        logit_bias=_logit_bias(body.logit_bias),
        logprobs=logprobs,
        include_stop_str_in_output=body.include_stop_str_in_output,
        grammar=_grammar(body.response_format),
    )


#: Body fields whose value is the SamplingParams field of the same name.
_SAME_NAMES = frozenset({
    "n", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
    "frequency_penalty", "seed", "stop", "stop_token_ids", "ignore_eos", "logit_bias",
    "include_stop_str_in_output",
})  # fmt: skip


def params_set(body: p.SamplingFields) -> frozenset[str]:
    """The SamplingParams fields the client set (the model's Modelfile fills the rest)."""
    fields = body.model_fields_set
    named = fields & _SAME_NAMES
    if fields & {"max_tokens", "max_completion_tokens"}:
        named = named | {"max_tokens"}
    return frozenset(named)


def _grammar(response_format: dict[str, Any] | None) -> str | None:
    """``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"schema"}}``."""
    if not response_format:
        return None
    kind = response_format.get("type", "text")
    json_schema = response_format.get("json_schema") or {}
    if not isinstance(json_schema, dict):
        raise InvalidParameter(
            "response_format json_schema must be an object", param="response_format"
        )
    schema = json_schema.get("schema")
    if kind == "json_schema" and schema is None:
        raise InvalidParameter(
            "response_format json_schema needs json_schema.schema", param="response_format"
        )
    return response_grammar(str(kind), schema)


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    try:
        return {int(token): value for token, value in (bias or {}).items()}
    except ValueError:
        raise InvalidParameter("logit_bias keys must be token ids", param="logit_bias") from None


def to_completion_requests(body: p.CompletionRequest) -> list[GenerationRequest]:
    """One engine request per prompt (OpenAI accepts a list of prompts)."""
    if body.suffix:
        raise UnsupportedOption("suffix (fill-in-the-middle) is not supported", param="suffix")
    params = to_sampling_params(body, body.max_tokens, body.logprobs)
    requests = _per_prompt("cmpl", body.model, _prompts(body.prompt), params, body.keep_alive)
    for request in requests:
        request.params_set = params_set(body)
    return requests


def _per_prompt(
    kind: str,
    model: str,
    prompts: list[str | list[int]],
    params: SamplingParams,
    keep_alive: str | float | None,
    embed: bool = False,
) -> list[GenerationRequest]:
    """One engine request per prompt, ids ``KIND-BASE-INDEX``."""
    seconds = parse_keep_alive(keep_alive)
    base = uuid.uuid4().hex
    return [
        GenerationRequest(
            request_id=f"{kind}-{base}-{i}",
            model=model,
            params=params,
            prompt=prompt if isinstance(prompt, str) else None,
            prompt_token_ids=prompt if isinstance(prompt, list) else None,
            keep_alive=seconds,
            embed=embed,
        )
        for i, prompt in enumerate(prompts)
    ]


def to_embedding_requests(body: p.EmbeddingRequest) -> list[GenerationRequest]:
    if body.dimensions is not None:
        raise UnsupportedOption(
            "dimensions: llmport returns the model's full embedding; shortening it is "
            "only sound for models trained for it",
            param="dimensions",
        )
    prompts = _prompts(body.input)
    return _per_prompt("embd", body.model, prompts, SamplingParams(), body.keep_alive, True)


def embedding_data(vector: list[float], encoding_format: str) -> list[float] | str:
    """OpenAI's base64 form is the little-endian float32 bytes (its client asks for it)."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


def _prompts(prompt: str | list[str] | list[int] | list[list[int]]) -> list[str | list[int]]:
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise InvalidParameter("prompt must not be empty", param="prompt")
    if all(isinstance(item, int) for item in prompt):
        return [[int(t) for t in prompt if isinstance(t, int)]]
    return [item for item in prompt if isinstance(item, str | list)]


def thinking_wanted(body: p.ChatCompletionRequest) -> bool | None:
    """``chat_template_kwargs.enable_thinking`` when the client set it."""
    found = (body.chat_template_kwargs or {}).get("enable_thinking")
    return found if isinstance(found, bool) else None


def to_chat_request(
    body: p.ChatCompletionRequest, parser_name: str, reasoning: str | None = None
) -> tuple[GenerationRequest, ToolParser | None, list[ImageRef]]:
    """The engine request, the tool-call parser its answer goes through (if any), and
    the images its messages show (loaded by the caller: a remote one is fetched); with a
    ``reasoning`` parser a constrained answer may reason first."""
    num_top = body.top_logprobs or 0
    params = to_sampling_params(
        body, body.max_completion_tokens or body.max_tokens, num_top if body.logprobs else None
    )
    parser = None
    if body.tools and body.tool_choice != "none":
        parser = tool_parser(parser_name, body.parallel_tool_calls is not False)
        forced = tool_choice_grammar(parser, body.tools, body.tool_choice)
        if forced is not None and params.grammar is not None:
            raise InvalidParameter(
                "tool_choice that forces a call and response_format cannot be combined",
                param="tool_choice",
            )
        params.grammar = forced or params.grammar
    params.grammar = reasoning_first(params.grammar, reasoning)
    kwargs = template_kwargs(None, body.reasoning_effort)
    images: list[ImageRef] = []
    request = GenerationRequest(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        model=body.model,
        params=params,
        messages=[to_message(m, i, images) for i, m in enumerate(body.messages)],
        tools=body.tools,
        add_generation_prompt=body.add_generation_prompt,
        keep_alive=parse_keep_alive(body.keep_alive),
        params_set=params_set(body),
        chat_template_kwargs={**kwargs, **(body.chat_template_kwargs or {})},
    )
    return request, parser, images


def to_message(
    message: p.ChatMessage, index: int = 0, images: list[ImageRef] | None = None
) -> dict[str, Any]:
    """A template-ready message: text parts joined; ``image_url`` parts appended to
    ``images`` and counted in the message (``index``: its place in ``messages``, which
    names a refused part)."""
    out = message.model_dump(exclude_none=True)
    for call in out.get("tool_calls", []):
        # Templates expect arguments as an object; OpenAI sends a JSON string.
        function = call.get("function", {})
        if not isinstance(function, dict):
            raise InvalidParameter("tool_calls function must be an object", param="messages")
        if isinstance(function.get("arguments"), str):
            try:
                function["arguments"] = json.loads(function["arguments"])
            except ValueError:
                raise InvalidParameter(
                    "tool_calls arguments must be a JSON object", param="messages"
                ) from None
    content = message.content
    if isinstance(content, list):
        texts, count = [], 0
        for number, part in enumerate(content):
            where = f"messages[{index}].content[{number}]"
            if part.get("type") == "image_url":
                (images if images is not None else []).append(_image_ref(part, where))
                count += 1
            elif part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            else:
                raise UnsupportedOption(
                    f"{where}: message content of type {part.get('type')!r} is not supported "
                    "(text and image_url are)",
                    param=where,
                )
        out["content"] = "".join(texts)
        if count:
            out[IMAGE_COUNT] = count
    out.setdefault("content", "")
    return out


def _image_ref(part: dict[str, Any], where: str) -> ImageRef:
    """OpenAI's ``{"type": "image_url", "image_url": {"url": ...}}`` (a bare string URL
    is taken too, as vLLM takes it)."""
    found = part.get("image_url")
    url = found.get("url") if isinstance(found, dict) else found
    if not isinstance(url, str) or not url.startswith(("data:", "http://", "https://")):
        raise InvalidParameter(
            f"{where}.image_url.url must be a data: URL or an http(s) URL",
            param=f"{where}.image_url",
        )
    return ImageRef(url, f"{where}.image_url")


# -- responses -------------------------------------------------------------------------


@dataclass
class Choice:
    """One choice's text and tokens, accumulated from deltas."""

    text: str = ""
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def add(self, output: Output) -> None:
        self.text += output.text
        self.logprobs += output.logprobs or []
        self.finish_reason = finish_reason(output)


@dataclass
class Totals:
    """Usage across the choices and prompts of one response."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def add(self, usage: EngineUsage | None, index: int) -> None:
        if usage is None:
            return
        if index == 0:
            self.prompt_tokens += usage.prompt_tokens
            self.cached_tokens += usage.cached_tokens
        self.completion_tokens += usage.completion_tokens

    def usage(self) -> p.Usage:
        return p.Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            prompt_tokens_details={"cached_tokens": self.cached_tokens},
        )


def finish_reason(output: Output) -> str | None:
    return None if output.finish_reason is None else str(output.finish_reason)


def completion_logprobs(logprobs: list[TokenLogprob], offset: int) -> p.CompletionLogprobs:
    result = p.CompletionLogprobs()
    for item in logprobs:
        result.tokens.append(item.token)
        result.token_logprobs.append(item.logprob)
        result.top_logprobs.append({token: lp for _, token, lp in item.top})
        result.text_offset.append(offset)
        offset += len(item.token)
    return result


def chat_logprobs(logprobs: list[TokenLogprob]) -> p.ChoiceLogprobs:
    return p.ChoiceLogprobs(
        content=[
            p.TokenLogprob(
                token=item.token,
                logprob=item.logprob,
                bytes=list(item.token.encode()),
                top_logprobs=[
                    p.TopLogprob(token=token, logprob=lp, bytes=list(token.encode()))
                    for _, token, lp in item.top
                ],
            )
            for item in logprobs
        ]
    )


def openai_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def tool_call_deltas(deltas: list[ToolDelta]) -> list[dict[str, Any]]:
    """OpenAI's stream shape: a call's id, type and name first, then argument pieces."""
    out: list[dict[str, Any]] = []
    for delta in deltas:
        item: dict[str, Any] = {"index": delta.index, "function": {"arguments": delta.arguments}}
        if delta.name is not None:
            item.update(id=delta.id, type="function")
            item["function"]["name"] = delta.name
        out.append(item)
    return out

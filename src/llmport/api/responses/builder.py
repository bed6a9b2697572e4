"""Engine deltas into a Responses ``response`` object, or its stream of events
(``response.created``, ``response.output_item.added``, ``response.output_text.delta``,
``response.function_call_arguments.delta``, ... ``response.completed``), and the output
items as the messages a continuation sends the template."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from llmport.api.answer import Answer, AnswerParser, Piece
from llmport.api.responses import protocol as p
from llmport.api.serving import Delta
from llmport.chat.tools import ToolCall
from llmport.types import FinishReason, Output


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class ResponseBuilder:
    def __init__(self, response_id: str, body: p.ResponsesRequest, parser: AnswerParser):
        self.id = response_id
        self.body = body
        self.parser = parser
        self.created_at = int(time.time())
        self.text = ""
        self.last: Output | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.cached_tokens = 0
        # Streaming state.
        self.sequence_number = 0
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None

    def add(self, _: int, delta: Delta) -> None:
        self._count(delta.output)
        self.text += delta.output.text

    def _count(self, out: Output) -> None:
        if out.prompt_token_ids is not None:
            self.input_tokens = len(out.prompt_token_ids)
        if out.usage is not None:
            self.input_tokens = out.usage.prompt_tokens
            self.output_tokens = out.usage.completion_tokens
            self.cached_tokens = out.usage.cached_tokens
        self.last = out

    # -- the response object ---------------------------------------------------------------

    def response(self) -> dict[str, Any]:
        return self._response(_items(self.parser.parse(self.text)), done=True)

    def _response(self, output: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        body = self.body
        is_cut = done and self.last is not None and self.last.finish_reason is FinishReason.LENGTH
        status = ("incomplete" if is_cut else "completed") if done else "in_progress"
        reasoning_tokens = 0
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if is_cut else None,
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
            "model": body.model, "output": output,
            "parallel_tool_calls": body.parallel_tool_calls,
            "previous_response_id": body.previous_response_id,
            "reasoning": {"effort": body.reasoning.effort if body.reasoning else None,
                          "summary": None},
            "store": body.store,
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "text": {"format": (body.text.format if body.text else None) or {"type": "text"}},
            "tool_choice": body.tool_choice or "auto", "tools": body.tools or [],
            "top_p": 1.0 if body.top_p is None else body.top_p, "truncation": "disabled",
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": self.cached_tokens},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                "total_tokens": self.input_tokens + self.output_tokens,
            } if done else None,
            "user": body.user, "metadata": body.metadata or {},
        }  # fmt: skip

    # -- a stream of events ----------------------------------------------------------------

    def events(self, _: int, delta: Delta) -> list[bytes]:
        out = delta.output
        events = []
        if self.last is None:
            created = self._response([], done=False)
            events += [self._event("response.created", response=created),
                       self._event("response.in_progress", response=created)]  # fmt: skip
        self._count(out)
        events += self._piece(self.parser.feed(out.text))
        if out.finish_reason is None:
            return events
        events += self._piece(self.parser.finish())
        events += self._close()
        done = self._response(self.items, done=True)
        kind = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
        return [*events, self._event(kind, response=done)]

    def streamed_response(self) -> dict[str, Any]:
        """The response a finished stream told (its items as they were streamed)."""
        return self._response(self.items, done=True)

    def _piece(self, piece: Piece) -> list[bytes]:
        events = []
        if piece.reasoning:
            events += self._open("reasoning")
            events.append(self._text_delta("response.reasoning_text.delta", piece.reasoning))
        if piece.content:
            events += self._open("message")
            events.append(self._text_delta("response.output_text.delta", piece.content))
        for tool in piece.tool_deltas:
            if tool.name is not None:
                events += self._open("function_call", call_id=tool.id, name=tool.name)
            if tool.arguments:
                assert self.open is not None
                self.open["arguments"] += tool.arguments
                events.append(self._event("response.function_call_arguments.delta",
                                          item_id=self.open["id"], output_index=len(self.items),
                                          delta=tool.arguments))  # fmt: skip
        return events

    def _open(self, kind: str, **fields: Any) -> list[bytes]:
        if self.open is not None and self.open["type"] == kind and kind != "function_call":
            return []
        events = self._close()
        item = _empty_item(kind, **fields)
        self.open = item
        events.append(self._event("response.output_item.added", output_index=len(self.items),
                                  item={**item, "status": "in_progress"}))  # fmt: skip
        if kind == "message":
            events.append(self._part("response.content_part.added", _text_part("")))
        return events

    def _text_delta(self, kind: str, text: str) -> bytes:
        assert self.open is not None
        part = self.open["content"][0] if self.open["content"] else None
        if part is None:
            part = {"type": "reasoning_text", "text": ""}
            self.open["content"].append(part)
        part["text"] += text
        return self._event(kind, item_id=self.open["id"], output_index=len(self.items),
                           content_index=0, delta=text, **_logprobs(kind))  # fmt: skip

    def _close(self) -> list[bytes]:
        item, self.open = self.open, None
        if item is None:
            return []
        index = len(self.items)
        events = []
        if item["type"] == "message":
            part = item["content"][0]
            events += [self._event("response.output_text.done", item_id=item["id"],
                                   output_index=index, content_index=0, text=part["text"],
                                   logprobs=[]),
                       self._part("response.content_part.done", part, item)]  # fmt: skip
        elif item["type"] == "reasoning":
            text = item["content"][0]["text"] if item["content"] else ""
            events.append(self._event("response.reasoning_text.done", item_id=item["id"],
                                      output_index=index, content_index=0, text=text))  # fmt: skip
        else:
            events.append(self._event("response.function_call_arguments.done",
                                      item_id=item["id"], output_index=index, name=item["name"],
                                      arguments=item["arguments"]))  # fmt: skip
        item["status"] = "completed"
        self.items.append(item)
        return [*events, self._event("response.output_item.done", output_index=index, item=item)]

    def _part(self, kind: str, part: dict[str, Any], item: dict[str, Any] | None = None) -> bytes:
        item = item or self.open
        assert item is not None
        if kind.endswith("added"):
            item["content"].append(part)
        return self._event(kind, item_id=item["id"], output_index=len(self.items),
                           content_index=0, part=part)  # fmt: skip

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        body = json.dumps(data, ensure_ascii=False)
        return f"event: {kind}\ndata: {body}\n\n".encode()


def _logprobs(kind: str) -> dict[str, Any]:
    return {"logprobs": []} if kind == "response.output_text.delta" else {}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _empty_item(kind: str, **fields: Any) -> dict[str, Any]:
    if kind == "reasoning":
        return {"type": "reasoning", "id": _id("rs"), "summary": [], "content": []}
    if kind == "message":
        return {"type": "message", "id": _id("msg"), "role": "assistant", "content": []}
    return {"type": "function_call", "id": _id("fc"), "arguments": "", **fields}


def _items(answer: Answer) -> list[dict[str, Any]]:
    items = []
    if answer.reasoning:
        part = {"type": "reasoning_text", "text": answer.reasoning}
        items.append({"type": "reasoning", "id": _id("rs"), "summary": [], "status": "completed",
                      "content": [part]})  # fmt: skip
    if answer.content or not answer.calls:
        items.append({"type": "message", "id": _id("msg"), "role": "assistant",
                      "status": "completed", "content": [_text_part(answer.content)]})  # fmt: skip
    items += [_call_item(call) for call in answer.calls]
    return items


def _call_item(call: ToolCall) -> dict[str, Any]:
    return {"type": "function_call", "id": _id("fc"), "call_id": call.id, "name": call.name,
            "arguments": call.arguments, "status": "completed"}  # fmt: skip


def as_input(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output items as input items (what a continuation's history holds)."""
    keep = ("type", "role", "content", "call_id", "name", "arguments")
    return [{k: v for k, v in item.items() if k in keep} for item in items]

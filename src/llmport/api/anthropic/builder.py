"""Engine deltas into Anthropic's message object, or its stream of events
(``message_start``, ``content_block_start``/``delta``/``stop`` per block,
``message_delta`` with ``stop_reason`` and usage, ``message_stop``)."""

from __future__ import annotations

import json
from typing import Any

from llmport.api.answer import AnswerParser, Piece
from llmport.api.serving import Delta
from llmport.chat.tools import ToolCall
from llmport.types import FinishReason, Output


class MessageBuilder:
    """One answer. Stop sequences arrive in the text and are cut off here."""

    def __init__(self, message_id: str, model: str, stop: list[str], parser: AnswerParser):
        self.id = message_id
        self.model = model
        self.stop = stop
        self.parser = parser
        self.text = ""
        self.input_tokens = 0
        self.output_tokens = 0
        self.last: Output | None = None
        self.stop_sequence: str | None = None
        # Streaming state: the open block's index and type.
        self.num_blocks = 0
        self.open_type: str | None = None

    def add(self, _: int, delta: Delta) -> None:
        self._count(delta.output)
        self.text += self._cut_stop(delta.output)

    def _count(self, out: Output) -> None:
        if out.prompt_token_ids is not None:
            self.input_tokens = len(out.prompt_token_ids)
        if out.usage is not None:
            self.input_tokens = out.usage.prompt_tokens
            self.output_tokens = out.usage.completion_tokens
        self.last = out

    def _cut_stop(self, out: Output) -> str:
        """The delta's text without the stop sequence that ended it (noted)."""
        if out.finish_reason is FinishReason.STOP:
            for stop in self.stop:
                if out.text.endswith(stop):
                    self.stop_sequence = stop
                    return out.text[: -len(stop)]
        return out.text

    def stop_reason(self, calls: list[ToolCall]) -> str:
        if calls:
            return "tool_use"
        if self.stop_sequence is not None:
            return "stop_sequence"
        if self.last is not None and self.last.finish_reason is FinishReason.LENGTH:
            return "max_tokens"
        return "end_turn"

    def usage(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}

    # -- a whole message ------------------------------------------------------------------

    def message(self) -> dict[str, Any]:
        answer = self.parser.parse(self.text)
        content: list[dict[str, Any]] = []
        if answer.reasoning:
            content.append({"type": "thinking", "thinking": answer.reasoning, "signature": ""})
        if answer.content or not answer.calls:
            content.append({"type": "text", "text": answer.content})
        content += [_tool_use(call) for call in answer.calls]
        return self._message(content, self.stop_reason(answer.calls), self.usage())

    def _message(
        self, content: list[dict[str, Any]], reason: str | None, usage: dict[str, int]
    ) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": content, "stop_reason": reason, "stop_sequence": self.stop_sequence,
                "usage": usage}  # fmt: skip

    # -- a stream of events ---------------------------------------------------------------

    def events(self, _: int, delta: Delta) -> list[bytes]:
        out = delta.output
        events = []
        is_first = self.last is None
        self._count(out)
        if is_first:
            start = self._message([], None, {**self.usage(), "output_tokens": 0})
            events.append(event("message_start", {"message": start}))
        events += self._piece(self.parser.feed(self._cut_stop(out)))
        if out.finish_reason is None:
            return events
        piece = self.parser.finish()
        events += self._piece(piece)
        events += self._close()
        reason = {"stop_reason": self.stop_reason(piece.calls), "stop_sequence": self.stop_sequence}
        events.append(event("message_delta", {"delta": reason, "usage": self.usage()}))
        events.append(event("message_stop", {}))
        return events

    def _piece(self, piece: Piece) -> list[bytes]:
        events = []
        if piece.reasoning:
            events += self._open("thinking", {"thinking": "", "signature": ""})
            events.append(self._delta({"type": "thinking_delta", "thinking": piece.reasoning}))
        if piece.content:
            events += self._open("text", {"text": ""})
            events.append(self._delta({"type": "text_delta", "text": piece.content}))
        for tool in piece.tool_deltas:
            if tool.name is not None:
                events += self._close()
                events += self._open("tool_use", {"id": tool.id, "name": tool.name, "input": {}})
            if tool.arguments:
                events.append(self._delta({"type": "input_json_delta",
                                           "partial_json": tool.arguments}))  # fmt: skip
        return events

    def _open(self, kind: str, fields: dict[str, Any]) -> list[bytes]:
        if self.open_type == kind and kind != "tool_use":
            return []
        events = self._close()
        self.open_type = kind
        block = {"type": kind, **fields}
        events.append(
            event("content_block_start", {"index": self.num_blocks, "content_block": block})
        )
        return events

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"index": self.num_blocks, "delta": delta})

    def _close(self) -> list[bytes]:
        if self.open_type is None:
            return []
        events = []
        if self.open_type == "thinking":
            events.append(self._delta({"type": "signature_delta", "signature": ""}))
        events.append(event("content_block_stop", {"index": self.num_blocks}))
        self.open_type = None
        self.num_blocks += 1
        return events


def event(kind: str, data: dict[str, Any]) -> bytes:
    body = json.dumps({"type": kind, **data}, ensure_ascii=False)
    return f"event: {kind}\ndata: {body}\n\n".encode()


def _tool_use(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name,
            "input": json.loads(call.arguments)}  # fmt: skip

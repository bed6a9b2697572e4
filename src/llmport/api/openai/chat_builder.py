"""Chat deltas into OpenAI's chat objects: whole responses and stream chunks, with the
reasoning (``reasoning_content``) and tool calls parsed out of the text when the model
reasons or the request offered tools."""

from __future__ import annotations

import time

from llmport.api.answer import AnswerParser, answer_parser
from llmport.api.openai import convert
from llmport.api.openai import protocol as p
from llmport.api.serving import Delta
from llmport.chat.tools import tool_parser


class ChatBuilder:
    """One chat answer (``n`` choices). ``parser_name`` set: tool calls are parsed;
    ``reasoning`` set: the reasoning is returned apart."""

    def __init__(
        self,
        body: p.ChatCompletionRequest,
        request_id: str,
        parser_name: str | None,
        reasoning: str | None = None,
    ):
        self.body = body
        self.id = request_id
        self.created = int(time.time())
        self.choices: dict[int, convert.Choice] = {}
        self.totals = convert.Totals()
        self.parser_name = parser_name
        self.reasoning = reasoning
        self.parsers: dict[int, AnswerParser] = {}

    def _parser(self, index: int) -> AnswerParser | None:
        if self.parser_name is None and self.reasoning is None:
            return None
        if index not in self.parsers:
            parallel = self.body.parallel_tool_calls is not False
            tools = None if self.parser_name is None else tool_parser(self.parser_name, parallel)
            self.parsers[index] = answer_parser(self.reasoning, tools)
        return self.parsers[index]

    # -- whole responses -------------------------------------------------------------

    def add(self, _: int, delta: Delta) -> None:
        out = delta.output
        self.choices.setdefault(out.index, convert.Choice()).add(out)
        self.totals.add(out.usage, out.index)

    def response(self) -> p.ChatCompletionResponse:
        choices = []
        for index, choice in sorted(self.choices.items()):
            message = p.AssistantMessage(content=choice.text)
            reason = choice.finish_reason
            parser = self._parser(index)
            if parser is not None:
                answer = parser.parse(choice.text)
                message = p.AssistantMessage(
                    content=answer.content, reasoning_content=answer.reasoning or None
                )
                if answer.calls:
                    message.content = answer.content or None
                    message.tool_calls = convert.openai_tool_calls(answer.calls)
                    reason = "tool_calls"
            choices.append(
                p.ChatChoice(
                    index=index,
                    message=message,
                    logprobs=convert.chat_logprobs(choice.logprobs) if self.body.logprobs else None,
                    finish_reason=reason,
                )
            )
        return p.ChatCompletionResponse(
            id=self.id, model=self.body.model, choices=choices, usage=self.totals.usage()
        )

    # -- streams ------------------------------------------------------------------------

    def chunks(self, _: int, delta: Delta) -> list[str]:
        out = delta.output
        self.totals.add(out.usage, out.index)
        chunks = []
        if out.index not in self.choices:
            self.choices[out.index] = convert.Choice()
            role = p.ChatChunkChoice(
                index=out.index, delta=p.DeltaMessage(role="assistant", content="")
            )
            chunks.append(self._chunk(role))
        parser = self._parser(out.index)
        reason = convert.finish_reason(out)
        text, reasoning, calls = out.text, "", None
        if parser is not None:
            piece = parser.feed(out.text)
            if reason is not None:
                final = parser.finish()
                piece.reasoning += final.reasoning
                piece.content += final.content
                piece.tool_deltas += final.tool_deltas
                reason = "tool_calls" if final.calls else reason
            text, reasoning = piece.content, piece.reasoning
            calls = convert.tool_call_deltas(piece.tool_deltas) or None
        if text or reasoning or calls or reason is not None:
            logprobs = None
            if self.body.logprobs and out.logprobs:
                logprobs = convert.chat_logprobs(out.logprobs)
            choice = p.ChatChunkChoice(
                index=out.index,
                delta=p.DeltaMessage(
                    content=text or None, reasoning_content=reasoning or None, tool_calls=calls
                ),
                logprobs=logprobs,
                finish_reason=reason,
            )
            chunks.append(self._chunk(choice))
        return chunks

    def _chunk(self, choice: p.ChatChunkChoice) -> str:
        return p.ChatCompletionChunk(
            id=self.id, created=self.created, model=self.body.model, choices=[choice]
        ).model_dump_json()

    def usage_chunk(self) -> str:
        return p.ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.body.model,
            choices=[],
            usage=self.totals.usage(),
        ).model_dump_json()

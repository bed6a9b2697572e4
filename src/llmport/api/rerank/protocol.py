"""The rerank body Jina, Cohere, vLLM and llama-server share, and vLLM's score body."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DocumentText(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    query: str
    documents: list[str | DocumentText] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = True
    keep_alive: str | float | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    text_1: str | list[str]
    text_2: str | list[str]
    keep_alive: str | float | None = None


def document_text(document: str | DocumentText) -> str:
    return document if isinstance(document, str) else document.text


def rerank_result(index: int, score: float, document: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"index": index, "relevance_score": score}
    if document is not None:
        result["document"] = {"text": document}
    return result

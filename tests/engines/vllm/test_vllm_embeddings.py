"""An HF embedding model (Sentence Transformers' layout) answers embeddings through vLLM
in both dialects, equal to what transformers computes from the same weights; it does
not chat, and a generative model does not embed: each a 400 naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ollama
import openai
import pytest
import torch
import transformers
from vllm_server import API_KEY, auth

from server_helpers import Server

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog."]


def reference(folder: Path, text: str) -> np.ndarray:
    """The last token's final hidden state, normalized: what modules.json asks for."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        hidden = model(torch.tensor([tokenizer.encode(text)])).last_hidden_state[0, -1]
    vector = hidden.numpy()
    return np.asarray(vector / np.linalg.norm(vector))


def test_embeddings_match_transformers_in_both_dialects(server: Server, hf_embedder: Path) -> None:
    model = str(hf_embedder)
    answer = server.openai(api_key=API_KEY).embeddings.create(model=model, input=TEXTS)
    vectors = [np.asarray(item.embedding) for item in answer.data]
    for text, vector in zip(TEXTS, vectors, strict=True):
        assert vector.shape == (64,)
        assert float(vector @ reference(hf_embedder, text)) > 0.9999
    assert answer.usage.prompt_tokens > len(TEXTS)
    with ollama.Client(host=server.base_url, headers=auth()) as client:
        embedded = client.embed(model=model, input=TEXTS)
    assert np.allclose(np.asarray(embedded.embeddings), np.asarray(vectors), atol=1e-5)


def test_an_embedding_model_does_not_chat_and_a_chat_model_does_not_embed(
    server: Server, hf_embedder: Path
) -> None:
    client = server.openai(api_key=API_KEY)
    with pytest.raises(openai.BadRequestError, match="embedding model") as caught:
        client.chat.completions.create(
            model=str(hf_embedder), max_tokens=2, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.param == "model"
    with pytest.raises(openai.BadRequestError, match="does not embed") as caught:
        client.embeddings.create(model="hf", input="hello")
    assert caught.value.param == "input"

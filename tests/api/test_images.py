"""Images to a model whose engine here cannot take them answer 400 naming the field, in
both dialects (llama.cpp takes text only; nothing is dropped without a word)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server_helpers import Server, running_server

#: A 1x1 PNG as a data URL, as the OpenAI SDK's users send one.
PNG = base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de000000"
                  "0c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082")
).decode()  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("images")) as server:
        yield server


def test_an_openai_image_url_part_is_a_400_naming_its_place(
    server: Server, tiny_model_path: Path
) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": content}]
    body = {"model": str(tiny_model_path), "messages": messages, "max_tokens": 2}  # fmt: skip
    answer = httpx.post(f"{server.openai_url}/chat/completions", json=body, timeout=60)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "messages[1].content[1].image_url"
    content[1] = {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
    answer = httpx.post(f"{server.openai_url}/chat/completions", json=body, timeout=60)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "messages[1].content[1]"


def test_ollama_images_are_a_400_naming_the_field(server: Server, tiny_model_path: Path) -> None:
    model = str(tiny_model_path)
    messages = [{"role": "user", "content": "hi"},
                {"role": "user", "content": "x", "images": [PNG]}]  # fmt: skip
    chat = httpx.post(f"{server.base_url}/api/chat", timeout=60,
                      json={"model": model, "messages": messages, "stream": False})  # fmt: skip
    assert chat.status_code == 400 and chat.json()["error"].startswith("messages[1].images: ")
    generate = httpx.post(f"{server.base_url}/api/generate", timeout=60,
                          json={"model": model, "prompt": "x", "images": [PNG]})  # fmt: skip
    assert generate.status_code == 400 and generate.json()["error"].startswith("images: ")

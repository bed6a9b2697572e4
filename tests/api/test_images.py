"""Images to a model whose engine here cannot take them answer 400 naming the field, in
both dialects (llama.cpp takes text only; nothing is dropped without a word), and what
the API checks of an image before any engine sees it: its encoding, that it looks like
an image file, and that a remote URL names an allowed host (the vision tests in
``tests/engines/vllm/test_vllm_images.py`` show images reaching a model)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmport.api.images import IMAGE_COUNT, placed, with_placeholders
from server_helpers import Server, running_server, serving_files

#: A 1x1 PNG as a data URL, as the OpenAI SDK's users send one.
PNG = base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de000000"
                  "0c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082")
).decode()  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[Server]:
    args = ("--allowed-media-domains", "127.0.0.1")
    with running_server(tmp_path_factory.mktemp("images"), *args) as server:
        yield server


@pytest.fixture(scope="module")
def image_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """127.0.0.1:PORT, serving ``pixel.png``."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "pixel.png").write_bytes(base64.b64decode(PNG))
    (folder / "big.png").write_bytes(base64.b64decode(PNG) + bytes(5 << 20))  # 5 MiB.
    with serving_files(folder) as host:
        yield host


def chat_with_image(server: Server, model: str, url: str) -> httpx.Response:
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image_url", "image_url": {"url": url}}]  # fmt: skip
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 2}
    return httpx.post(f"{server.openai_url}/chat/completions", json=body, timeout=60)


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
    assert "takes no images" in answer.json()["error"]["message"]
    content[1] = {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
    answer = httpx.post(f"{server.openai_url}/chat/completions", json=body, timeout=60)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "messages[1].content[1]"


def test_ollama_images_are_a_400_naming_the_field(server: Server, tiny_model_path: Path) -> None:
    model = str(tiny_model_path)
    messages = [{"role": "user", "content": "hi"},
                {"role": "user", "content": "x", "images": [PNG]}]  # fmt: skip
    chat = httpx.post(f"{server.base_url}/api/chat", timeout=60,
                      json={"model": model, "messages": messages, "stream": False})  # fmt: skip
    assert chat.status_code == 400
    assert chat.json()["error"].startswith("messages[1].images[0]: ")
    generate = httpx.post(f"{server.base_url}/api/generate", timeout=60,
                          json={"model": model, "prompt": "x", "images": [PNG]})  # fmt: skip
    assert generate.status_code == 400 and generate.json()["error"].startswith("images[0]: ")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("data:image/png;base64,%%%", "not valid base64"),
        ("data:image/png,rawbytes", "data:image/TYPE;base64,DATA"),
        ("data:text/plain;base64,aGk=", "text/plain is not an image type"),
        ("data:image/png;base64," + base64.b64encode(b"GIF? no").decode(), "not a PNG"),
        ("ftp://127.0.0.1/pixel.png", "a data: URL or an http(s) URL"),
    ],
)
def test_a_malformed_image_is_a_400_naming_its_field(
    server: Server, tiny_model_path: Path, url: str, says: str
) -> None:
    answer = chat_with_image(server, str(tiny_model_path), url)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]["message"]
    assert answer.json()["error"]["param"] == "messages[0].content[1].image_url"


def test_remote_image_urls_are_fetched_only_from_allowed_hosts(
    server: Server, tiny_model_path: Path, image_host: str
) -> None:
    model, port = str(tiny_model_path), image_host.rsplit(":", 1)[1]
    refused = chat_with_image(server, model, f"http://localhost:{port}/pixel.png")
    assert refused.status_code == 400 and "--allowed-media-domains" in refused.text
    missing = chat_with_image(server, model, f"http://{image_host}/missing.png")
    assert missing.status_code == 400 and "answered 404" in missing.text
    # Fetched and checked; then the text model says it takes no images.
    fetched = chat_with_image(server, model, f"http://{image_host}/pixel.png")
    assert fetched.status_code == 400 and "takes no images" in fetched.text


def test_fetched_images_together_stay_within_the_request_size_limit(
    server: Server, tiny_model_path: Path, image_host: str
) -> None:
    big = {"type": "image_url", "image_url": {"url": f"http://{image_host}/big.png"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "two"}, big, big]}]
    body = {"model": str(tiny_model_path), "messages": messages, "max_tokens": 2}
    answer = httpx.post(f"{server.openai_url}/chat/completions", json=body, timeout=60)
    assert answer.status_code == 400 and "more than" in answer.text
    assert answer.json()["error"]["param"] == "messages[0].content[2].image_url"


def test_placeholders_lead_each_message_that_shows_images() -> None:
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "two", IMAGE_COUNT: 2},
                {"role": "user", "content": "one", IMAGE_COUNT: 1}]  # fmt: skip
    assert [m["content"] for m in placed(messages, "<image>")] == [
        "be brief", "<image>\n<image>\ntwo", "<image>\none"]  # fmt: skip
    numbered = placed(messages, "<|image_{n}|>")
    assert numbered[1]["content"] == "<|image_1|>\n<|image_2|>\ntwo"
    assert numbered[2]["content"] == "<|image_3|>\none"
    assert all(IMAGE_COUNT not in m for m in numbered)
    # An engine that places images itself gets the text as it was.
    assert placed(messages, "")[1] == {"role": "user", "content": "two"}


def test_a_placeholder_the_client_wrote_is_not_added_again() -> None:
    assert with_placeholders("see <image> here", ["<image>"]) == "see <image> here"
    assert with_placeholders("see <image>", ["<image>", "<image>"]) == "<image>\nsee <image>"


def test_an_anthropic_image_block_to_a_text_model_is_a_400_naming_it(
    server: Server, tiny_model_path: Path
) -> None:
    def ask(source: dict[str, str]) -> httpx.Response:
        content = [{"type": "text", "text": "what is this?"}, {"type": "image", "source": source}]
        body = {"model": str(tiny_model_path), "max_tokens": 2,
                "messages": [{"role": "user", "content": content}]}  # fmt: skip
        return httpx.post(f"{server.base_url}/v1/messages", json=body, timeout=60)

    refused = ask({"type": "base64", "media_type": "image/png", "data": PNG})
    assert refused.status_code == 400 and "takes no images" in refused.text
    assert "messages[0].content[1]" in refused.json()["error"]["message"]
    no_type = ask({"type": "base64", "data": PNG})
    assert no_type.status_code == 400 and "needs media_type and data" in no_type.text

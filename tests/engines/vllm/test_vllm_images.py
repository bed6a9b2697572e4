"""Images reach a vision model served by vLLM (a tiny random Idefics3) as vLLM's own
server takes them: OpenAI ``image_url`` parts with data URLs, Ollama's ``images``, and
remote URLs only from an allowed host. The model is random, so "the image reached it"
is shown by greedy answers: a different image changes the answer, the same image in
either dialect (or by URL) gives the same one."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest
from PIL import Image as PilImage
from vllm_server import API_KEY, auth

from server_helpers import Server, serving_files

QUESTION = "what is this?"
#: Greedy, and without Ollama's default repeat penalty, so both dialects sample alike.
GREEDY = {"temperature": 0, "num_predict": 8, "repeat_penalty": 1.0}


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    PilImage.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


RED, BLUE = png((255, 0, 0)), png((0, 0, 255))


def huge_png() -> bytes:
    """48 million pixels (a 1-bit image: small to make and to send), over the cap."""
    buffer = io.BytesIO()
    PilImage.new("1", (8000, 6000)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def openai_chat(server: Server, model: str, url: str, text: str = QUESTION) -> Any:
    client = server.openai(api_key=API_KEY)
    content: Any = [{"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": text}]  # fmt: skip
    return client.chat.completions.create(
        model=model, max_tokens=8, temperature=0,
        messages=[{"role": "user", "content": content}],
    )  # fmt: skip


@pytest.fixture(scope="module")
def image_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 serving ``red.png``."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "red.png").write_bytes(RED)
    with serving_files(folder) as host:
        yield host


def test_an_image_in_an_openai_chat_reaches_the_model(server: Server, hf_vision: Path) -> None:
    model = str(hf_vision)
    red = openai_chat(server, model, data_url(RED))
    again = openai_chat(server, model, data_url(RED))
    blue = openai_chat(server, model, data_url(BLUE))
    assert red.choices[0].message.content == again.choices[0].message.content
    assert red.choices[0].message.content != blue.choices[0].message.content
    text_only = server.openai(api_key=API_KEY).chat.completions.create(
        model=model, max_tokens=1, messages=[{"role": "user", "content": QUESTION}]
    )
    # The image's tokens count in the prompt: its placeholder, expanded by vLLM.
    assert red.usage.prompt_tokens > text_only.usage.prompt_tokens + 2


def test_ollama_images_give_the_answer_the_openai_dialect_gives(
    server: Server, hf_vision: Path
) -> None:
    model = str(hf_vision)
    expected = openai_chat(server, model, data_url(BLUE)).choices[0].message.content
    with ollama.Client(host=server.base_url, headers=auth()) as client:
        answer = client.chat(
            model=model, options=GREEDY,
            messages=[{"role": "user", "content": QUESTION, "images": [BLUE]}],
        )  # fmt: skip
        assert answer.message.content == expected
        generated = client.generate(model=model, prompt=QUESTION, images=[BLUE], options=GREEDY)
        assert generated.response == expected


def test_an_anthropic_image_block_gives_the_answer_the_openai_dialect_gives(
    server: Server, hf_vision: Path
) -> None:
    model = str(hf_vision)
    expected = openai_chat(server, model, data_url(RED)).choices[0].message.content
    image = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(RED).decode()}
    with anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY) as client:
        answer = client.messages.create(
            model=model, max_tokens=8, extra_body={"temperature": 0},  # Not an SDK argument.
            messages=[{"role": "user", "content": [{"type": "image", "source": image},
                                                   {"type": "text", "text": QUESTION}]}],
        )  # fmt: skip
    assert answer.content[0].text == expected  # type: ignore[union-attr]


def test_a_remote_image_url_is_fetched_only_from_an_allowed_host(
    server: Server, hf_vision: Path, image_host: str
) -> None:
    model = str(hf_vision)
    by_url = openai_chat(server, model, f"http://{image_host}/red.png")
    by_data = openai_chat(server, model, data_url(RED))
    assert by_url.choices[0].message.content == by_data.choices[0].message.content
    port = image_host.rsplit(":", 1)[1]
    with pytest.raises(openai.BadRequestError, match="allowed-media-domains") as caught:
        openai_chat(server, model, f"http://localhost:{port}/red.png")
    assert caught.value.param == "messages[0].content[0].image_url"
    with pytest.raises(openai.BadRequestError, match="404") as caught:
        openai_chat(server, model, f"http://{image_host}/missing.png")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("data:image/png;base64,%%%", "base64"),
        ("data:text/plain;base64,aGk=", "not an image type"),
        (data_url(b"not an image at all"), "not a PNG"),
        (data_url(RED[:40]), "could not be decoded"),  # A PNG's start, cut short.
        (data_url(huge_png()), "8000x6000 pixels"),
    ],
)
def test_a_bad_image_is_a_400_naming_its_field(
    server: Server, hf_vision: Path, url: str, says: str
) -> None:
    with pytest.raises(openai.BadRequestError, match=says) as caught:
        openai_chat(server, str(hf_vision), url)
    assert caught.value.param == "messages[0].content[0].image_url"


def test_the_model_still_answers_after_bad_images(server: Server, hf_vision: Path) -> None:
    answer = openai_chat(server, str(hf_vision), data_url(RED))
    assert answer.choices[0].finish_reason in ("length", "stop")
    stats = httpx.get(f"{server.base_url}/api/ps", headers=auth(), timeout=30).json()
    assert any(m["model"] == str(hf_vision) for m in stats["models"])

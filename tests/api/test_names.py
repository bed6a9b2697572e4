"""One resolver: every kind of model name answers identically on both dialects, and a
Modelfile's settings (MESSAGE, SYSTEM, PARAMETER repeat_last_n) apply on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from fake_hub import FakeHub
from server_helpers import Server, running_server
from tiny_model import write_tiny_model

REPO = "tester/names-GGUF"
TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
GREEDY_OLLAMA = {"temperature": 0, "repeat_penalty": 1.0, "top_k": 0, "top_p": 1.0}
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("names")
    return write_tiny_model(folder / "chat.gguf", seed=11, chat_template=TEMPLATE)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model_path: Path
) -> Iterator[tuple[Server, list[str]]]:
    home = tmp_path_factory.mktemp("names-home")
    with FakeHub() as hub:
        hub.add_file(REPO, "chat-Q8_0.gguf", model_path.read_bytes())
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf"), "HF_HUB_DISABLE_XET": "1"}
        with running_server(home, str(model_path), "--served-model-name", "alias",
                            env=env) as server:  # fmt: skip
            client = ollama.Client(host=server.base_url)
            pulled = f"hf.co/{REPO}:Q8_0"
            client.pull(pulled)
            client.copy("alias", "copied")
            client.create(model="created", from_="copied")
            yield server, ["alias", "copied", "created", pulled, str(model_path)]
            client._client.close()


def ollama_client(server: Server) -> ollama.Client:
    """A client closed with the server's OpenAI clients (no socket left for the GC)."""
    client = ollama.Client(host=server.base_url)
    server.clients.append(client._client)  # type: ignore[arg-type]
    return client


def test_every_name_kind_answers_the_same_on_every_route(
    server: tuple[Server, list[str]],
) -> None:
    srv, names = server
    openai = srv.openai()
    client = ollama_client(srv)
    answers = set()
    for name in names:
        completion = openai.completions.create(
            model=name, prompt="hello", max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
        )
        generated = client.generate(model=name, prompt="hello", raw=True,
                                    options={**GREEDY_OLLAMA, "num_predict": 6})  # fmt: skip
        assert completion.choices[0].text == generated.response, name
        chat = openai.chat.completions.create(model=name, messages=HELLO, max_tokens=6,  # type: ignore[arg-type]
                                              temperature=0)  # fmt: skip
        ollama_chat = client.chat(model=name, messages=HELLO,
                                  options={**GREEDY_OLLAMA, "num_predict": 6})  # fmt: skip
        assert chat.choices[0].message.content == ollama_chat.message.content, name
        assert chat.usage is not None
        assert chat.usage.prompt_tokens == ollama_chat.prompt_eval_count, name
        shown = client.show(name)
        assert shown.template == TEMPLATE and shown.modelinfo is not None, name
        answers.add((completion.choices[0].text, chat.choices[0].message.content))
    assert len(answers) == 1  # One model behind every name.


def test_a_modelfiles_messages_system_and_repeat_last_n_apply_on_both_dialects(
    server: tuple[Server, list[str]],
) -> None:
    srv, _ = server
    client = ollama_client(srv)
    openai = srv.openai()
    client.create(model="preset", from_="alias", system="Be brief.",
                  messages=[{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": "hello"}])  # fmt: skip
    plain = openai.chat.completions.create(model="alias", messages=HELLO, max_tokens=1)  # type: ignore[arg-type]
    preset = openai.chat.completions.create(model="preset", messages=HELLO, max_tokens=1)  # type: ignore[arg-type]
    via_ollama = client.chat(model="preset", messages=HELLO, options={"num_predict": 1})
    assert plain.usage is not None and preset.usage is not None
    assert preset.usage.prompt_tokens > plain.usage.prompt_tokens  # SYSTEM and MESSAGEs.
    assert via_ollama.prompt_eval_count == preset.usage.prompt_tokens

    # A strong penalty changes a greedy answer; repeat_last_n 0 turns it off, on both.
    for name, last_n in (("penalized", 64), ("unpenalized", 0)):
        client.create(model=name, from_="alias", parameters={
            "temperature": 0, "repeat_penalty": 3.0, "repeat_last_n": last_n, "top_k": 0,
            "top_p": 1.0})  # fmt: skip
    prompt = "hello hello hello"
    greedy = openai.completions.create(model="alias", prompt=prompt, max_tokens=24,
                                       temperature=0, extra_body={"ignore_eos": True})  # fmt: skip
    for name in ("penalized", "unpenalized"):
        via_openai = openai.completions.create(model=name, prompt=prompt, max_tokens=24,
                                               extra_body={"ignore_eos": True})  # fmt: skip
        via_ollama = client.generate(model=name, prompt=prompt, raw=True,
                                     options={"num_predict": 24})  # fmt: skip
        assert via_openai.choices[0].text == via_ollama.response, name
        same = via_openai.choices[0].text == greedy.choices[0].text
        assert same == (name == "unpenalized"), name

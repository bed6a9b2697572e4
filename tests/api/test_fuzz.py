"""Property-based fuzz of the HTTP surface against one real server on the tiny model.

Schemathesis generates requests for every route from the server's own OpenAPI schema,
valid and invalid; Hypothesis adds hostile JSON the schema cannot describe (NaN and
Infinity tokens, 2**70, lone surrogates, deep nesting, truncated or non-UTF-8 bytes).
Whatever arrives, the server answers: never a 5xx (a 503 ``queue_full`` under load is
allowed), never a dropped connection, every 4xx a JSON error, and it stays alive.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, Case

from server_helpers import Server, running_server

#: The served name every generation request is pointed at (both dialects: an alias for
#: the OpenAI routes, registered in the store for Ollama's).
MODEL = "tiny"
#: Examples per route (schemathesis) and per hostile-body test (hypothesis).
MAX_EXAMPLES = 40
MAX_HOSTILE_EXAMPLES = 120
#: Answers stay a few tokens long, so hundreds of requests take seconds.
MAX_TOKENS = 4
#: Beyond 64 bits a count cannot reach the engine: validation must refuse it first.
INT64_LIMIT = 1 << 63
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("fuzz")
    with running_server(
        folder, str(tiny_model_path), "--served-model-name", MODEL, env={"HF_HUB_OFFLINE": "1"}
    ) as server:
        created = httpx.post(
            f"{server.base_url}/api/create",
            json={"model": MODEL, "from": str(tiny_model_path), "stream": False},
            timeout=60,
        )
        assert created.status_code == 200, created.text
        yield server


@pytest.fixture(scope="module")
def api_schema(server: Server) -> BaseSchema:
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "base-url": server.base_url,
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "request-timeout": 60,
        }
    )
    raw = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
    return schemathesis.openapi.from_dict(raw, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ_SETTINGS
def test_generated_requests_never_get_a_server_error(case: Case, server: Server) -> None:
    if isinstance(case.body, dict):
        case.body = constrained(case.path, case.body)
    response = case.call(base_url=server.base_url, timeout=60)
    assert_handled(case.method, case.path, response.status_code, response.content)


# -- hostile bodies ---------------------------------------------------------------------

HOSTILE_ROUTES = {
    "/v1/completions": ["prompt", "max_tokens", "n", "stop", "logit_bias", "logprobs", "echo",
                        "seed", "temperature", "top_p", "top_k", "stream", "stream_options",
                        "response_format", "keep_alive", "stop_token_ids", "suffix"],
    "/v1/chat/completions": ["messages", "max_tokens", "max_completion_tokens", "tools",
                             "tool_choice", "response_format", "logprobs", "top_logprobs",
                             "stream", "n", "stop", "seed", "keep_alive", "logit_bias"],
    "/v1/embeddings": ["input", "encoding_format", "dimensions", "keep_alive"],
    "/tokenize": ["prompt", "messages", "tools", "add_special_tokens", "add_generation_prompt"],
    "/detokenize": ["tokens"],
    "/api/generate": ["prompt", "system", "template", "context", "raw", "format", "options",
                      "keep_alive", "images", "suffix", "stream", "think"],
    "/api/chat": ["messages", "tools", "format", "options", "keep_alive", "stream", "think"],
    "/api/embed": ["input", "truncate", "options", "keep_alive", "dimensions"],
    "/api/show": ["model", "name", "verbose"],
    "/api/create": ["model", "from", "modelfile", "parameters", "template", "system",
                    "messages", "license", "files", "quantize", "stream"],
    "/api/copy": ["source", "destination"],
}  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**70, -(2**70), 2**63, 2**64, -1, 0, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "é" * 3, "{{ .Prompt }}", "nan",
                     "-1", "1e999", "hf.co/x/y", "../../etc/passwd", "~nobody/x.gguf",
                     "x" * 300, "json", "required", "auto", "function", "user"]),
    st.text(max_size=20),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: Keys the routes read inside nested objects, so garbage reaches the code behind them.
NESTED_KEYS = ["role", "content", "tool_calls", "function", "name", "arguments", "type",
               "parameters", "properties", "items", "anyOf", "enum", "$ref", "$defs",
               "required", "json_schema", "schema", "num_predict", "num_ctx", "seed",
               "temperature", "top_k", "stop", "repeat_last_n", "text"]  # fmt: skip
nested_objects = st.recursive(
    st.dictionaries(st.sampled_from(NESTED_KEYS), values, max_size=4),
    lambda inner: st.dictionaries(
        st.sampled_from(NESTED_KEYS), st.one_of(inner, st.lists(inner, max_size=3)), max_size=4
    ),
    max_leaves=10,
)


@st.composite
def hostile_bodies(draw: st.DrawFn, path: str) -> bytes:
    """A body for ``path``: usually the route's own fields with hostile values, else
    something that is not the route's JSON at all."""
    kind = draw(st.sampled_from(["fields", "fields", "fields", "top", "bytes", "truncated"]))
    if kind == "top":
        return dumps(draw(st.one_of(values, st.lists(values, max_size=3))))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    body: dict[str, Any] = {"model": MODEL}
    for field in draw(st.lists(st.sampled_from(HOSTILE_ROUTES[path]), max_size=4, unique=True)):
        body[field] = draw(st.one_of(values, nested_objects, st.lists(nested_objects, max_size=2)))
    if draw(st.booleans()):
        body[draw(st.sampled_from(HOSTILE_ROUTES[path]))] = deeply_nested(
            draw(st.integers(1, 3000))
        )
    raw = dumps(constrained(path, body))
    if kind == "truncated":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    return raw


def deeply_nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value] if depth % 2 else {"items": value, "type": "array"}
    return value


@pytest.mark.parametrize("path", sorted(HOSTILE_ROUTES))
def test_hostile_json_bodies_never_get_a_server_error(server: Server, path: str) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:

        @settings(FUZZ_SETTINGS, max_examples=MAX_HOSTILE_EXAMPLES // 4)
        @given(body=hostile_bodies(path))
        def post(body: bytes) -> None:
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            assert_handled("POST", path, response.status_code, response.content)

        post()


# -- shared checks ----------------------------------------------------------------------


def constrained(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Point generation at the tiny model with a short answer, keep the registered name
    from being deleted or overwritten; every other field stays as generated."""
    body = dict(body)
    if path.startswith(("/v1/", "/tokenize", "/detokenize", "/api/generate", "/api/chat",
                        "/api/embed")):  # fmt: skip
        body["model"] = MODEL
    if path in ("/v1/completions", "/v1/chat/completions"):
        for key in ("max_tokens", "max_completion_tokens"):
            body[key] = short(body.get(key))
    if path in ("/api/generate", "/api/chat"):
        options = body.get("options")
        if options is None or isinstance(options, dict):
            body["options"] = {
                **(options or {}),
                "num_predict": short((options or {}).get("num_predict")),
            }
    if path in ("/api/delete", "/api/create") and MODEL in (body.get("model"), body.get("name")):
        body["model"] = body["name"] = "fuzz-other"
    if path == "/api/copy" and body.get("destination") == MODEL:
        body["destination"] = "fuzz-other"
    return body


def short(value: Any) -> Any:
    """A token budget of at most MAX_TOKENS, unless validation refuses it anyway."""
    if isinstance(value, bool) or not isinstance(value, int):
        return MAX_TOKENS if value is None else value
    if value in (-1, -2) or MAX_TOKENS < value < INT64_LIMIT:
        return MAX_TOKENS  # Ollama's -1/-2 and large budgets would run to the context.
    return value


def dumps(value: Any) -> bytes:
    """JSON as Python writes it: NaN and Infinity as bare tokens, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


def assert_handled(method: str, path: str, status: int, content: bytes) -> None:
    where = f"{method} {path} -> {status}: {content[:300]!r}"
    if status == 503:
        assert json.loads(content)["error"]["code"] == "queue_full", where
        return
    assert status < 500, where
    if status >= 400:
        error = json.loads(content)["error"]
        message = error if isinstance(error, str) else error["message"]
        assert isinstance(message, str) and message, where


def assert_alive(server: Server) -> None:
    assert server.process.poll() is None, server.log()
    assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200
    answer = httpx.post(
        f"{server.base_url}/v1/completions",
        json={"model": MODEL, "prompt": "hello", "max_tokens": 8, "temperature": 0},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] >= 1


def test_the_server_is_alive_after_the_fuzz(server: Server) -> None:
    assert_alive(server)

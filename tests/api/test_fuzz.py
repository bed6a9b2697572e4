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
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.config import SchemathesisConfig

from server_helpers import Server, running_server

#: The served name (``--served-model-name``) every generation request is pointed at.
MODEL = "tiny"
#: Examples per route: from the schema (schemathesis) and hostile bodies (hypothesis).
MAX_EXAMPLES = 40
MAX_HOSTILE_EXAMPLES = 40
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
        yield server


#: Every route, as the server's OpenAPI schema lists them (a test keeps this list true).
ROUTES = [
    ("GET", "/v1/models"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"), ("POST", "/tokenize"), ("POST", "/detokenize"),
    ("POST", "/api/generate"), ("POST", "/api/chat"), ("POST", "/api/embed"),
    ("POST", "/api/embeddings"), ("GET", "/"), ("HEAD", "/"), ("GET", "/api/version"),
    ("GET", "/api/tags"), ("GET", "/api/ps"), ("POST", "/api/show"), ("POST", "/api/pull"),
    ("DELETE", "/api/delete"), ("POST", "/api/copy"), ("POST", "/api/create"),
    ("GET", "/health"), ("GET", "/metrics"), ("GET", "/v1/models/{model}"),
    ("POST", "/v1/responses"), ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"), ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"), ("POST", "/v1/rerank"), ("POST", "/rerank"),
    ("POST", "/v1/score"),
]  # fmt: skip


@pytest.fixture(scope="module")
def api_schema(server: Server) -> BaseSchema:
    raw = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
    config = SchemathesisConfig.from_dict({"base-url": server.base_url})
    return schemathesis.openapi.from_dict(raw, config=config)


def test_every_route_is_fuzzed(api_schema: BaseSchema) -> None:
    operations = {
        (op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())
    }
    assert operations == set(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_generated_requests_never_get_a_server_error(
    api_schema: BaseSchema, server: Server, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    cases = operation.as_strategy(GenerationMode.POSITIVE)
    if operation.body:
        cases |= operation.as_strategy(GenerationMode.NEGATIVE)

    with httpx.Client(timeout=60) as client:

        @FUZZ_SETTINGS
        @given(case=cases)
        def call(case: Case) -> None:
            if isinstance(case.body, dict):
                case.body = constrained(path, case.body)
            assert_handled(method, path, send(client, case, server.base_url))

        call()


def send(client: httpx.Client, case: Case, base_url: str) -> httpx.Response:
    """The case's request, sent whole and read whole (its body as Python writes JSON)."""
    request = case.as_transport_kwargs(base_url=base_url)
    content = request.get("data")
    if "json" in request:
        content = dumps(request["json"])
    return client.request(
        request["method"],
        request["url"],
        params=request.get("params"),
        headers=request["headers"],
        content=content.encode() if isinstance(content, str) else content,
    )


# -- hostile bodies ---------------------------------------------------------------------

#: Each route's hostile-body test starts from a valid body and garbles its fields.
HOSTILE_ROUTES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "/v1/completions": ({"prompt": "hi"}, [
        "prompt", "max_tokens", "n", "stop", "logit_bias", "logprobs", "echo", "seed",
        "temperature", "top_p", "top_k", "stream", "stream_options", "response_format",
        "keep_alive", "stop_token_ids", "suffix"]),
    "/v1/chat/completions": ({"messages": [{"role": "user", "content": "hi"}]}, [
        "messages", "max_tokens", "max_completion_tokens", "tools", "tool_choice",
        "response_format", "logprobs", "top_logprobs", "stream", "n", "stop", "seed",
        "keep_alive", "logit_bias"]),
    "/v1/embeddings": ({"input": "hi"}, ["input", "encoding_format", "dimensions", "keep_alive"]),
    "/tokenize": ({"prompt": "hi"}, [
        "prompt", "messages", "tools", "add_special_tokens", "add_generation_prompt"]),
    "/detokenize": ({"tokens": [1, 2]}, ["tokens"]),
    "/api/generate": ({"prompt": "hi", "stream": False}, [
        "prompt", "system", "template", "context", "raw", "format", "options", "keep_alive",
        "images", "suffix", "stream", "think"]),
    "/api/chat": ({"messages": [{"role": "user", "content": "hi"}], "stream": False}, [
        "messages", "tools", "format", "options", "keep_alive", "stream", "think"]),
    "/api/embed": ({"input": "hi"}, ["input", "truncate", "options", "keep_alive", "dimensions"]),
    "/api/show": ({}, ["model", "name", "verbose"]),
    "/api/create": ({"model": "fuzz-new", "from": MODEL, "stream": False}, [
        "model", "from", "modelfile", "parameters", "template", "system", "messages", "license",
        "files", "quantize", "stream"]),
    "/api/copy": ({"source": MODEL, "destination": "fuzz-copy"}, ["source", "destination"]),
    "/v1/responses": ({"input": "hi"}, [
        "input", "instructions", "tools", "tool_choice", "text", "max_output_tokens", "stream",
        "previous_response_id", "store", "temperature", "parallel_tool_calls", "reasoning"]),
    "/v1/messages": ({"max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}, [
        "messages", "system", "tools", "tool_choice", "stop_sequences", "max_tokens",
        "stream", "temperature", "top_k", "thinking"]),
    "/v1/messages/count_tokens": ({"messages": [{"role": "user", "content": "hi"}]}, [
        "messages", "system", "tools", "thinking"]),
    "/v1/rerank": ({"query": "q", "documents": ["d"]}, ["query", "documents", "top_n"]),
    "/v1/score": ({"text_1": "q", "text_2": "d"}, ["text_1", "text_2"]),
}  # fmt: skip

ODD_NUMBERS = [2**70, -(2**70), 2**63, 2**64, -1, 0, 10**17, -(2**63) - 1, 1e300, -0.0]
numbers = st.one_of(st.integers(), st.sampled_from(ODD_NUMBERS), st.floats())
texts = st.one_of(st.text(max_size=20), st.sampled_from(["", "\ud800", "\x00", "x" * 2000]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(ODD_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "\x00", "\ud800", "a\udfffb", "é" * 3, "{{ .Prompt }}", "nan",
                     "-1", "1e999", "5m", "-5m", "hf.co/x/y", "../../etc/passwd",
                     "~nobody/x.gguf", "x" * 300, "json", "required", "auto", "function",
                     "user", "#/$defs/a", "object", "array", "string", "integer"]),
    st.text(max_size=20),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
#: JSON schemas of the right shape with wrong insides (response_format, format, tools).
SCHEMA_KEYS = ["type", "properties", "items", "anyOf", "enum", "const", "$ref", "$defs",
               "definitions", "required", "minimum", "maximum", "exclusiveMinimum",
               "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
               "additionalProperties"]  # fmt: skip
schemas = st.recursive(
    st.dictionaries(st.sampled_from(SCHEMA_KEYS), values, max_size=3),
    lambda inner: st.dictionaries(
        st.sampled_from(SCHEMA_KEYS),
        st.one_of(inner, st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner)),
        max_size=3,
    ),
    max_leaves=8,
)
calls = st.fixed_dictionaries(
    {}, optional={"function": st.one_of(values, st.fixed_dictionaries(
        {}, optional={"name": values, "arguments": st.one_of(values, st.just('{"a": 1}'))}))}
)  # fmt: skip
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), values)},
        optional={"content": st.one_of(values, st.lists(st.fixed_dictionaries(
                      {"type": st.one_of(st.just("text"), values)}, optional={"text": values}))),
                  "tool_calls": st.one_of(values, st.lists(calls, max_size=2)),
                  "name": values, "images": values},
    ),
    max_size=3,
)  # fmt: skip
tools = st.lists(
    st.fixed_dictionaries({"type": st.just("function")}, optional={"function": st.one_of(
        values, st.fixed_dictionaries({"name": st.one_of(st.just("f"), values)},
                                      optional={"parameters": st.one_of(schemas, values)}))}),
    max_size=3,
)  # fmt: skip
OPTION_KEYS = ["num_predict", "num_ctx", "seed", "temperature", "top_k", "top_p", "min_p",
               "stop", "repeat_last_n", "repeat_penalty", "presence_penalty",
               "mirostat"]  # fmt: skip
ODD_NAMES = [MODEL, "gemma3:270m", "fuzz-new", "hf.co/x/y", "hf.co/x/y:Q4_K_M", "x:y:z",
             "/dev/zero", "../../etc/passwd", "~nobody/x.gguf", "a" * 300, "a/" * 200,
             "https://x/y:latest"]  # fmt: skip
MODELFILE_LINES = [f"FROM {MODEL}", "FROM gemma3:270m", "FROM /etc", "PARAMETER seed -1",
                   "PARAMETER num_predict 99999999999999999999", "PARAMETER temperature nan",
                   'PARAMETER stop ""', "PARAMETER num_ctx 0", "TEMPLATE {{ 1/0 }}{{ messages }}",
                   'TEMPLATE """{{ .Prompt }}"""', "SYSTEM x", 'SYSTEM """x', "MESSAGE user hi",
                   "MESSAGE bogus x", "LICENSE x", "ADAPTER x"]  # fmt: skip
names = st.one_of(texts, st.sampled_from(ODD_NAMES))
modelfiles = st.lists(st.one_of(texts, st.sampled_from(MODELFILE_LINES)), max_size=5).map("\n".join)
#: Fields whose insides routes read, each with values of roughly the right shape.
SHAPED: dict[str, st.SearchStrategy[Any]] = {
    **{name: names for name in ("model", "name", "from", "source", "destination")},
    "modelfile": modelfiles,
    "messages": messages,
    "tools": tools,
    "tool_choice": st.one_of(values, st.fixed_dictionaries(
        {"type": st.just("function")}, optional={"function": st.one_of(
            values, st.fixed_dictionaries({"name": st.one_of(st.just("f"), values)}))})),
    "response_format": st.one_of(values, st.fixed_dictionaries(
        {"type": st.sampled_from(["json_schema", "json_object", "text"])},
        optional={"json_schema": st.one_of(values, st.fixed_dictionaries(
            {}, optional={"schema": st.one_of(schemas, values)}))})),
    "format": st.one_of(schemas, values, st.just("json")),
    "options": st.dictionaries(st.sampled_from(OPTION_KEYS), values, max_size=4),
    "parameters": st.dictionaries(st.sampled_from(OPTION_KEYS), values, max_size=3),
    "logit_bias": st.dictionaries(st.one_of(st.text(max_size=4), st.just("1")), values),
    "stop": st.one_of(texts, st.lists(texts, max_size=3)),
    "prompt": st.one_of(texts, st.lists(texts, max_size=3), st.lists(numbers, max_size=3),
                        st.lists(st.lists(numbers, max_size=3), max_size=2)),
    "keep_alive": st.one_of(numbers, st.sampled_from(["5m", "-1", "nan", "inf", "1e400h", ""])),
    **{name: st.lists(numbers, max_size=3) for name in ("tokens", "context", "stop_token_ids")},
    **{name: numbers for name in ("max_tokens", "max_completion_tokens", "n", "seed", "top_k",
                                  "logprobs", "top_logprobs", "temperature", "top_p",
                                  "dimensions")},
}  # fmt: skip
SHAPED["input"] = SHAPED["prompt"]


@st.composite
def hostile_bodies(draw: st.DrawFn, path: str) -> bytes:
    """A body for ``path``: usually the route's own fields with hostile values, else
    something that is not the route's JSON at all."""
    kind = draw(st.sampled_from(["fields"] * 6 + ["top", "bytes", "truncated", "deep"]))
    if kind == "top":
        return dumps(draw(st.one_of(values, st.lists(values, max_size=3))))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    base, fields = HOSTILE_ROUTES[path]
    body: dict[str, Any] = {"model": MODEL, **base}
    for field in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True)):
        shaped = SHAPED.get(field)
        body[field] = draw(values if shaped is None or draw(st.integers(0, 3)) == 0 else shaped)
    if kind != "deep":
        raw = dumps(constrained(path, body))
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))] if kind == "truncated" else raw
    # Nesting deeper than json.dumps writes (and than the parser reads): spliced in as text.
    body[draw(st.sampled_from(fields))] = DEEP
    depth = draw(st.one_of(st.integers(1, 100), st.integers(100, 1200)))
    return dumps(constrained(path, body)).replace(
        dumps(DEEP), deeply_nested(depth, draw(st.booleans()))
    )


DEEP = "<deeply nested>"


def deeply_nested(depth: int, as_schema: bool) -> bytes:
    """``[[[...]]]``, or a JSON schema of arrays of arrays of ... ``depth`` deep."""
    if as_schema:
        return b'{"type": "array", "items": ' * depth + b"{}" + b"}" * depth
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", sorted(HOSTILE_ROUTES))
def test_hostile_json_bodies_never_get_a_server_error(server: Server, path: str) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:

        @settings(FUZZ_SETTINGS, max_examples=MAX_HOSTILE_EXAMPLES)
        @given(body=hostile_bodies(path))
        def post(body: bytes) -> None:
            headers = {"content-type": "application/json"}
            assert_handled("POST", path, client.post(path, content=body, headers=headers))

        post()


# -- what the fuzz found ----------------------------------------------------------------

BIG = str(2**70)
#: Requests that were 500s (or, for keep_alive, broke /api/ps and the model until a
#: restart), kept as fixed examples: the fuzz draws anew each run, these run every time.
FOUND = [
    ("/v1/completions", f'{{"prompt": "x", "max_tokens": {BIG}}}', 400),
    ("/v1/completions", f'{{"prompt": "x", "seed": {BIG}}}', 400),
    ("/v1/completions", f'{{"prompt": "x", "top_k": {BIG}}}', 400),
    ("/v1/completions", f'{{"prompt": [{BIG}]}}', 400),
    ("/detokenize", f'{{"tokens": [{BIG}]}}', 400),
    ("/api/generate", '{"prompt": "x", "options": {"num_predict": 2e300}}', 400),
    ("/api/generate", f'{{"prompt": "x", "options": {{"repeat_last_n": {BIG}}}}}', 400),
    ("/v1/completions", '{"prompt": "x", "keep_alive": NaN}', 400),
    ("/api/generate", '{"keep_alive": "nan"}', 400),
    ("/api/generate", '{"keep_alive": 1e300}', 200),
    ("/v1/completions", '{"prompt": "x", "response_format": {"type": "json_schema", '
     '"json_schema": 5}}', 400),
    ("/v1/chat/completions", '{"messages": [{"role": "assistant", "content": "x", '
     '"tool_calls": [{"function": 5}]}]}', 400),
    ("/tokenize", '{"messages": [{"role": "assistant", "tool_calls": [{"function": 5}]}]}', 400),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "x"}], "tools": '
     '[{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", '
     '"function": 5}}', 400),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "x"}], "tools": '
     '[{"type": "function", "function": 5}], "tool_choice": "required"}', 400),
    ("/api/generate", '{"prompt": "x", "format": {"anyOf": 5}}', 400),
    ("/api/generate", '{"prompt": "x", "format": {"type": "object", "properties": 5}}', 400),
    ("/api/generate", '{"prompt": "x", "format": {"type": "object", "properties": {"a": {}}, '
     '"required": [[1]]}}', 400),
    ("/api/generate", '{"prompt": "x", "format": {"$defs": 5}}', 400),
    ("/api/generate", '{"prompt": "x", "format": {"$ref": 5}}', 400),
    ("/api/generate", '{"prompt": "x", "format": {"enum": 5}}', 400),
    ("/api/generate", '{"prompt": "x", "format": {"type": {"a": 1}}}', 400),
    ("/api/generate", f'{{"prompt": "x", "format": {{"type": "integer", "minimum": {BIG}}}}}',
     400),
    ("/api/generate", '{"prompt": "x", "format": {"type": "integer", "exclusiveMinimum": "a"}}',
     400),
    ("/api/chat", '{"messages": [{"role": "user", "content": "x"}], "format": '
     + deeply_nested(500, as_schema=True).decode() + "}", 400),
    ("/v1/completions", '{"prompt": "\\ud800"}', 400),
    ("/api/show", '{"model": "\\udfff"}', 400),
    ("/api/show", '{"model": "' + "%" * 300 + '"}', 404),  # No registry name.
    ("/v1/completions", '{"model": "~nobody/x.gguf", "prompt": "x"}', 404),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status"), FOUND)
def test_what_the_fuzz_found_is_answered_and_breaks_nothing(
    server: Server, path: str, body: str, status: int
) -> None:
    raw = body if '"model"' in body else f'{{"model": "{MODEL}", ' + body.removeprefix("{")
    response = httpx.post(
        f"{server.base_url}{path}",
        content=raw.encode(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == status, response.text
    assert_handled("POST", path, response)
    assert httpx.get(f"{server.base_url}/api/ps", timeout=10).status_code == 200


def test_a_template_that_raises_is_the_request_s_fault(
    server: Server, tiny_model_path: Path
) -> None:
    template = "{{ 1/0 }}{{ messages }}"  # Jinja2 (it names messages), and it divides by 0.
    created = httpx.post(
        f"{server.base_url}/api/create",
        json={"model": "fuzz-raises", "from": str(tiny_model_path), "template": template},
        timeout=60,
    )
    assert created.status_code == 200, created.text
    for path in ("/api/chat", "/v1/chat/completions"):
        response = httpx.post(
            f"{server.base_url}{path}",
            json={"model": "fuzz-raises", "messages": [{"role": "user", "content": "x"}],
                  "stream": False},
            timeout=60,
        )  # fmt: skip
        assert response.status_code == 400, response.text
        assert "could not render" in response.text


# -- shared checks ----------------------------------------------------------------------


def constrained(path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Point generation at the tiny model with a short answer; every other field stays
    as generated (model names included, on the routes that manage models)."""
    body = dict(body)
    if path.startswith(("/v1/", "/tokenize", "/detokenize", "/api/generate", "/api/chat",
                        "/api/embed")):  # fmt: skip
        body["model"] = MODEL
    if path in ("/v1/completions", "/v1/chat/completions", "/v1/messages"):
        for key in ("max_tokens", "max_completion_tokens"):
            body[key] = short(body.get(key))
    if path == "/v1/responses":
        body["max_output_tokens"] = short(body.get("max_output_tokens"))
    if path in ("/api/generate", "/api/chat"):
        options = body.get("options")
        if options is None or isinstance(options, dict):
            body["options"] = {
                **(options or {}),
                "num_predict": short((options or {}).get("num_predict")),
            }
    return body


def short(value: Any) -> Any:
    """A token budget of at most MAX_TOKENS, unless validation refuses it anyway: none,
    Ollama's -1/-2 and large budgets would run to the context."""
    if value is None or value in (-1, -2):
        return MAX_TOKENS
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return MAX_TOKENS if is_number and MAX_TOKENS < value < INT64_LIMIT else value


def dumps(value: Any) -> bytes:
    """JSON as Python writes it: NaN and Infinity as bare tokens, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


def assert_handled(method: str, path: str, response: httpx.Response) -> None:
    """Never a 5xx but a full queue's 503 (the one error with Retry-After); a 4xx says why
    in JSON; a JSON answer parses; a stream ends without a server error in it."""
    status, content = response.status_code, response.content
    where = f"{method} {path} -> {status}: {content[:300]!r}"
    assert status < 500 or (status == 503 and "retry-after" in response.headers), where
    kind = response.headers.get("content-type", "")
    if status >= 400 and method != "HEAD":
        error = json.loads(content)["error"]
        message = error if isinstance(error, str) else error["message"]
        assert isinstance(message, str) and message, where
    elif kind.startswith("application/json"):
        json.loads(content)
    elif kind.startswith("text/event-stream") and path in ("/v1/responses", "/v1/messages"):
        # Their streams end with their own last event, and name errors by type.
        assert content.endswith(b"\n\n"), where
        assert b'"server_error"' not in content and b'"api_error"' not in content, where
    elif kind.startswith("text/event-stream"):
        assert content.endswith(b"data: [DONE]\n\n"), where
        assert b'"type":"server_error"' not in content, where


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

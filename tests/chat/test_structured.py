"""JSON schemas become grammars whose every output validates (real llama.cpp, tiny model)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from llmport.chat.structured import JSON_OBJECT_GRAMMAR, json_schema_grammar
from llmport.config import EngineConfig
from llmport.engines.batching.core import EngineCore
from llmport.engines.llama_cpp.backend import LlamaCppBackend
from llmport.errors import UnsupportedOption
from llmport.types import Output, Request, SamplingParams


def random_schema(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kinds = ["string", "integer", "number", "boolean", "enum", "array", "object", "null"]
    kind = rng.choice(kinds if depth < 2 else kinds[:5])
    if kind == "string":
        return {"type": "string", "minLength": rng.randint(0, 2), "maxLength": rng.randint(2, 6)}
    if kind in ("integer", "number"):
        low = rng.randint(-1000, 1000)
        schema: dict[str, Any] = {"type": kind}
        if rng.random() < 0.8:
            schema["minimum" if rng.random() < 0.5 else "exclusiveMinimum"] = low
        if rng.random() < 0.8:
            schema["maximum"] = low + rng.randint(2, 5000)
        return schema
    if kind == "enum":
        return {"enum": rng.sample(["red", "green", 3, None, True, 'a "q"'], rng.randint(1, 4))}
    if kind == "array":
        return {"type": "array", "items": random_schema(rng, depth + 1),
                "minItems": rng.randint(0, 1), "maxItems": rng.randint(1, 3)}  # fmt: skip
    if kind == "object":
        properties = {f"p{i}": random_schema(rng, depth + 1) for i in range(rng.randint(1, 4))}
        required = [k for k in properties if rng.random() < 0.6]
        return {"type": "object", "properties": properties, "required": required,
                "additionalProperties": False}  # fmt: skip
    return {"type": kind}


def generate(model: Path, grammars: list[str], **params: Any) -> list[tuple[str, str]]:
    config = EngineConfig(max_num_seqs=16, max_num_kv_tokens=4096)
    engine = EngineCore(LlamaCppBackend(model, config), config)
    for i, grammar in enumerate(grammars):
        sampling = SamplingParams(max_tokens=1500, grammar=grammar, seed=i, **params)
        engine.add_request(Request(request_id=str(i), prompt=f"json {i}:", params=sampling))
    outputs: dict[str, list[Output]] = {}
    while engine.has_unfinished_requests:
        for output in engine.step():
            outputs.setdefault(output.request_id, []).append(output)
    engine.close()
    results = []
    for i in range(len(grammars)):
        text = "".join(o.text for o in outputs[str(i)])
        results.append((text, str(outputs[str(i)][-1].finish_reason)))
    return results


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_100_random_schemas_all_produce_valid_json(
    tiny_model_path: Path, temperature: float
) -> None:
    rng = random.Random(7 + int(temperature))
    schemas = [
        {"type": "object", "properties": {"answer": random_schema(rng)}, "required": ["answer"]}
        if i % 3 == 0
        else random_schema(rng)
        for i in range(100)
    ]
    results = generate(
        tiny_model_path, [json_schema_grammar(s) for s in schemas], temperature=temperature
    )
    for schema, (text, reason) in zip(schemas, results, strict=True):
        assert reason == "stop", (schema, text)
        jsonschema.validate(json.loads(text), schema)


def test_refs_and_any_of_and_json_object(tiny_model_path: Path) -> None:
    tree = {
        "$defs": {"node": {"type": "object", "properties": {
            "v": {"type": "integer", "minimum": 0, "maximum": 9},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 1}},
            "required": ["v"]}},
        "$ref": "#/$defs/node",
    }  # fmt: skip
    either = {"anyOf": [{"type": "boolean"}, {"type": "string", "maxLength": 3}]}
    grammars = [json_schema_grammar(tree), json_schema_grammar(either), JSON_OBJECT_GRAMMAR]
    results = generate(tiny_model_path, grammars, temperature=0.0)
    jsonschema.validate(json.loads(results[0][0]), tree)
    jsonschema.validate(json.loads(results[1][0]), either)
    assert isinstance(json.loads(results[2][0]), dict)


@pytest.mark.parametrize(
    ("schema", "feature"),
    [
        ({"type": "string", "pattern": "^a+$"}, "pattern"),
        ({"type": "string", "format": "date-time"}, "format"),
        ({"oneOf": [{"type": "string"}]}, "oneOf"),
        ({"not": {"type": "string"}}, "not"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "additionalProperties"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        (
            {"type": "object", "properties": {"a": {"type": "number", "multipleOf": 2}}},
            "multipleOf",
        ),
        ({"$ref": "https://example.com/schema"}, "$ref"),
    ],
)
def test_unsupported_features_are_named(schema: dict[str, Any], feature: str) -> None:
    with pytest.raises(UnsupportedOption, match=re.escape(feature)):
        json_schema_grammar(schema)

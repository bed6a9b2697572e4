"""Constrained decoding's cost: 16 concurrent streams with and without a JSON schema.

    .venv/bin/python benchmarks/structured.py [--model PATH] [--streams 16] [--max-tokens 96]

Runs the engine in this process on the embedded Gemma 3 270M (vocabulary 262,144).
Each stream asks for a JSON object; the constrained run adds the schema's grammar
(``SamplingParams.grammar``). Output tokens/s counts the tokens actually generated
(a constrained stream ends when its JSON is complete). Also printed: how often the
model's own greedy pick broke the grammar, which is when the engine must mask the
whole vocabulary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from llmport.chat.structured import json_schema_grammar
from llmport.config import EngineConfig
from llmport.engines.batching.core import EngineCore
from llmport.engines.llama_cpp.backend import LlamaCppBackend
from llmport.engines.llama_cpp.grammar import LlamaGrammar
from llmport.store.embedded import default_cache_dir, embedded_model_path
from llmport.types import Request, SamplingParams

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 40},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 4},
        "employed": {"type": "boolean"},
    },
    "required": ["name", "age", "city", "hobbies", "employed"],
    "additionalProperties": False,
}


def run(
    engine: EngineCore, streams: int, max_tokens: int, grammar: str | None
) -> tuple[int, float]:
    engine.reset_prefix_cache()
    for i in range(streams):
        prompt = (f"Person {i}. Write a JSON object describing a fictional person with "
                  f"name, age, city, hobbies and employed.\n")  # fmt: skip
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, grammar=grammar,
                                ignore_eos=grammar is None)  # fmt: skip
        engine.add_request(Request(request_id=str(i), prompt=prompt, params=params))
    started = time.perf_counter()
    num_tokens = 0
    texts: dict[str, str] = {}
    while engine.has_unfinished_requests:
        for output in engine.step():
            num_tokens += len(output.token_ids)
            texts[output.request_id] = texts.get(output.request_id, "") + output.text
    seconds = time.perf_counter() - started
    if grammar is not None:
        for text in texts.values():
            json.loads(text)  # Every constrained output parses.
    return num_tokens, seconds


class CountingGrammar(LlamaGrammar):
    """Counts the full-vocabulary masks (the model's pick was refused)."""

    num_checks = 0
    num_shortlists = 0
    num_masks = 0

    def allows(self, token_id: int) -> bool:
        CountingGrammar.num_checks += 1
        return super().allows(token_id)

    def mask(self, row):  # type: ignore[no-untyped-def]
        CountingGrammar.num_masks += 1
        super().mask(row)

    def best_allowed(self, row, token_ids):  # type: ignore[no-untyped-def]
        CountingGrammar.num_shortlists += 1
        return super().best_allowed(row, token_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = args.model or embedded_model_path(default_cache_dir())
    config = EngineConfig(max_num_seqs=args.streams, max_num_kv_tokens=8192, max_model_len=2048)
    backend = LlamaCppBackend(model, config)
    backend.new_grammar = lambda gbnf: CountingGrammar(  # type: ignore[method-assign]
        backend._vocab, backend.vocab_size, gbnf
    )
    engine = EngineCore(backend, config)
    grammar = json_schema_grammar(SCHEMA)
    run(engine, 2, 8, None)  # Warm-up.
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, rule in (("unconstrained", None), ("json schema", grammar)):
            tokens, seconds = run(engine, args.streams, args.max_tokens, rule)
            best[name] = max(best.get(name, 0.0), tokens / seconds)
            print(
                f"{name:14} {tokens:5d} tokens in {seconds:6.2f}s = {tokens / seconds:7.1f} tok/s"
            )
    ratio = best["json schema"] / best["unconstrained"]
    checks, masks = CountingGrammar.num_checks, CountingGrammar.num_masks
    print(f"\nbest: unconstrained {best['unconstrained']:.1f} tok/s, json schema "
          f"{best['json schema']:.1f} tok/s = {ratio:.2f}x (target >= 0.80x)")  # fmt: skip
    shortlists = CountingGrammar.num_shortlists
    print(f"grammar checks {checks}: model's pick refused {shortlists} "
          f"({shortlists / max(checks, 1):.1%}), full-vocabulary masks {masks}")  # fmt: skip
    engine.close()


if __name__ == "__main__":
    main()

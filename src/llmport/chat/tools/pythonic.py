"""Pythonic (Llama 3.2/4, ToolACE): ``[get_weather(city="Paris"), now()]``.

Parsed with ``ast`` and ``ast.literal_eval``: nothing in the text is ever executed.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from llmport.chat.structured import GrammarBuilder
from llmport.chat.tools.base import Parsed, ToolCall, ToolParser, tool_names


class PythonicParser(ToolParser):
    openers = "["
    incremental = False  # Python keywords, not JSON: the calls are emitted whole.

    def parse(self, text: str) -> Parsed:
        body = text.strip()
        if not body.startswith("[") or not body.endswith("]"):
            return Parsed(text, [])
        try:
            tree = ast.parse(body, mode="eval").body
        except SyntaxError:
            return Parsed(text, [])
        if not isinstance(tree, ast.List) or not tree.elts:
            return Parsed(text, [])
        calls = [_call(node) for node in tree.elts]
        if None in calls:
            return Parsed(text, [])
        return Parsed("", [c for c in calls if c is not None][: self.max_num_calls])

    def call_grammar(self, tools: list[dict[str, Any]], forced: str | None) -> str:
        builder = GrammarBuilder(python=True)
        alternatives = [_call_expr(builder, function) for function in tool_names(tools, forced)]
        call = "( " + " | ".join(alternatives) + " )"
        return builder.render(f'"[" {call} ( ", " {call} ){self.repeat()} "]"')


def _call(node: ast.expr) -> ToolCall | None:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
        return None
    try:
        arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except ValueError:
        return None
    try:
        json.dumps(arguments)
    except TypeError:
        return None  # Sets, tuples as keys...: not JSON.
    return ToolCall.of(node.func.id, arguments)


def _call_expr(builder: GrammarBuilder, function: dict[str, Any]) -> str:
    """``name(k=v, ...)``: required keywords in order, then optional ones."""
    schema = function.get("parameters") or {}
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    where = f"#/tools/{function['name']}/parameters"
    parts = [
        (key, f'"{key}=" {builder.visit(value, f"{where}/properties/{key}")}')
        for key, value in properties.items()
        if key.isidentifier()
    ]
    fixed = [expr for key, expr in parts if key in required]
    optional = [expr for key, expr in parts if key not in required]
    if fixed:
        body = ' ", " '.join(fixed) + "".join(f' ( ", " {e} )?' for e in optional)
    elif optional:
        alternatives = [
            e + "".join(f' ( ", " {o} )?' for o in optional[i + 1 :])
            for i, e in enumerate(optional)
        ]
        body = f"( {' | '.join(alternatives)} )?"
    else:
        body = ""
    return f'"{function["name"]}(" {body} ")"'

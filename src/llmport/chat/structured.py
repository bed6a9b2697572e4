"""JSON schemas to llama.cpp grammars (GBNF), so constrained output always parses.

Written for sound output: every string the grammar admits validates against the
schema. Where a schema feature cannot be expressed that way it is refused with
UnsupportedOption naming the feature and where it is, never silently dropped.
Repetition is bounded everywhere (whitespace, digits) so a constrained model
cannot loop forever inside one value.

Strings are printable ASCII with JSON escapes (``\u00e9`` for é). llama.cpp's grammar
engine reads code points without checking that a token's bytes are valid UTF-8, so a
raw non-ASCII character class would let byte tokens through that decode to more (or
other) characters than the grammar counted; escapes keep every length bound exact.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from llmport.errors import InvalidParameter, UnsupportedOption

#: Keywords that only annotate a schema: they constrain nothing.
_ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly",
})  # fmt: skip
_SUPPORTED = {
    "object": {"type", "properties", "required", "additionalProperties"},
    "array": {"type", "items", "minItems", "maxItems"},
    "string": {"type", "minLength", "maxLength"},
    "integer": {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "number": {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "boolean": {"type"},
    "null": {"type"},
}
_BASE_RULES = r"""
ws ::= [ ]?
char ::= [ !#-\[\]-~] | "\\" ["\\/bfnrt] | "\\u" [0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3}
string ::= "\"" char{0,256} "\""
int ::= "-"? ("0" | [1-9] [0-9]{0,15})
number ::= int ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?
boolean ::= "true" | "false"
null ::= "null"
value ::= object | array | string | number | boolean | null
object ::= "{" ws ( string ws ":" ws value ( "," ws string ws ":" ws value ){0,63} )? ws "}"
array ::= "[" ws ( value ( "," ws value ){0,63} )? ws "]"
"""
#: Largest schema (as JSON) compiled per request; compiling runs on the request's time.
MAX_SCHEMA_BYTES = 64 * 1024
#: Largest bound on a repetition (``maxLength``, ``maxItems``): llama.cpp expands each
#: repetition into that many rules when it parses the grammar.
MAX_REPEAT = 4096
MAX_OPTIONAL_PROPERTIES = 64
#: Deepest nesting of schemas inside schemas (the builder recurses once per level).
MAX_DEPTH = 64
#: Largest magnitude of a numeric bound: the grammar's numbers have at most 16 digits.
MAX_BOUND = 10**16

JSON_OBJECT_GRAMMAR = "root ::= object\n" + _BASE_RULES


def response_grammar(kind: str, schema: Any = None) -> str | None:
    """The grammar for an OpenAI ``response_format`` type or an Ollama ``format``."""
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_GRAMMAR
    if kind == "json_schema":
        return json_schema_grammar(schema)
    raise UnsupportedOption(f"response_format type {kind!r} is not known", param="response_format")


def json_schema_grammar(schema: Any) -> str:
    """The GBNF grammar of ``schema``; UnsupportedOption for what it cannot express."""
    check_schema_size(schema, "response_format")
    builder = GrammarBuilder()
    return builder.render(builder.schema(schema, "#"))


class GrammarBuilder:
    """Builds one grammar from one or more schemas (tool calls put several in one).

    ``python=True`` writes booleans and null as Python does (pythonic tool calls).
    """

    def __init__(self, python: bool = False) -> None:
        self.defs: dict[str, Any] = {}
        self.rules: list[str] = []
        self.ref_rules: dict[str, str] = {}
        self.python = python
        self.depth = 0

    def render(self, root: str) -> str:
        base = _BASE_RULES
        if self.python:
            base = base.replace('"true" | "false"', '"True" | "False"').replace(
                'null ::= "null"', 'null ::= "None"'
            )
        return f"root ::= {root}\n" + "".join(self.rules) + base

    def schema(self, schema: Any, where: str) -> str:
        """The expression for a top-level schema (its $defs become this grammar's)."""
        if not isinstance(schema, dict):
            _refuse("a schema that is not an object", where)
        for key in ("definitions", "$defs"):
            self.defs.update(_keyword(schema, key, dict, where))
        return self.visit(schema, where)

    def visit(self, schema: Any, where: str) -> str:
        """A GBNF expression for ``schema`` (found at JSON pointer ``where``)."""
        if self.depth >= MAX_DEPTH:
            _refuse(f"schemas nested more than {MAX_DEPTH} deep", where)
        self.depth += 1
        try:
            return self._visit(schema, where)
        finally:
            self.depth -= 1

    def _visit(self, schema: Any, where: str) -> str:
        if schema is True or schema == {}:
            return "value"
        if not isinstance(schema, dict):
            _refuse(f"a schema that is {schema!r}", where)
        if "$ref" in schema:
            return self._ref(schema, where)
        if "enum" in schema or "const" in schema:
            return self._literals(schema, where)
        if "anyOf" in schema:
            _only(schema, {"anyOf"}, where)
            options = _keyword(schema, "anyOf", list, where)
            return _group(" | ".join(self.visit(s, f"{where}/anyOf/{i}")
                                     for i, s in enumerate(options)))  # fmt: skip
        kinds = schema.get("type") or _implied_type(schema)
        if kinds is None:
            _only(schema, set(), where)
            return "value"
        if not isinstance(kinds, str | list) or not all(isinstance(k, str) for k in kinds):
            _refuse(f"type {kinds!r}", where)
        if isinstance(kinds, list):
            parts = [self.visit({**schema, "type": k}, where) for k in kinds]
            return _group(" | ".join(parts))
        if kinds not in _SUPPORTED:
            _refuse(f"type {kinds!r}", where)
        _only(schema, _SUPPORTED[kinds], where)
        return getattr(self, f"_{kinds}")(schema, where)  # type: ignore[no-any-return]

    def _ref(self, schema: dict[str, Any], where: str) -> str:
        _only(schema, {"$ref"}, where)
        ref = _keyword(schema, "$ref", str, where)
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix) and ref[len(prefix) :] in self.defs:
                name = "ref-" + "".join(c if c.isalnum() else "-" for c in ref[len(prefix) :])
                if ref not in self.ref_rules:
                    self.ref_rules[ref] = name
                    body = self.visit(self.defs[ref[len(prefix) :]], ref)
                    self.rules.append(f"{name} ::= {body}\n")
                return name
        _refuse(f"$ref {ref!r} (only #/$defs/... and #/definitions/...)", where)

    def literal(self, value: Any) -> str:
        """A JSON (or Python, for pythonic grammars) literal."""
        if self.python and (value is None or isinstance(value, bool)):
            return _literal(repr(value))
        return _literal(json.dumps(value, ensure_ascii=False))

    def _literals(self, schema: dict[str, Any], where: str) -> str:
        _only(schema, {"enum", "const", "type"}, where)
        values = _keyword(schema, "enum", list, where) if "enum" in schema else [schema["const"]]
        if not values:
            _refuse("an empty enum", where)
        return _group(" | ".join(self.literal(v) for v in values))

    def _object(self, schema: dict[str, Any], where: str) -> str:
        properties: dict[str, Any] = _keyword(schema, "properties", dict, where)
        extra = schema.get("additionalProperties", True)
        if not isinstance(extra, bool):
            _refuse("additionalProperties with a schema", where)
        if not properties:
            return "object" if extra else '"{" ws "}"'
        names = _keyword(schema, "required", list, where)
        if not all(isinstance(name, str) for name in names):
            _refuse(f"required {names!r} (a list of property names is needed)", where)
        required = [k for k in properties if k in set(names)]
        missing = set(names) - set(properties)
        if missing:
            _refuse(f"required properties without a schema: {sorted(missing)}", where)
        members = {
            key: f'{_literal(json.dumps(key, ensure_ascii=False))} ws ":" ws '
            + self.visit(value, f"{where}/properties/{key}")
            for key, value in properties.items()
        }
        optional = [k for k in properties if k not in required]
        if not required and len(optional) > MAX_OPTIONAL_PROPERTIES:
            # Without a required member, each optional one starts an alternative that
            # lists those after it: the grammar grows with the square of their number.
            _refuse(
                f"more than {MAX_OPTIONAL_PROPERTIES} properties in an object with none required",
                where,
            )
        if required:
            body = ' "," ws '.join(members[k] for k in required)
            body += "".join(f' ( "," ws {members[k]} )?' for k in optional)
        else:
            alternatives = [
                members[k] + "".join(f' ( "," ws {members[o]} )?' for o in optional[i + 1 :])
                for i, k in enumerate(optional)
            ]
            body = f"( {' | '.join(alternatives)} )?"
        return f'"{{" ws {body} ws "}}"'

    def _array(self, schema: dict[str, Any], where: str) -> str:
        item = self.visit(schema.get("items", True), f"{where}/items")
        low = _count(schema, "minItems", 0, where)
        high = _count(schema, "maxItems", 64, where)
        if high < low:
            _refuse("maxItems below minItems", where)
        if high == 0:
            return '"[" ws "]"'
        rest = f'( "," ws {item} ){{{max(0, low - 1)},{high - 1}}}'
        inner = f"{item} {rest}"
        return f'"[" ws {inner if low else f"( {inner} )?"} ws "]"'

    def _string(self, schema: dict[str, Any], where: str) -> str:
        low = _count(schema, "minLength", 0, where)
        high = _count(schema, "maxLength", 256, where)
        if high < low:
            _refuse("maxLength below minLength", where)
        return f'"\\"" char{{{low},{high}}} "\\""'

    def _integer(self, schema: dict[str, Any], where: str) -> str:
        low, high = _bounds(schema, where, integral=True)
        if low is None and high is None:
            return "int"
        if low is not None and high is not None and low > high:
            _refuse("an empty integer range", where)
        return _int_range(low, high)

    def _number(self, schema: dict[str, Any], where: str) -> str:
        low, high = _bounds(schema, where, integral=False)
        if low is None and high is None:
            return "number"
        # Integers inside the bounds: every one validates (a narrower, sound choice).
        ints = _int_bounds(low, high)
        if ints[0] is not None and ints[1] is not None and ints[0] > ints[1]:
            assert low is not None and high is not None
            return _literal(repr((low + high) / 2))
        return _int_range(*ints)

    def _boolean(self, schema: dict[str, Any], where: str) -> str:
        return "boolean"

    def _null(self, schema: dict[str, Any], where: str) -> str:
        return "null"


def check_schema_size(schema: Any, param: str) -> None:
    """Refuse a schema too large to compile on a request's time (before compiling it)."""
    size = len(json.dumps(schema, default=str))
    if size > MAX_SCHEMA_BYTES:
        raise InvalidParameter(
            f"{param}: the schema is {size} bytes of JSON; at most {MAX_SCHEMA_BYTES} are accepted",
            param=param,
        )


def _count(schema: dict[str, Any], key: str, default: int, where: str) -> int:
    """A length or item bound: a whole number no larger than a grammar can repeat."""
    value = schema.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _refuse(f"{key} {value!r} (a whole number >= 0 is needed)", where)
    if value > MAX_REPEAT:
        _refuse(f"{key} {value} (llama.cpp grammars repeat at most {MAX_REPEAT} times)", where)
    return value


_JSON_NAMES: dict[type[Any], str] = {dict: "object", list: "array", str: "string"}


def _keyword(schema: dict[str, Any], key: str, kind: type[Any], where: str) -> Any:
    """``schema[key]`` (an empty ``kind`` when absent), refused unless it is a ``kind``."""
    value = schema.get(key, kind())
    if not isinstance(value, kind):
        _refuse(f"{key} {value!r} (a JSON {_JSON_NAMES[kind]} is needed)", where)
    return value


def _implied_type(schema: dict[str, Any]) -> str | None:
    """The type a schema without ``type`` means by its keywords (``properties``: object)."""
    for kind in ("object", "array", "string", "number"):
        if set(schema) & (_SUPPORTED[kind] - {"type"}):
            return kind
    return None


def _bounds(
    schema: dict[str, Any], where: str, integral: bool
) -> tuple[float | None, float | None]:
    """(lowest, highest) allowed value; exclusive bounds become inclusive ones."""
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = schema.get(key, 0)
        is_number = isinstance(bound, int | float) and not isinstance(bound, bool)
        if not (is_number and -MAX_BOUND < bound < MAX_BOUND):  # NaN and infinities too.
            _refuse(f"a bound of {bound!r}", where)
    low = schema.get("minimum")
    high = schema.get("maximum")
    step = 1 if integral else 1e-9
    if "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"]
        low = max(low, value + step) if low is not None else value + step
    if "exclusiveMaximum" in schema:
        value = schema["exclusiveMaximum"]
        high = min(high, value - step) if high is not None else value - step
    if integral:
        return (None if low is None else math.ceil(low), None if high is None else math.floor(high))
    return low, high


def _int_bounds(low: float | None, high: float | None) -> tuple[int | None, int | None]:
    return (None if low is None else math.ceil(low), None if high is None else math.floor(high))


def _int_range(low: float | None, high: float | None) -> str:
    """Integers in [low, high] (either side open), as digit patterns."""
    lo = None if low is None else int(low)
    hi = None if high is None else int(high)
    parts = []
    if lo is None or lo < 0:  # Negative side: "-" then magnitudes.
        neg_hi = None if lo is None else -lo  # Largest magnitude.
        neg_lo = 1 if hi is None or hi >= 0 else -hi
        parts.append(f'"-" {_nat_range(neg_lo, neg_hi)}')
    if hi is None or hi >= 0:
        parts.append(_nat_range(max(lo or 0, 0), hi))
    return _group(" | ".join(parts))


def _nat_range(low: int, high: int | None) -> str:
    """Natural numbers in [low, high], no leading zeros; high None means up to 16 digits."""
    if high is None:
        top = 10 ** max(len(str(low)), 1) - 1
        tail = f"[1-9] [0-9]{{{len(str(low))},15}}"
        return _group(f"{_nat_range(low, top)} | {tail}")
    alternatives = []
    for digits in range(len(str(low)), len(str(high)) + 1):
        a = max(low, 10 ** (digits - 1) if digits > 1 else 0)
        b = min(high, 10**digits - 1)
        if a <= b:
            alternatives += _same_length(str(a), str(b))
    return _group(" | ".join(alternatives))


def _same_length(a: str, b: str) -> list[str]:
    """Patterns for the numbers from a to b, both written with the same number of digits."""
    if not a:
        return [""]
    if a == "0" * len(a) and b == "9" * len(b):
        return [f"[0-9]{{{len(a)}}}"]
    if a[0] == b[0]:
        return [f'"{a[0]}" {rest}'.strip() for rest in _same_length(a[1:], b[1:])]
    out = [f'"{a[0]}" {rest}'.strip() for rest in _same_length(a[1:], "9" * (len(a) - 1))]
    if int(b[0]) - int(a[0]) > 1:
        middle = f"[{int(a[0]) + 1}-{int(b[0]) - 1}]"
        out.append(f"{middle} [0-9]{{{len(a) - 1}}}" if len(a) > 1 else middle)
    out += [f'"{b[0]}" {rest}'.strip() for rest in _same_length("0" * (len(b) - 1), b[1:])]
    return out


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _group(expression: str) -> str:
    return f"( {expression} )"


def _only(schema: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = set(schema) - allowed - _ANNOTATIONS - {"$defs", "definitions"}
    if extra:
        _refuse(f"keyword {sorted(extra)[0]!r}", where)


def _refuse(what: str, where: str) -> NoReturn:
    raise UnsupportedOption(
        f"JSON schema feature not supported: {what} at {where}", param="response_format"
    )

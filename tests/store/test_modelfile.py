"""parse_modelfile reads Ollama's Modelfile syntax; render() writes text that parses back equal."""

from __future__ import annotations

import pytest

from llmport.errors import InvalidParameter
from llmport.store.modelfile import Modelfile, parse_modelfile

FULL = '''# Modelfile for a Mario assistant
FROM llama3.2:1b
  # an indented comment

parameter temperature 0.7
PARAMETER num_ctx 4096
PARAMETER stop "<|eot_id|>"
PARAMETER stop <|end_of_text|>
PARAMETER stop "say \\"bye\\""
TEMPLATE """{{ if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>{{ end }}"""
SYSTEM "You are Mario from super mario bros."
MESSAGE user Is Toronto in Canada?
MESSAGE assistant "yes"
LICENSE """MIT License
Copyright (c) the authors"""
LICENSE Apache-2.0
'''


def test_a_full_modelfile() -> None:
    assert parse_modelfile(FULL) == Modelfile(
        from_="llama3.2:1b",
        parameters={
            "temperature": 0.7,
            "num_ctx": 4096,
            "stop": ["<|eot_id|>", "<|end_of_text|>", 'say "bye"'],
        },
        template=(
            "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n"
            "{{ .System }}<|eot_id|>{{ end }}"
        ),
        system="You are Mario from super mario bros.",
        license=["MIT License\nCopyright (c) the authors", "Apache-2.0"],
        messages=[("user", "Is Toronto in Canada?"), ("assistant", "yes")],
    )


def test_parameters_are_typed_by_name() -> None:
    parsed = parse_modelfile("FROM m\nPARAMETER temperature 1\nPARAMETER seed -3\n")
    assert parsed.parameters == {"temperature": 1.0, "seed": -3}
    assert isinstance(parsed.parameters["temperature"], float)
    assert isinstance(parsed.parameters["seed"], int)


def test_instructions_are_case_insensitive() -> None:
    parsed = parse_modelfile('from m\nSyStEm hi\nparameter top_k 5\nTemplate """{{ .Prompt }}"""')
    assert parsed == Modelfile(
        from_="m", parameters={"top_k": 5}, template="{{ .Prompt }}", system="hi"
    )


def test_bare_values_are_trimmed_and_crlf_is_accepted() -> None:
    parsed = parse_modelfile("\ufeffFROM  ./model.gguf  \r\nSYSTEM \t be brief \r\n")
    assert (parsed.from_, parsed.system) == ("./model.gguf", "be brief")


def test_a_later_template_or_scalar_parameter_wins() -> None:
    parsed = parse_modelfile("FROM m\nSYSTEM a\nSYSTEM b\nPARAMETER top_p 0.1\nPARAMETER top_p 0.2")
    assert (parsed.system, parsed.parameters) == ("b", {"top_p": 0.2})


def test_quoted_values_may_span_lines_and_keep_unknown_escapes() -> None:
    parsed = parse_modelfile('FROM "C:\\models\\m.gguf"\nSYSTEM "one\ntwo"\n')
    assert (parsed.from_, parsed.system) == ("C:\\models\\m.gguf", "one\ntwo")


def test_a_triple_quoted_block_ends_only_at_a_line_ending_with_quotes() -> None:
    parsed = parse_modelfile('FROM m\nSYSTEM """say """hi""" twice\nok"""\n')
    assert parsed.system == 'say """hi""" twice\nok'


def test_render_lays_out_as_ollama_show() -> None:
    modelfile = Modelfile(
        from_="llama3",
        parameters={"temperature": 0.5, "stop": ["<|eot|>", " end"]},
        template="{{ .Prompt }}",
        system="Be brief.",
        license=["MIT"],
        messages=[("user", "hi there")],
    )
    assert modelfile.render() == (
        "FROM llama3\n"
        'TEMPLATE """{{ .Prompt }}"""\n'
        'SYSTEM """Be brief."""\n'
        "PARAMETER temperature 0.5\n"
        "PARAMETER stop <|eot|>\n"
        'PARAMETER stop " end"\n'
        "MESSAGE user hi there\n"
        'LICENSE """MIT"""\n'
    )


def test_the_full_example_round_trips() -> None:
    parsed = parse_modelfile(FULL)
    assert parse_modelfile(parsed.render()) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain",
        "  padded  ",
        '"starts with a quote',
        'ends with a quote"',
        '""',
        "multi\nline\n",
        'a line ending in """\nthen more',
        'a line ending in """\nand a trailing backslash\\',
        'back\\slash and \\" quote',
        "tab\tinside",
        "# not a comment",
    ],
)
def test_awkward_values_round_trip(value: str) -> None:
    modelfile = Modelfile(
        from_=value or "m",
        parameters={"stop": [value, "x"], "num_predict": -1, "min_p": 1e-05},
        template=value,
        system=value,
        license=[value],
        messages=[("system", value)],
    )
    assert parse_modelfile(modelfile.render()) == modelfile


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM m\n\n# ok\nFOO bar\n", r"line 4: unknown instruction 'FOO'"),
        ('FROM m\nTEMPLATE """a\nb"""\nBOGUS 1\n', r"line 4: unknown instruction 'BOGUS'"),
        ("SYSTEM hi\n", r"no FROM"),
        ("# only a comment\n", r"no FROM"),
        ("FROM a\nFROM b\n", r"line 2: a second FROM \(the first is on line 1\)"),
        ("FROM m\nPARAMETER num_ctx lots\n", r"line 2: PARAMETER num_ctx takes an integer"),
        ("FROM m\nPARAMETER top_k 1.5\n", r"line 2: PARAMETER top_k takes an integer"),
        ("FROM m\nPARAMETER temperature hot\n", r"line 2: PARAMETER temperature takes a number"),
        ("FROM m\nPARAMETER temperature nan\n", r"line 2: PARAMETER temperature takes a number"),
        ("FROM m\nPARAMETER top_p 1e999\n", r"line 2: PARAMETER top_p takes a number"),
        ("FROM m\nPARAMETER mirostat 1\n", r"line 2: unknown parameter 'mirostat'"),
        ("FROM m\nPARAMETER Temperature 1\n", r"line 2: unknown parameter 'Temperature'"),
        ("FROM m\nADAPTER ./lora.gguf\n", r"line 2: ADAPTER is not supported"),
        ("FROM m\nadapter ./lora.gguf\n", r"line 2: ADAPTER is not supported"),
        ("FROM m\nMESSAGE robot beep\n", r"line 2: MESSAGE role 'robot' is not one of"),
        ('FROM m\nTEMPLATE """{{ .Prompt }}\n\nSYSTEM x\n', r'line 2: unterminated """'),
        ('FROM m\nSYSTEM "no end\n', r'line 2: unterminated "'),
        ('FROM m\nSYSTEM "a" b\n', r"line 2: unexpected text after the closing quote"),
        ("FROM\n", r"line 1: missing FROM model"),
        ("FROM m\nSYSTEM\n", r"line 2: missing SYSTEM"),
        ("FROM m\nPARAMETER\n", r"line 2: missing PARAMETER name"),
        ("FROM m\nPARAMETER stop\n", r"line 2: missing PARAMETER stop value"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message) as caught:
        parse_modelfile(text)
    assert (caught.value.status, caught.value.param) == (400, "modelfile")

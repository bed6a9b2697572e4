"""Flags generated from settings classes: names, types, help, and where a value comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
import typer
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from typer.testing import CliRunner

from llmport.cli.flags import SettingsCommand, load_settings, settings_flags
from llmport.cli.main import app as llmport_app
from llmport.cli.serve import PANELS
from llmport.errors import UnsupportedOption


class Knobs(BaseSettings):
    """One field of every kind a flag can take."""

    model_config = SettingsConfigDict(env_prefix="LLMPORT_", frozen=True)

    max_num_seqs: int = Field(default=16, ge=1, description="Sequences at once.")
    timeout: float = Field(default=2.5, description="Seconds.")
    name: str | None = Field(default=None, description="A name; default: none.")
    is_fast: bool = Field(default=True, description="Go fast.")
    allow_paths: bool | None = Field(default=None, description="Paths; default: on loopback.")
    aliases: list[str] = Field(default_factory=list, description="Other names.")
    folder: Path | None = Field(default=None, description="A folder; default: none.")
    mode: Literal["auto", "on", "off"] = Field(default="auto", description="A mode.")

    @field_validator("name")
    @classmethod
    def _not_bob(cls, value: str | None) -> str | None:
        if value == "bob":
            raise UnsupportedOption("name 'bob' is taken", param="name")
        return value


def _app(seen: dict[str, Any]) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command(cls=SettingsCommand)
    @settings_flags({"Knobs": Knobs})
    def command(**flags: Any) -> None:
        seen.update(flags)

    return app


def test_each_field_becomes_a_flag_of_its_kind() -> None:
    seen: dict[str, Any] = {}
    args = ["--max-num-seqs", "4", "--timeout", "1", "--name", "x", "--no-is-fast",
            "--allow-paths", "--aliases", "a", "--aliases", "b", "--folder", "/tmp",
            "--mode", "on"]  # fmt: skip
    result = CliRunner().invoke(_app(seen), args)
    assert result.exit_code == 0, result.output
    assert seen == {"max_num_seqs": "4", "timeout": "1", "name": "x", "is_fast": False,
                    "allow_paths": True, "aliases": ["a", "b"], "folder": "/tmp",
                    "mode": "on"}  # fmt: skip
    knobs = load_settings(Knobs, seen)
    assert (knobs.max_num_seqs, knobs.folder, knobs.mode) == (4, Path("/tmp"), "on")


def test_flags_left_out_arrive_as_none() -> None:
    seen: dict[str, Any] = {}
    assert CliRunner().invoke(_app(seen), []).exit_code == 0
    assert all(value in (None, []) for value in seen.values())
    assert set(seen) == set(Knobs.model_fields)


def test_help_lists_every_flag_with_its_description_default_and_variable() -> None:
    result = CliRunner().invoke(_app({}), ["--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "\nKnobs:\n" in result.output
    text = " ".join(result.output.split())  # Long flags put their help on the next line.
    expected = {
        "--max-num-seqs INTEGER": "Sequences at once. [default: 16; env: LLMPORT_MAX_NUM_SEQS]",
        "--timeout FLOAT": "Seconds. [default: 2.5; env: LLMPORT_TIMEOUT]",
        "--name TEXT": "A name; default: none. [env: LLMPORT_NAME]",
        "--is-fast / --no-is-fast": "Go fast. [default: on; env: LLMPORT_IS_FAST]",
        "--allow-paths / --no-allow-paths": "Paths; default: on loopback. [env: "
        "LLMPORT_ALLOW_PATHS]",
        "--aliases TEXT": "Other names. [repeatable; env: LLMPORT_ALIASES]",
        "--folder PATH": "A folder; default: none. [env: LLMPORT_FOLDER]",
        "--mode [auto|on|off]": "A mode. [default: auto; env: LLMPORT_MODE]",
    }
    for flag, help_text in expected.items():
        assert f"{flag} {help_text}" in text, result.output


def test_a_flag_wins_over_the_environment_which_wins_over_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMPORT_MAX_NUM_SEQS", "8")
    monkeypatch.setenv("LLMPORT_TIMEOUT", "9")
    knobs = load_settings(Knobs, {"max_num_seqs": "4"})
    assert (knobs.max_num_seqs, knobs.timeout, knobs.mode) == (4, 9.0, "auto")


@pytest.mark.parametrize(
    ("given", "env", "message"),
    [
        ({"max_num_seqs": "0"}, {}, "--max-num-seqs: Input should be greater than or equal to 1"),
        ({"max_num_seqs": "many"}, {}, "--max-num-seqs: Input should be a valid integer"),
        ({}, {"LLMPORT_MAX_NUM_SEQS": "0"}, "LLMPORT_MAX_NUM_SEQS: Input should be greater"),
        ({"mode": "maybe"}, {}, "--mode: Input should be 'auto', 'on' or 'off'"),
        ({"name": "bob"}, {}, "--name: name 'bob' is taken"),
        ({}, {"LLMPORT_NAME": "bob"}, "LLMPORT_NAME: name 'bob' is taken"),
    ],
)
def test_a_bad_value_names_the_flag_or_variable_it_came_from(
    given: dict[str, str], env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UnsupportedOption) as caught:
        load_settings(Knobs, given)
    assert caught.value.message.startswith(message), caught.value.message


def test_a_field_without_a_description_or_of_an_unknown_type_has_no_flag() -> None:
    class Bare(BaseSettings):
        size: int = 1

    class Odd(BaseSettings):
        table: dict[str, int] = Field(default_factory=dict, description="A table.")

    def command(**flags: Any) -> None: ...

    with pytest.raises(TypeError, match="needs a description"):
        settings_flags({"Bare": Bare})(command)
    with pytest.raises(TypeError, match="no flag type"):
        settings_flags({"Odd": Odd})(command)
    with pytest.raises(TypeError, match="share a flag"):
        settings_flags({"A": Knobs, "B": Knobs})(command)


def test_serve_offers_a_flag_for_every_setting_and_documents_every_unset_default() -> None:
    serve = typer.main.get_command(llmport_app).commands["serve"]  # type: ignore[attr-defined]
    offered = {param.name for param in serve.params}
    for cls in PANELS.values():
        for name, field in cls.model_fields.items():
            assert name in offered, f"{cls.__name__}.{name} has no flag"
            assert field.description, f"{cls.__name__}.{name} has no description"
            if field.default is None:  # Its help must say what unset means.
                assert "default" in field.description or "refused" in field.description, name

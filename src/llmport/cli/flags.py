"""Command-line flags generated from pydantic-settings classes, so that a setting, its
flag, its ``LLMPORT_*`` variable and its help cannot drift apart.

Every field becomes ``--field-name`` (booleans ``--x/--no-x``, lists repeatable). Other
values reach the settings class as the text typed: one validator checks flags and
variables alike, and a bad number is the same one-line error as a bad range. A flag
left out falls back to its variable, then to its default.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings
from typer.core import TyperArgument, TyperCommand

from llmport.errors import LlmportError, UnsupportedOption

if TYPE_CHECKING:
    from typer._click import Context, HelpFormatter  # typer ships its own click.

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S", bound=BaseSettings)

#: How the value of a scalar field is shown in help, by its type.
_METAVARS: dict[object, str] = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(cls: type[BaseSettings], field: str) -> str:
    return (str(cls.model_config.get("env_prefix", "")) + field).upper()


def settings_flags(panels: Mapping[str, type[BaseSettings]]) -> Callable[[F], F]:
    """Replace a typer command's ``**flags`` with one option per field of each class,
    listed under its panel title; typer then passes every flag, ``None`` when unset."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        options = [
            _option(cls, name, field, title)
            for title, cls in panels.items()
            for name, field in cls.model_fields.items()
        ]
        params = [*kept, *options]
        if len({p.name for p in params}) != len(params):
            raise TypeError(f"{command.__name__}: two settings would share a flag")
        # typer reads the parameters from the signature; the command takes them as **flags.
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return command

    return decorate


def load_settings(cls: type[S], given: Mapping[str, Any]) -> S:
    """``cls`` from the flags given (they win), else its variables and defaults; a bad value
    raises UnsupportedOption naming the flag, or the variable, it came from."""
    try:
        return cls(**{k: v for k, v in given.items() if k in cls.model_fields})
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        reason = first["msg"].removeprefix("Value error, ")
    except LlmportError as error:  # A validator's own refusal, already worded for users.
        field, reason = error.param or "", error.message
    if field not in cls.model_fields or reason.startswith(flag_name(field)):
        raise UnsupportedOption(reason) from None
    source = flag_name(field) if field in given else env_name(cls, field)
    raise UnsupportedOption(f"{source}: {reason}") from None


class SettingsCommand(TyperCommand):
    """Plain help, one section per panel: forty flags read (and grep) better as click's
    list than in rich's table, which cuts long flag names short at 80 columns and reads
    ``[default: 16]`` as markup."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rich_markup_mode = None

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                default = "Arguments" if isinstance(param, TyperArgument) else "Options"
                title = getattr(param, "rich_help_panel", None) or default
                sections.setdefault(title, []).append(record)
        sections["Options"] = sections.pop("Options", [])  # --help, after the settings.
        for title, records in sections.items():
            if not records:
                continue
            with formatter.section(title):
                formatter.write_dl(records)


def _option(cls: type[BaseSettings], name: str, field: FieldInfo, panel: str) -> inspect.Parameter:
    annotation, metavar = _flag_type(field.annotation)
    flag = flag_name(name)
    decl = f"{flag}/--no-{flag[2:]}" if metavar is None else flag
    option = typer.Option(None, decl, help=_help(cls, name, field), metavar=metavar,
                          show_default=False, rich_help_panel=panel)  # fmt: skip
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)  # fmt: skip


def _flag_type(annotation: Any) -> tuple[Any, str | None]:
    """(what typer parses the flag as, its metavar); None for an on/off flag."""
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        args = tuple(a for a in args if a is not type(None))
        if len(args) == 1:
            return _flag_type(args[0])
    elif annotation is bool:
        return bool | None, None
    elif get_origin(annotation) is list and args == (str,):
        return list[str] | None, "TEXT"
    elif get_origin(annotation) is Literal:
        return str | None, "[" + "|".join(str(a) for a in args) + "]"
    elif annotation in _METAVARS:
        return str | None, _METAVARS[annotation]
    raise TypeError(f"no flag type for a field of type {annotation}")


def _help(cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    """The description, then the default (a None default is told in the description)."""
    if not field.description:
        raise TypeError(f"{cls.__name__}.{name} needs a description: it is the flag's help")
    notes = []
    default = field.get_default(call_default_factory=True)
    if isinstance(default, bool):
        notes.append("default: " + ("on" if default else "off"))
    elif default is not None and default != []:
        notes.append(f"default: {default}")
    if get_origin(field.annotation) is list:
        notes.append("repeatable")
    notes.append(f"env: {env_name(cls, name)}")
    return f"{field.description} [{'; '.join(notes)}]"

"""``llmport run``: a one-shot prompt, piped stdin, or an interactive chat, over HTTP.

Like ``ollama run``: it starts a server in the background when none answers and
pulls a ``hf.co/...`` model it does not have yet. A one-shot prompt goes to
``/api/generate`` (a base model continues the text; a chat model gets its
template); the interactive loop keeps a conversation on ``/api/chat``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from llmport.cli.client import Client, CliError, ensure_server
from llmport.cli.models import pull
from llmport.store.embedded import EMBEDDED_MODEL_NAME

HELP = """Commands:
  /set parameter NAME VALUE   set an option (temperature, num_predict, top_k, ...)
  /show parameters            print the options set
  /clear                      forget the conversation
  /bye                        exit
Use \"\"\" to begin and end a multi-line message."""


def run(
    model: Annotated[
        str | None, typer.Argument(help=f"Model to run [{EMBEDDED_MODEL_NAME}].")
    ] = None,
    prompt: Annotated[list[str] | None, typer.Argument(help="One-shot prompt.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Most tokens per answer (num_predict).")
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="0 is greedy.")] = None,
) -> None:
    """Chat with a model, or answer one prompt (argument or piped stdin)."""
    name = model or EMBEDDED_MODEL_NAME
    options: dict[str, Any] = {}
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    if temperature is not None:
        options["temperature"] = temperature
    with Client() as client:
        ensure_server(client)
        _ensure_model(client, name)
        if prompt:
            _generate(client, name, " ".join(prompt), options)
        elif not sys.stdin.isatty():
            _generate(client, name, sys.stdin.read(), options)
        else:
            _interactive(client, name, options)


def _ensure_model(client: Client, name: str) -> None:
    try:
        client.request("POST", "/api/show", {"model": name})
    except CliError:
        if not name.lower().startswith(("hf.co/", "huggingface.co/")):
            raise
        pull(name)


def _generate(client: Client, name: str, prompt: str, options: dict[str, Any]) -> None:
    body = {"model": name, "prompt": prompt, "options": options, "stream": True}
    for event in client.stream("/api/generate", body):
        sys.stdout.write(event.get("response", ""))
        sys.stdout.flush()
    sys.stdout.write("\n")


def _interactive(client: Client, name: str, options: dict[str, Any]) -> None:
    typer.echo(f"{name}: type a message; /? for help, /bye to quit.", err=True)
    messages: list[dict[str, str]] = []
    while (text := _read_message()) is not None:
        if text.startswith("/"):
            if _command(text, options, messages):
                return
            continue
        messages.append({"role": "user", "content": text})
        body = {"model": name, "messages": messages, "options": options, "stream": True}
        answer = ""
        for event in client.stream("/api/chat", body):
            piece = event.get("message", {}).get("content", "")
            answer += piece
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n\n")
        messages.append({"role": "assistant", "content": answer})


def _read_message() -> str | None:
    """One message; \"\"\" opens and closes a multi-line one. None at end of input."""
    try:
        line = input(">>> ")
    except EOFError:
        return None
    if not line.startswith('"""'):
        return line.strip()
    rest = line[3:].rstrip()
    if rest.endswith('"""'):
        return rest[:-3].strip()
    lines = [rest]
    while True:
        try:
            more = input("... ").rstrip()
        except EOFError:
            break
        if more.endswith('"""'):
            lines.append(more[:-3])
            break
        lines.append(more)
    return "\n".join(lines).strip()


def _command(text: str, options: dict[str, Any], messages: list[dict[str, str]]) -> bool:
    """Handle a /command; True means exit."""
    words = text.split()
    if words[0] in ("/bye", "/exit"):
        return True
    if words[:2] == ["/set", "parameter"] and len(words) >= 4:
        options[words[2]] = _value(" ".join(words[3:]))
        typer.echo(f"Set parameter '{words[2]}' to '{' '.join(words[3:])}'", err=True)
    elif words[:2] == ["/show", "parameters"]:
        typer.echo(json.dumps(options, indent=2) if options else "(none set)", err=True)
    elif words[0] == "/clear":
        messages.clear()
        typer.echo("Cleared the conversation.", err=True)
    else:
        typer.echo(HELP, err=True)
    return False


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text

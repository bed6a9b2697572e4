"""``llmport run``: a one-shot prompt, piped stdin, or an interactive session, over HTTP.

Like ``ollama run``: it starts a server in the background when none answers and
pulls a ``hf.co/...`` model it does not have yet. A one-shot prompt goes to
``/api/generate`` (a base model continues the text; a chat model gets its
template). Interactively, a chat model keeps a conversation on ``/api/chat``; a
base model (no chat template, such as the embedded Gemma 3 270M) continues each
text on ``/api/generate``, and the user is told so once instead of being shown a
chat it cannot hold. Ctrl-C stops the answer (the server aborts the request when
the stream closes) and returns to the prompt; Ctrl-C at the prompt or ``/bye``
leaves.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Generator
from typing import Annotated, Any

import typer

from llmport.cli.client import Client, CliError, ensure_server
from llmport.cli.models import pull
from llmport.store.embedded import EMBEDDED_MODEL_NAME

#: Tokens an answer may take unless the model ends it first (``/set parameter
#: num_predict N`` or ``--max-tokens`` change it; -1 = until the context is full).
DEFAULT_NUM_PREDICT = 256

HELP = """Commands:
  /set parameter NAME VALUE   set an option (temperature, num_predict, top_k, ...)
  /show parameters            print the options set
  /clear                      forget the conversation
  /bye                        exit (as does Ctrl-C at the prompt)
Use \"\"\" to begin and end a multi-line message. Ctrl-C stops an answer."""


def run(
    model: Annotated[
        str | None, typer.Argument(help=f"Model to run [{EMBEDDED_MODEL_NAME}].")
    ] = None,
    prompt: Annotated[list[str] | None, typer.Argument(help="One-shot prompt.")] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(help=f"Most tokens per answer (num_predict) [{DEFAULT_NUM_PREDICT}]."),
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="0 is greedy.")] = None,
) -> None:
    """Chat with a model, or answer one prompt (argument or piped stdin)."""
    name = model or EMBEDDED_MODEL_NAME
    options: dict[str, Any] = {"num_predict": max_tokens or DEFAULT_NUM_PREDICT}
    if temperature is not None:
        options["temperature"] = temperature
    with Client() as client:
        ensure_server(client)
        is_chat = _ensure_model(client, name)
        if not is_chat:
            typer.echo(
                f"{name} has no chat template (a base model): it continues your text "
                "rather than chatting.",
                err=True,
            )
        if prompt:
            _generate(client, name, " ".join(prompt), options)
        elif not sys.stdin.isatty():
            _generate(client, name, sys.stdin.read(), options)
        else:
            _interactive(client, name, options, is_chat)


def _ensure_model(client: Client, name: str) -> bool:
    """Pull ``name`` if it is a Hub name the server lacks; True if it has a chat template."""
    try:
        shown = client.request("POST", "/api/show", {"model": name})
    except CliError:
        if not name.lower().startswith(("hf.co/", "huggingface.co/")):
            raise
        pull(name)
        shown = client.request("POST", "/api/show", {"model": name})
    return bool(shown.get("template"))


def _generate(client: Client, name: str, prompt: str, options: dict[str, Any]) -> str:
    body = {"model": name, "prompt": prompt, "options": options, "stream": True}
    return _write(client.stream("/api/generate", body), lambda e: str(e.get("response", "")))


def _chat(
    client: Client, name: str, messages: list[dict[str, str]], options: dict[str, Any]
) -> str:
    body = {"model": name, "messages": messages, "options": options, "stream": True}
    return _write(client.stream("/api/chat", body), _message_content)


def _message_content(event: dict[str, Any]) -> str:
    return str(event.get("message", {}).get("content", ""))


def _write(
    events: Generator[dict[str, Any], None, None], piece_of: Callable[[dict[str, Any]], str]
) -> str:
    """Print the pieces as they come; return the whole text. Closing the stream (at the
    end, or on Ctrl-C) closes the connection, which aborts the request in the engine."""
    text = ""
    with contextlib.closing(events):
        for event in events:
            piece = piece_of(event)
            text += piece
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return text


def _interactive(client: Client, name: str, options: dict[str, Any], is_chat: bool) -> None:
    typer.echo(f"{name}: type a message; /? for help, Ctrl-C or /bye to quit.", err=True)
    messages: list[dict[str, str]] = []
    while (text := _read_message()) is not None:
        if text.startswith("/"):
            if _command(text, options, messages):
                return
            continue
        if not text:
            continue
        if is_chat:
            messages.append({"role": "user", "content": text})
        try:
            if is_chat:
                answer = _chat(client, name, messages, options)
            else:
                _generate(client, name, text, options)
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            typer.echo("(stopped)", err=True)
            if is_chat:
                messages.pop()
            continue
        sys.stdout.write("\n")
        sys.stdout.flush()
        if is_chat:
            messages.append({"role": "assistant", "content": answer})


def _read_message() -> str | None:
    """One message; \"\"\" opens and closes a multi-line one. None at end of input or on
    Ctrl-C at the prompt."""
    try:
        line = input(">>> ")
    except (EOFError, KeyboardInterrupt):
        sys.stdout.write("\n")
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
        except (EOFError, KeyboardInterrupt):
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
        typer.echo(json.dumps(options, indent=2), err=True)
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

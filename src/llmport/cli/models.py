"""Model verbs: ``pull``, ``list``/``ls``, ``show``, ``rm``, ``cp``, ``create``, ``ps``, ``stop``.

Each is an HTTP call to ``llmport serve`` (Ollama's routes), as Ollama's CLI is.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from llmport.cli.client import Client, CliError
from llmport.errors import LlmportError
from llmport.store.modelfile import parse_modelfile

ModelArg = Annotated[str, typer.Argument(help="A model name, e.g. hf.co/USER/REPO:Q8_0.")]


def pull(
    model: ModelArg,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Download a model from Hugging Face (hf.co/USER/REPO[:QUANT])."""
    with Client() as client:
        events = client.stream("/api/pull", {"model": model, "stream": True})
        if quiet:
            for _ in events:
                pass
        elif sys.stderr.isatty():
            _progress_bars(events)
        else:
            _progress_lines(events)


def _progress_bars(events: Any) -> None:
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=Console(stderr=True)) as bars:
        tasks: dict[str, Any] = {}
        for event in events:
            digest = event.get("digest")
            if digest and event.get("total"):
                if digest not in tasks:
                    tasks[digest] = bars.add_task(event["status"], total=event["total"])
                bars.update(tasks[digest], completed=event.get("completed") or 0)
            else:
                bars.console.print(event["status"])


def _progress_lines(events: Any) -> None:
    last = None
    for event in events:
        status = event["status"]
        if event.get("total"):
            percent = 100 * (event.get("completed") or 0) // event["total"]
            status = f"{status} {percent}%"
            if percent % 25 and percent != 100:
                continue  # Plain output: a line per quarter, not per packet.
        if status != last:
            typer.echo(status, err=True)
            last = status


def list_models() -> None:
    """List the models this server has (NAME, ID, SIZE, FORMAT, MODIFIED): GGUF files for
    llama.cpp, safetensors models (the Hugging Face cache's) for vLLM."""
    with Client() as client:
        models = client.request("GET", "/api/tags")["models"]
    rows = [
        (m["name"], m["digest"][:12], _size(m["size"]), str(m["details"].get("format", "")),
         _ago(m["modified_at"]))
        for m in models
    ]  # fmt: skip
    _table(("NAME", "ID", "SIZE", "FORMAT", "MODIFIED"), rows)


def show(
    model: ModelArg,
    modelfile: Annotated[bool, typer.Option("--modelfile", help="Print the Modelfile.")] = False,
    template: Annotated[bool, typer.Option("--template", help="Print the template.")] = False,
) -> None:
    """Show a model's architecture, parameters, context, quantization, template, license."""
    with Client() as client:
        info = client.request("POST", "/api/show", {"model": model})
    if modelfile:
        typer.echo(info["modelfile"])
        return
    if template:
        typer.echo(info["template"])
        return
    details, model_info = info["details"], info["model_info"]
    arch = model_info.get("general.architecture", "")
    rows = [
        ("architecture", arch),
        ("parameters", details.get("parameter_size", "")),
        ("context length", str(model_info.get(f"{arch}.context_length", ""))),
        ("embedding length", str(model_info.get(f"{arch}.embedding_length", ""))),
        ("quantization", details.get("quantization_level", "")),
        ("capabilities", ", ".join(info.get("capabilities", []))),
    ]
    typer.echo("  Model")
    for key, value in rows:
        typer.echo(f"    {key:<20}{value}")
    for title, text in (("Parameters", info["parameters"]), ("System", info.get("system")),
                        ("License", info["license"])):  # fmt: skip
        if text:
            typer.echo(f"\n  {title}")
            for line in str(text).splitlines()[:8]:
                typer.echo(f"    {line}")
    typer.echo(f"\n  Template\n    {'(model template)' if info['template'] else '(none)'}")


def rm(models: Annotated[list[str], typer.Argument(help="Models to remove.")]) -> None:
    """Remove models (and pulled files no other name uses)."""
    with Client() as client:
        for model in models:
            client.request("DELETE", "/api/delete", {"model": model})
            typer.echo(f"deleted '{model}'")


def cp(
    source: Annotated[str, typer.Argument(help="Existing model.")],
    destination: Annotated[str, typer.Argument(help="New name.")],
) -> None:
    """Copy a model under a new name."""
    with Client() as client:
        client.request("POST", "/api/copy", {"source": source, "destination": destination})
    typer.echo(f"copied '{source}' to '{destination}'")


def create(
    model: Annotated[str, typer.Argument(help="The new model's name.")],
    file: Annotated[Path, typer.Option("--file", "-f", help="The Modelfile.")] = Path("Modelfile"),
) -> None:
    """Create a model from a Modelfile (FROM, PARAMETER, TEMPLATE, SYSTEM, LICENSE, MESSAGE)."""
    try:
        text = file.read_text()
    except OSError as error:
        raise CliError(f"cannot read {file}: {error.strerror}") from None
    try:
        parsed = parse_modelfile(text)
    except LlmportError as error:
        raise CliError(f"{file}: {error.message}") from None
    base = parsed.from_
    local = (file.parent / base).expanduser()
    if not base.startswith("hf.co/") and local.suffix == ".gguf" and local.is_file():
        base = str(local.resolve())  # A path in a Modelfile is relative to the Modelfile.
    body = {
        "model": model,
        "from": base,
        "parameters": parsed.parameters,
        "template": parsed.template,
        "system": parsed.system,
        "license": parsed.license,
        "messages": [{"role": r, "content": c} for r, c in parsed.messages],
        "stream": False,
    }
    with Client() as client:
        client.request("POST", "/api/create", body)
    typer.echo(f"created '{model}'")


def ps() -> None:
    """List loaded models (NAME, ID, SIZE, PROCESSOR, CONTEXT, UNTIL; NODE on a cluster)."""
    with Client() as client:
        models = client.request("GET", "/api/ps")["models"]
    rows: list[tuple[str, ...]] = [
        (m["name"], str(m.get("digest", ""))[:12], _size(m["size"]), "100% CPU",
         str(m.get("context_length", "")), _until(m["expires_at"]), m.get("node", "local"))
        for m in models
    ]  # fmt: skip
    header: tuple[str, ...] = ("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL", "NODE")
    if all(row[-1] == "local" for row in rows):  # One machine: Ollama's columns.
        header, rows = header[:-1], [row[:-1] for row in rows]
    _table(header, rows)


def stop(model: ModelArg) -> None:
    """Unload a model now."""
    with Client() as client:
        client.request("POST", "/api/generate", {"model": model, "keep_alive": 0})


# -- formatting -------------------------------------------------------------------------


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("    ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _size(num_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if num_bytes >= scale:
            return (
                f"{num_bytes / scale:.0f} {unit}" if unit != "GB" else f"{num_bytes / scale:.1f} GB"
            )
    return f"{num_bytes} B"


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ago(text: str) -> str:
    seconds = (datetime.now(UTC) - _parse_time(text)).total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "seconds ago"


def _until(text: str) -> str:
    seconds = (_parse_time(text) - datetime.now(UTC)).total_seconds()
    if seconds > 10 * 365 * 86400:
        return "Forever"
    if seconds <= 0:
        return "Stopping..."
    return f"{int(seconds // 60)} minutes from now" if seconds >= 60 else "seconds from now"

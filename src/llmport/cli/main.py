"""``llmport``: the command line. Every verb but ``serve`` is an HTTP client of the
server (Ollama's API), as Ollama's CLI is; failures print one ``error:`` line."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from llmport.cli import models
from llmport.cli.client import CliError
from llmport.cli.flags import SettingsCommand
from llmport.cli.run import run
from llmport.cli.serve import serve
from llmport.errors import LlmportError

app = typer.Typer(
    help="One port, every model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(cls=SettingsCommand)(serve)  # Its flags are generated: plain help.
app.command()(run)
app.command()(models.pull)
app.command("list")(models.list_models)
app.command("ls", help="List the models this server has (alias of list).")(models.list_models)
app.command()(models.show)
app.command()(models.rm)
app.command()(models.cp)
app.command()(models.create)
app.command()(models.ps)
app.command()(models.stop)


@app.callback()
def callback(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log llama.cpp and engine details.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def main() -> None:
    """The console script: exit 0 on success, 1 with a one-line reason on failure."""
    try:
        app()
    except (CliError, LlmportError) as error:
        message = error.message if isinstance(error, LlmportError) else str(error)
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

"""``llmport``: the command line.

For now ``run`` drives the engine in this process; once the server lands it
becomes an HTTP client of ``llmport serve``, as Ollama's ``run`` is.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from llmport.cli.serve import serve
from llmport.errors import LlmportError
from llmport.types import SamplingParams

if TYPE_CHECKING:
    from llmport.llm import LLM

app = typer.Typer(help="One port, every model.", no_args_is_help=True, add_completion=False)
app.command()(serve)


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log llama.cpp and engine details.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


@app.command()
def run(
    model: Annotated[
        str | None, typer.Argument(help="A .gguf path or gemma3:270m (default).")
    ] = None,
    prompt: Annotated[
        list[str] | None, typer.Argument(help="One-shot prompt; else stdin or chat.")
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate per answer.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 is greedy.")] = 0.7,
    max_model_len: Annotated[int, typer.Option(help="Context length in tokens.")] = 4096,
) -> None:
    """Generate from a model: a one-shot prompt, piped stdin, or an interactive loop."""
    from llmport.llm import LLM

    params = SamplingParams(max_tokens=max_tokens, temperature=temperature)
    try:
        with LLM(model, max_model_len=max_model_len, max_num_seqs=1) as llm:
            if prompt:
                _answer(llm, " ".join(prompt), params)
            elif not sys.stdin.isatty():
                _answer(llm, sys.stdin.read(), params)
            else:
                _interactive(llm, params)
    except LlmportError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(1) from error


def _answer(llm: LLM, prompt: str, params: SamplingParams) -> None:
    for text in llm.stream(prompt, params):
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _interactive(llm: LLM, params: SamplingParams) -> None:
    typer.echo("Type a prompt; /bye to quit.", err=True)
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            return
        if line.strip() == "/bye":
            return
        if line.strip():
            _answer(llm, line, params)


if __name__ == "__main__":
    app()

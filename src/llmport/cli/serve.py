"""``llmport serve``: every model on one port, with vLLM's flag names where they apply.

Each flag also reads from ``LLMPORT_<NAME>``; a flag given here wins.
"""

from __future__ import annotations

import logging
import math
import socket
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from llmport.config import EngineConfig, RequestLimits, ServerSettings
from llmport.errors import LlmportError, UnsupportedOption
from llmport.manager.catalog import Catalog
from llmport.manager.settings import ManagerSettings
from llmport.store.embedded import default_cache_dir
from llmport.store.refs import ModelSources, resolve_model

Opt = typer.Option
S = TypeVar("S", bound=BaseModel)


def serve(
    models: Annotated[
        list[str] | None, typer.Argument(help="Models to load at start (names or .gguf paths).")
    ] = None,
    host: Annotated[str | None, Opt(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, Opt(help="Port [11434].")] = None,
    api_key: Annotated[str | None, Opt(help="Require this Bearer key.")] = None,
    served_model_name: Annotated[
        list[str] | None, Opt(help="Names for the preloaded model(s).")
    ] = None,
    max_model_len: Annotated[int | None, Opt(help="Context length [trained].")] = None,
    max_num_seqs: Annotated[int | None, Opt(help="Parallel sequences per model [16].")] = None,
    max_num_batched_tokens: Annotated[int | None, Opt(help="Tokens per step [512].")] = None,
    kv_cache_dtype: Annotated[str | None, Opt(help="KV cache type [auto = f16].")] = None,
    enable_prefix_caching: Annotated[bool | None, Opt(help="Reuse prompt KV [on].")] = None,
    dtype: Annotated[str | None, Opt(help="Only 'auto' (GGUF keeps its types).")] = None,
    tensor_parallel_size: Annotated[int | None, Opt(help="Only 1.")] = None,
    gpu_memory_utilization: Annotated[float | None, Opt(help="Needs a GPU build.")] = None,
    enable_auto_tool_choice: Annotated[bool | None, Opt(help="Let models call tools.")] = None,
    tool_call_parser: Annotated[str | None, Opt(help="hermes, llama3_json, ...")] = None,
    chat_template: Annotated[str | None, Opt(help="Jinja2 chat template: a file or text.")] = None,
    keep_alive: Annotated[str | None, Opt(help="Idle time before unload [5m].")] = None,
    max_loaded_models: Annotated[int | None, Opt(help="Models loaded at once [3].")] = None,
    max_queue: Annotated[int | None, Opt(help="Waiting requests per model [512].")] = None,
    memory_budget: Annotated[str | None, Opt(help="Memory for models [80% available].")] = None,
    models_dir: Annotated[
        Path | None, Opt(help="Serve every GGUF under this folder by its relative name.")
    ] = None,
    allow_model_paths: Annotated[
        bool | None, Opt(help="Load .gguf paths named by requests [only on loopback].")
    ] = None,
    shutdown_timeout: Annotated[
        float | None, Opt(help="Seconds in-flight requests get after SIGTERM [10].")
    ] = None,
    max_request_bytes: Annotated[
        int | None, Opt(help="Largest body; more get 413 [8 MiB].")
    ] = None,
    max_n: Annotated[int | None, Opt(help="Most choices (n) per request [128].")] = None,
    max_prompt_chars: Annotated[
        int | None, Opt(help="Most characters in a prompt or a chat [1000000].")
    ] = None,
    max_prompts: Annotated[
        int | None, Opt(help="Most prompts (or embedding inputs) per request [2048].")
    ] = None,
    max_messages: Annotated[int | None, Opt(help="Most messages in a chat [4096].")] = None,
) -> None:
    """Serve the OpenAI API for every model on one port; models load on first request."""
    flags = {k: v for k, v in locals().items() if v is not None and k != "models"}
    try:
        server = _settings(ServerSettings, flags)
        engine = _settings(EngineConfig, flags)
        manager_settings = _settings(ManagerSettings, flags)
        limits = _settings(RequestLimits, flags)
        _check_gpu(server)
        aliases, preload = _preload_names(models or [], server.served_model_name)
        templates = _chat_templates(server.chat_template, [*aliases, *preload])
        keep = None if keep_alive is not None else math.inf
        sock = _bind(server.host, server.port)
    except LlmportError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from error
    sources = ModelSources(server.models_dir, server.accepts_model_paths)
    catalog = Catalog(default_cache_dir(), aliases, sources)
    _run(server, engine, manager_settings, catalog, limits, {name: keep for name in preload},
         sock, templates)  # fmt: skip


def _settings(cls: type[S], flags: dict[str, Any]) -> S:
    given = {k: v for k, v in flags.items() if k in cls.model_fields}
    try:
        return cls(**given)
    except ValidationError as error:
        first = error.errors()[0]
        name = "--" + "-".join(str(p) for p in first["loc"]).replace("_", "-")
        raise UnsupportedOption(f"{name}: {first['msg']}") from None


def _check_gpu(server: ServerSettings) -> None:
    if server.gpu_memory_utilization is None:
        return
    from llmport.backends.llama_cpp import supports_gpu_offload

    if not supports_gpu_offload():
        raise UnsupportedOption(
            "--gpu-memory-utilization: this llama.cpp build has no GPU; the memory "
            "budget (--memory-budget) sizes what models may use"
        )


def _preload_names(models: list[str], names: list[str]) -> tuple[dict[str, Path], list[str]]:
    """Aliases from --served-model-name, and the names to load at start."""
    cache_dir = default_cache_dir()
    paths = [resolve_model(m, cache_dir) for m in models]
    if not names:
        return {}, models
    if len(paths) == 1:
        return dict.fromkeys(names, paths[0]), names[:1]
    if len(paths) != len(names):
        raise UnsupportedOption(
            f"--served-model-name: give one name per model ({len(paths)} models, "
            f"{len(names)} names), or several names for a single model"
        )
    return dict(zip(names, paths, strict=True)), names


def _chat_templates(template: str | None, names: list[str]) -> dict[str, str]:
    """``--chat-template`` (a file or the text) for the named models, or all ("*")."""
    if template is None:
        return {}
    path = Path(template).expanduser()
    if "{" not in template and path.is_file():
        template = path.read_text()
    elif "{" not in template:
        raise UnsupportedOption(f"--chat-template: {template!r} is neither a file nor a template")
    return dict.fromkeys(names or ["*"], template)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UnsupportedOption(
            f"cannot listen on {host}:{port}: {error.strerror} (is another server running "
            "there? choose another with --port)"
        ) from None
    return sock


def _run(
    server: ServerSettings,
    engine: EngineConfig,
    manager_settings: ManagerSettings,
    catalog: Catalog,
    limits: RequestLimits,
    preload: dict[str, float | None],
    sock: socket.socket,
    chat_templates: dict[str, str],
) -> None:
    import uvicorn

    from llmport.api.app import create_app
    from llmport.api.shutdown import DrainingServer
    from llmport.manager.manager import ModelManager

    # A server says what it loads and unloads; -v adds engine and llama.cpp detail.
    llmport_logger = logging.getLogger("llmport")
    llmport_logger.setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))

    manager = ModelManager(manager_settings, engine, catalog)
    app = create_app(
        manager,
        api_key=server.api_key,
        preload=preload,
        tool_call_parser=server.tool_call_parser or "hermes",
        chat_templates=chat_templates,
        limits=limits,
    )
    # uvicorn's own deadline is a backstop: the drain ends every request before it.
    backstop = math.ceil(server.shutdown_timeout) + 5
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=backstop)
    DrainingServer(config, manager, server.shutdown_timeout).run(sockets=[sock])

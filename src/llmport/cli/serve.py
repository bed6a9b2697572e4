"""``llmport serve``: every model on one port, with vLLM's flag names where they apply.

The flags are the settings classes' fields (``cli/flags.py``): each also reads from
``LLMPORT_<NAME>``, and a flag given here wins.
"""

from __future__ import annotations

import logging
import math
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic_settings import BaseSettings

from llmport.cli.flags import load_settings, settings_flags
from llmport.config import KV_CACHE_DTYPES, EngineConfig, RequestLimits, ServerSettings
from llmport.engines.vllm.config import KV_CACHE_DTYPES as VLLM_KV_CACHE_DTYPES
from llmport.engines.vllm.config import VllmConfig, VllmFlags, check_flags, device, is_installed
from llmport.errors import LlmportError, UnsupportedOption
from llmport.manager.settings import ManagerSettings
from llmport.models.engine_choice import EngineChoice, ForcedEngine
from llmport.models.resolver import Resolver
from llmport.runtime.base import Runtime
from llmport.runtime.settings import RuntimeSettings
from llmport.store.embedded import default_cache_dir
from llmport.store.refs import ModelSources

#: The settings ``serve`` takes flags for, by the title they are listed under in --help.
PANELS: dict[str, type[BaseSettings]] = {
    "Server": ServerSettings,
    "Engine (each model)": EngineConfig,
    "vLLM engine (Hugging Face models)": VllmFlags,
    "Engine choice": EngineChoice,
    "Models in memory": ManagerSettings,
    "Request limits": RequestLimits,
    "Cluster (Ray)": RuntimeSettings,
}
#: llama.cpp KV cache types that flash attention may be turned off with.
_UNQUANTIZED_KV = ("f16", "bf16", "f32")


@settings_flags(PANELS)
def serve(
    models: Annotated[
        list[str] | None, typer.Argument(help="Models to load at start (names or .gguf paths).")
    ] = None,
    **flags: Any,
) -> None:
    """Serve the OpenAI and Ollama APIs for every model on one port; models load on demand."""
    given = {k: v for k, v in flags.items() if v is not None and v != []}
    try:
        server = load_settings(ServerSettings, given)
        engine_given, vllm_given, kv_note = _split_kv_cache_dtype(given)
        engine = load_settings(EngineConfig, engine_given)
        vllm = load_settings(VllmConfig, vllm_given)
        check_flags(vllm, device())
        manager_settings = load_settings(ManagerSettings, given)
        limits = load_settings(RequestLimits, given)
        runtime = load_settings(RuntimeSettings, given)
        _check_runtime(runtime, manager_settings)
        _check_engine(engine)
        _check_gpu(engine)
        forced = _forced_engine(load_settings(EngineChoice, given))
        aliases, preload = _preload_names(models or [], server.served_model_name, forced)
        templates = _chat_templates(server.chat_template, [*aliases, *preload])
        keep = None if "keep_alive" in given else math.inf
        sock = _bind(server.host, server.port)
        if runtime.ray is not None:
            from llmport.runtime.ray.cluster import connect

            connect(runtime.ray)
    except LlmportError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from error
    if kv_note:
        logging.getLogger(__name__).warning("%s", kv_note)
    sources = ModelSources(server.models_dir, server.accepts_model_paths)
    resolver = Resolver(default_cache_dir(), aliases, sources, forced)
    _run(server, {"llama_cpp": engine, "vllm": vllm}, manager_settings, runtime, resolver,
         limits, {name: keep for name in preload}, sock, templates)  # fmt: skip


def _check_runtime(runtime: RuntimeSettings, manager: ManagerSettings) -> None:
    """On a cluster each node declares its own budget; a server-wide one would mean
    nothing there, so it is refused rather than ignored."""
    if runtime.ray is not None and manager.memory_budget is not None:
        raise UnsupportedOption(
            "--memory-budget with --ray: each node's budget comes from the cluster (its "
            "llmport.memory-budget label, else its Ray memory resource); leave it unset"
        )


def _split_kv_cache_dtype(
    given: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """``--kv-cache-dtype`` goes to the engines that offer it: vLLM's fp8 types to HF
    models, llama.cpp's quantized types to GGUF models; the other engine keeps its
    default, and the note (logged at start) says so."""
    value = given.get("kv_cache_dtype")
    if value is None:
        return given, given, None
    for_llama = value.lower() in KV_CACHE_DTYPES
    for_vllm = value in VLLM_KV_CACHE_DTYPES
    if (for_llama and for_vllm) or not (for_llama or for_vllm):
        return given, given, None  # Both take it, or neither does (refused with its reason).
    rest = {k: v for k, v in given.items() if k != "kv_cache_dtype"}
    engine = "vLLM (HF models)" if for_vllm else "llama.cpp (GGUF models)"
    note = f"--kv-cache-dtype {value} applies to {engine} only; the other keeps its default"
    return (rest, given, note) if for_vllm else (given, rest, note)


def _check_engine(engine: EngineConfig) -> None:
    """Settings that would be overridden without a word are refused instead."""
    slots = engine.num_prefix_cache_slots
    if slots and not engine.enable_prefix_caching:
        raise UnsupportedOption(
            f"--num-prefix-cache-slots {slots}: prefix caching is off "
            "(--no-enable-prefix-caching); turn it on or leave the slots unset"
        )
    if engine.flash_attn == "off" and engine.kv_ggml_type_name not in _UNQUANTIZED_KV:
        raise UnsupportedOption(
            f"--flash-attn off: llama.cpp needs flash attention for a quantized KV cache "
            f"(--kv-cache-dtype {engine.kv_cache_dtype}); use auto or on, or an f16 cache"
        )


def _check_gpu(engine: EngineConfig) -> None:
    """llama.cpp's GPU flag acts or is refused: a build without a GPU cannot offload.
    (vLLM's GPU flags are checked by ``check_flags``.)"""
    layers = engine.n_gpu_layers or 0
    if layers <= 0:
        return
    from llmport.engines.llama_cpp.backend import supports_gpu_offload

    if not supports_gpu_offload():
        raise UnsupportedOption(
            f"--n-gpu-layers {layers}: this llama.cpp build has no GPU; models run on the "
            "CPU (leave it unset)"
        )


def _forced_engine(choice: EngineChoice) -> ForcedEngine | None:
    """``--engine``'s kind with the formats the registry says it loads; None for auto."""
    if choice.kind_name is None:
        return None
    from llmport.engines.kinds import default_registry

    if choice.kind_name == "vllm" and not is_installed():
        raise UnsupportedOption(
            "--engine vllm: vLLM is not installed (pip install 'llmport[vllm]')"
        )
    return ForcedEngine(choice.engine, default_registry().get(choice.kind_name).formats)


def _preload_names(
    models: list[str], names: list[str], forced: ForcedEngine | None = None
) -> tuple[dict[str, str], list[str]]:
    """Aliases from --served-model-name (name -> what the command line named), and the
    names to load at start. Every model named must exist, and load on a forced engine
    (checked now, not later)."""
    resolver = Resolver(default_cache_dir(), forced=forced)
    for model in models:
        resolver.resolve_now(model)
    if not names:
        return {}, models
    if len(models) == 1:
        return dict.fromkeys(names, models[0]), names[:1]
    if len(models) != len(names):
        raise UnsupportedOption(
            f"--served-model-name: give one name per model ({len(models)} models, "
            f"{len(names)} names), or several names for a single model"
        )
    return dict(zip(names, models, strict=True)), names


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
    engine_configs: dict[str, BaseSettings],
    manager_settings: ManagerSettings,
    runtime_settings: RuntimeSettings,
    resolver: Resolver,
    limits: RequestLimits,
    preload: dict[str, float | None],
    sock: socket.socket,
    chat_templates: dict[str, str],
) -> None:
    import uvicorn

    from llmport.api.app import create_app
    from llmport.api.shutdown import DrainingServer
    from llmport.engines.kinds import default_registry
    from llmport.manager.manager import ModelManager

    # A server says what it loads and unloads; -v adds engine and llama.cpp detail.
    llmport_logger = logging.getLogger("llmport")
    llmport_logger.setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))

    manager = ModelManager(
        manager_settings,
        default_registry(),
        _runtime(runtime_settings, manager_settings),
        engine_configs=dict(engine_configs),
    )
    app = create_app(
        manager,
        resolver,
        api_key=server.api_key,
        preload=preload,
        tool_call_parser=server.tool_call_parser or "hermes",
        reasoning_parser=server.reasoning_parser,
        chat_templates=chat_templates,
        limits=limits,
        allowed_origins=server.allowed_origins,
        allowed_media_domains=server.allowed_media_domains,
    )
    # uvicorn's own deadline is a backstop: the drain ends every request before it.
    backstop = math.ceil(server.shutdown_timeout) + 5
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=backstop)
    DrainingServer(config, manager, server.shutdown_timeout).run(sockets=[sock])


def _runtime(settings: RuntimeSettings, manager: ManagerSettings) -> Runtime:
    """Workers on this machine, or on a Ray cluster's nodes (joined by ``connect``)."""
    if settings.ray is None:
        from llmport.runtime.local import LocalRuntime

        return LocalRuntime(warm_spare=manager.warm_spare)
    from llmport.runtime.ray.runtime import RayRuntime

    return RayRuntime(heartbeat_timeout=settings.ray_heartbeat_timeout)

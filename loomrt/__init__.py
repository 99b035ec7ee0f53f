"""loomrt: a deterministic, portable runtime for small language models.

The same model, prompt, settings and seed give bit-identical logits and tokens on any
thread count, prompt chunking, instruction set, OS and compiler.

>>> import loomrt
>>> model = loomrt.load("model.gguf", threads=2)
>>> print(model.generate("Once upon a time", max_tokens=32).text)
"""
from __future__ import annotations

from . import _lib
from .errors import (ContextFullError, FormatError, InternalError, InvalidArgumentError, LoomrtError,
                     LoomrtIOError, NotFoundError, OutOfMemoryError, StateError, UnsupportedError)
from .model import Generation, Model, SamplingParams, Session, Timings, default_threads, load
from .resolve import default_model_path, resolve_model_path
from .tokenizer import Tokenizer

__version__ = _lib.version()
NUMERICS_VERSION = _lib.numerics_version()
ABI_VERSION = _lib.abi_version()


def kernel_path() -> str:
    """Name of the kernel path in use (set LOOMRT_KERNELS=reference to force the reference)."""
    return _lib.kernel_path()


__all__ = [
    "load", "Model", "Session", "Generation", "SamplingParams", "Timings", "Tokenizer",
    "default_model_path", "resolve_model_path", "default_threads", "kernel_path",
    "LoomrtError", "FormatError", "UnsupportedError", "InvalidArgumentError", "NotFoundError",
    "ContextFullError", "StateError", "OutOfMemoryError", "InternalError", "LoomrtIOError",
    "__version__", "NUMERICS_VERSION", "ABI_VERSION",
]

"""loomrt: a deterministic, portable runtime for small language models.

The same model, prompt, settings and seed give bit-identical logits and tokens on any
thread count, prompt chunking, instruction set, OS and compiler.

>>> import loomrt
>>> model = loomrt.load("model.gguf", threads=2)
>>> print(model.generate("Once upon a time", max_tokens=32).text)
"""
from __future__ import annotations

from . import _lib
from ._library import library_path
from .errors import (ArgumentTypeError, BusyError, ContextFullError, FormatError, InternalError,
                     InvalidArgumentError, LoomrtError, LoomrtIOError, NotFoundError, NumericError, OutOfMemoryError,
                     StateError, UnsupportedError)
from .model import Generation, Model, Session, Timings, default_threads, load
from .receipts import verify_receipt
from .sampling import SamplingParams
from .audit import VerifyResult, model_hash, tokenizer_hash
from .batch import Batch
from .resolve import default_model_path, resolve_model_path
from .tokenizer import Encoding, Tokenizer
from .trainer import Trainer
from .train import Run, train
from .weave import Weave, WeaveGeneration, WeaveTrace, weave
from .web import web_assets

__version__ = _lib.version()
NUMERICS_VERSION = _lib.numerics_version()
ABI_VERSION = _lib.abi_version()


def kernel_path() -> str:
    """Name of the kernel path in use ("reference", "avx2", ...). The process starts on the
    best path the CPU supports unless the environment variable LOOMRT_KERNELS names one."""
    return _lib.kernel_path()


def kernel_paths() -> list:
    """Kernel paths this build and machine can run, best first; "reference" is last."""
    return _lib.kernel_paths()


def set_kernel_path(name: str) -> None:
    """Switch the whole process to a kernel path ("auto" = the best). Every path gives the
    same bits. Raises NotFoundError (unknown name) or UnsupportedError (CPU cannot run it)."""
    _lib.set_kernel_path(name)


__all__ = [
    "Batch",
    "load", "Model", "Session", "Generation", "SamplingParams", "Timings", "Tokenizer", "Encoding",
    "default_model_path", "resolve_model_path", "default_threads", "kernel_path",
    "kernel_paths", "set_kernel_path",
    "LoomrtError", "FormatError", "UnsupportedError", "InvalidArgumentError", "NotFoundError",
    "ContextFullError", "StateError", "BusyError", "NumericError", "OutOfMemoryError", "InternalError",
    "LoomrtIOError", "ArgumentTypeError",
    "__version__", "NUMERICS_VERSION", "ABI_VERSION", "library_path",
    "verify_receipt", "VerifyResult", "model_hash", "tokenizer_hash", "Trainer", "train", "Run",
    "weave", "Weave", "WeaveGeneration", "WeaveTrace", "web_assets",
]

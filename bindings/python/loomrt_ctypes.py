"""loomrt_ctypes -- a single-file, pure-ctypes Python binding of libloomrt (no cffi, no build).

Copy this file anywhere; it needs only the shared library (libloomrt.so / libloomrt.dylib /
loomrt.dll), found from, in order: the ``path`` argument of :class:`Library`, the environment
variable ``LOOMRT_LIBRARY``, the library inside an installed loomrt wheel (what
``loomrt.library_path()`` returns, found without importing loomrt), and the system's library search (``ctypes.util.find_library("loomrt")``).

>>> lib = Library()                                   # or Library("/path/to/libloomrt.so")
>>> model = Model(lib, "model.gguf")                  # or Model(lib, files={"model.gguf": data})
>>> session = Session(model, threads=2)
>>> session.configure(temperature=0.8, seed=7)
>>> for token, text in session.stream("Once upon a time", max_tokens=32):
...     print(text.decode("utf-8"), end="", flush=True)

Every C function of loomrt.h is declared in ``SIGNATURES`` (name -> result type, argument
types); the test suite checks that list against the header. Failing calls raise
:class:`LoomrtError` with the status code, its name and the library's message.

Run as a script it behaves like bindings/c/example.c (same options, same summary on stderr).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from ctypes import (CFUNCTYPE, POINTER, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t, c_uint64,
                    c_void_p)
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ["Library", "Model", "Session", "LoomrtError", "SIGNATURES", "TOKEN_CALLBACK", "fnv1a64"]

# ---- constants of loomrt.h (append-only values) ------------------------------------------

LRT_OK = 0
LRT_ERR_BUFFER_TOO_SMALL = -10
LRT_ERR_BUSY = -11
LRT_ERR_NUMERIC = -12
OPEN_ALLOW_UNKNOWN_CONFIG_KEYS = 1
OPEN_COPY_BUFFERS = 2
OPEN_QUANTIZE_Q8_0 = 4
OPEN_INT8_ACTIVATIONS = 8
OPEN_TOKENIZER_ONLY = 64
PROMPT_ADD_SPECIAL = 1
PROMPT_PARSE_SPECIAL = 2
PROMPT_KEEP = 4
CHAT_MODEL, CHAT_CHATML, CHAT_LLAMA3, CHAT_LLAMA2, CHAT_ZEPHYR = 0, 1, 2, 3, 4
FINISH_NONE, FINISH_EOS, FINISH_LENGTH, FINISH_CONTEXT, FINISH_CALLBACK = 0, 1, 2, 3, 4
SESSION_FINISH_REASON, SESSION_PROMPT_TOKENS, SESSION_GENERATED_TOKENS = 0, 1, 2
PARAMS = {"temperature": 0, "top_k": 1, "top_p": 2, "min_p": 3, "repeat_penalty": 4, "seed": 5,
          "repeat_last_n": 6, "max_tokens": 7}
INT_PARAMS = {"top_k", "seed", "repeat_last_n", "max_tokens"}
MODEL_INFO = {"vocab_size": 0, "context_length": 1, "hidden_size": 2, "layers": 3, "heads": 4, "kv_heads": 5,
              "head_dim": 6, "ffn_size": 7, "parameters": 8, "weight_bytes": 9, "resident_bytes": 10,
              "bos_id": 11, "eos_count": 12, "tied_embeddings": 13, "is_gguf": 14,
              "tokenizer_size": 15, "tokenizer_bos_id": 16, "tokenizer_eos_id": 17, "eog_count": 18}
MODEL_STR = {"architecture": 0, "dtype": 1, "source": 2, "name": 3, "chat_template": 4}

# int32_t (*)(void *user_data, int32_t token, const char *text, size_t text_len)
TOKEN_CALLBACK = CFUNCTYPE(c_int32, c_void_p, c_int32, c_void_p, c_size_t)

_P = POINTER
_i32, _i64, _sz = c_int32, c_int64, c_size_t
_h = c_void_p  # opaque handles

SIGNATURES: Dict[str, Tuple[object, List[object]]] = {
    # versions and errors
    "lrt_version_string": (c_char_p, []),
    "lrt_version_number": (_i32, []),
    "lrt_abi_version": (_i32, []),
    "lrt_numerics_version": (_i32, []),
    "lrt_last_error": (c_char_p, []),
    "lrt_status_name": (c_char_p, [_i32]),
    # models
    "lrt_model_open": (_i32, [c_char_p, _sz, _i32, _P(_h)]),
    "lrt_model_close": (None, [_h]),
    "lrt_model_get_int": (_i32, [_h, _i32, _P(_i64)]),
    "lrt_model_eos_id": (_i32, [_h, _i64, _P(_i32)]),
    "lrt_model_eog_id": (_i32, [_h, _i64, _P(_i32)]),
    "lrt_model_get_str": (_i32, [_h, _i32, _P(c_void_p), _P(_sz)]),
    "lrt_model_meta_count": (_i64, [_h]),
    "lrt_model_meta_key": (_i32, [_h, _i64, _P(c_void_p), _P(_sz)]),
    "lrt_model_meta_type": (_i32, [_h, c_char_p, _sz, _P(_i32), _P(_i32), _P(_i64)]),
    "lrt_model_meta_str": (_i32, [_h, c_char_p, _sz, _i64, _P(c_void_p), _P(_sz)]),
    "lrt_model_meta_int": (_i32, [_h, c_char_p, _sz, _i64, _P(_i64)]),
    "lrt_model_meta_uint": (_i32, [_h, c_char_p, _sz, _i64, _P(c_uint64)]),
    "lrt_model_meta_float": (_i32, [_h, c_char_p, _sz, _i64, _P(c_double)]),
    "lrt_model_open_memory": (_i32, [_i64, _P(c_char_p), _P(_sz), _P(c_void_p), _P(_sz), _i32, _P(_h)]),
    # sessions
    "lrt_session_new": (_i32, [_h, _i64, _i32, _P(_h)]),
    "lrt_session_free": (None, [_h]),
    "lrt_session_reset": (_i32, [_h]),
    "lrt_session_truncate": (_i32, [_h, _i64]),
    "lrt_session_position": (_i64, [_h]),
    "lrt_session_kv_rows": (_i32, [_h, _i64, _P(_i64), _P(_i64)]),
    "lrt_session_pool_stat": (_i32, [_h, _i32, _i32, _P(_i64)]),
    "lrt_session_pool_stats_reset": (_i32, [_h, _i32]),
    "lrt_session_eval": (_i32, [_h, _P(_i32), _i64, _i32]),
    "lrt_session_logits": (_i32, [_h, _P(_P(c_float)), _P(_i64), _P(_i64)]),
    "lrt_session_set_float": (_i32, [_h, _i32, c_double]),
    "lrt_session_set_int": (_i32, [_h, _i32, _i64]),
    "lrt_session_sample": (_i32, [_h, _P(_i32)]),
    "lrt_session_candidates": (_i32, [_h, _P(_P(_i32)), _P(_P(c_float)), _P(_i64)]),
    "lrt_session_state_size": (_i32, [_h, _P(_sz)]),
    "lrt_session_state_save": (_i32, [_h, c_void_p, _sz, _P(_sz)]),
    "lrt_session_state_load": (_i32, [_h, c_void_p, _sz]),
    # tokenizer
    "lrt_tokenize": (_i32, [_h, c_char_p, _sz, _i32, _P(_i32), _i64, _P(_i64)]),
    "lrt_token_bytes": (_i32, [_h, _i32, _P(c_void_p), _P(_sz)]),
    "lrt_detokenize": (_i32, [_h, _P(_i32), _i64, _i32, c_void_p, _sz, _P(_sz)]),
    "lrt_model_has_tokenizer": (_i32, [_h, _P(_i32)]),
    "lrt_token_text": (_i32, [_h, _i32, _P(c_void_p), _P(_sz)]),
    "lrt_token_id": (_i32, [_h, c_char_p, _sz, _P(_i32)]),
    # chat and generation
    "lrt_chat_detect": (_i32, [_h, _P(_i32)]),
    "lrt_chat_apply": (_i32, [_h, _i32, _i64, _P(c_char_p), _P(_sz), _P(c_char_p), _P(_sz), _i32, c_void_p, _sz,
                              _P(_sz)]),
    "lrt_session_prompt": (_i32, [_h, c_char_p, _sz, _i32]),
    "lrt_session_prompt_tokens": (_i32, [_h, _P(_i32), _i64, _i32]),
    "lrt_session_step": (_i32, [_h, _P(_i32), _P(c_void_p), _P(_sz)]),
    "lrt_session_get_int": (_i32, [_h, _i32, _P(_i64)]),
    "lrt_generate": (_i32, [_h, c_char_p, _sz, _i32, _i64, TOKEN_CALLBACK, c_void_p]),
    # kernels
    "lrt_kernel_path": (c_char_p, []),
    "lrt_kernels_available": (_i32, [_i32, _P(c_char_p), _P(_sz)]),
    "lrt_kernels_select": (_i32, [c_char_p, _sz]),
    # training (docs/training.md)
    "lrt_trainer_new": (_i32, [c_char_p, _sz, c_uint64, _i32, _P(_h)]),
    "lrt_trainer_open": (_i32, [c_char_p, _sz, _i32, _P(_h)]),
    "lrt_trainer_free": (None, [_h]),
    "lrt_trainer_set": (_i32, [_h, _i32, c_double]),
    "lrt_trainer_get": (_i32, [_h, _i32, _P(c_double)]),
    "lrt_trainer_accumulate": (_i32, [_h, _P(_i32), _i64, _i64, _P(c_double)]),
    "lrt_trainer_apply": (_i32, [_h]),
    "lrt_trainer_eval": (_i32, [_h, _P(_i32), _i64, _i64, _P(c_double)]),
    "lrt_trainer_logits": (_i32, [_h, _P(_i32), _i64, _P(c_float), _i64]),
    "lrt_trainer_tensor_count": (_i32, [_h, _P(_i64)]),
    "lrt_trainer_tensor_info": (_i32, [_h, _i64, _P(c_void_p), _P(_sz), _P(_i64), _P(_i64)]),
    "lrt_trainer_tensor_read": (_i32, [_h, _i64, _i32, _P(c_float), _i64]),
    "lrt_trainer_tensor_write": (_i32, [_h, _i64, _P(c_float), _i64]),
    "lrt_trainer_state_size": (_i32, [_h, _P(_sz)]),
    "lrt_trainer_state_save": (_i32, [_h, c_void_p, _sz, _P(_sz)]),
    "lrt_trainer_state_load": (_i32, [_h, c_void_p, _sz]),
    # weaving (docs/weaving.md)
    "lrt_weave_new": (_i32, [_P(_h), _i64, _P(_h)]),
    "lrt_weave_free": (None, [_h]),
    "lrt_weave_set_mode": (_i32, [_h, _i32]),
    "lrt_weave_set_weights": (_i32, [_h, _P(c_double), _i64]),
    "lrt_weave_set_schedule": (_i32, [_h, _i32, _P(c_double), _i64]),
    "lrt_weave_set_rule": (_i32, [_h, c_char_p, _sz, _P(c_double), _i64]),
    "lrt_weave_set_float": (_i32, [_h, _i32, c_double]),
    "lrt_weave_set_int": (_i32, [_h, _i32, _i64]),
    "lrt_weave_get_int": (_i32, [_h, _i32, _P(_i64)]),
    "lrt_weave_prompt": (_i32, [_h, c_char_p, _sz, _i32]),
    "lrt_weave_prompt_tokens": (_i32, [_h, _P(_i32), _i64, _i32]),
    "lrt_weave_step": (_i32, [_h, _P(_i32), _P(c_void_p), _P(_sz)]),
    "lrt_weave_logits": (_i32, [_h, _P(_P(c_float)), _P(_i64)]),
    "lrt_weave_trace_row": (_i32, [_h, _i64, _P(_i32), _P(_i32), _P(c_double), _P(c_double), _P(c_double),
                                   _P(c_double), _P(_i64), _P(c_double), _i64]),
    "lrt_weave_trace_top": (_i32, [_h, _i64, _i64, _P(_i32), _P(c_double), _i64, _P(_i64)]),
    # inspection (docs/inspect.md)
    "lrt_session_inspect": (_i32, [_h, _P(c_float), _P(c_float), _i64, _i64, _i64]),
    "lrt_session_lens": (_i32, [_h, _P(c_float), _i64, _P(c_float)]),
    # batches
    "lrt_batch_new": (_i32, [_h, _i32, _P(_h)]),
    "lrt_batch_free": (None, [_h]),
    "lrt_batch_add": (_i32, [_h, _h, _P(_i32), _i64]),
    "lrt_batch_count": (_i64, [_h]),
    "lrt_batch_clear": (_i32, [_h]),
    "lrt_batch_eval": (_i32, [_h]),
    "lrt_spec_new": (_i32, [_h, _h, _P(_h)]),
    "lrt_spec_free": (None, [_h]),
    "lrt_spec_set_int": (_i32, [_h, _i32, _i64]),
    "lrt_spec_get_int": (_i32, [_h, _i32, _P(_i64)]),
    "lrt_spec_start": (_i32, [_h]),
    "lrt_spec_next": (_i32, [_h, _P(_i32), _P(_P(c_float))]),
    # log-probabilities
    "lrt_session_log_softmax": (_i32, [_h, _P(c_float)]),
    # training across processes (docs/scale-out.md)
    "lrt_trainer_grad_size": (_i32, [_h, _P(_i64)]),
    "lrt_trainer_grad_read": (_i32, [_h, _P(c_float), _i64, _P(c_double), _P(_i64)]),
    "lrt_trainer_grad_add": (_i32, [_h, _P(c_float), _i64, c_double, _i64]),
    "lrt_trainer_grad_clear": (_i32, [_h]),
    "lrt_trainer_weights_read": (_i32, [_h, _P(c_float), _i64]),
    "lrt_trainer_weights_write": (_i32, [_h, _P(c_float), _i64]),
    "lrt_trainer_accumulate_rows": (_i32, [_h, _P(_i32), _i64, _i64, _P(c_float), _i64, _P(c_double)]),
    "lrt_trainer_lookup_add": (_i32, [_h, _P(_i32), _i64, _i64, _P(c_float), _i64]),
}

_STATUS_NAMES = {0: "LRT_OK", -1: "LRT_ERR_INVALID_ARGUMENT", -2: "LRT_ERR_NOT_FOUND", -3: "LRT_ERR_IO",
                 -4: "LRT_ERR_FORMAT", -5: "LRT_ERR_UNSUPPORTED", -6: "LRT_ERR_OUT_OF_MEMORY",
                 -7: "LRT_ERR_CONTEXT_FULL", -8: "LRT_ERR_STATE", -9: "LRT_ERR_INTERNAL",
                 -10: "LRT_ERR_BUFFER_TOO_SMALL", -11: "LRT_ERR_BUSY",
                 -12: "LRT_ERR_NUMERIC"}


class LoomrtError(Exception):
    """A failed loomrt call: ``status`` (negative LRT_ERR_* code), ``name`` and the message."""

    def __init__(self, status: int, name: str, message: str):
        super().__init__(f"{name}: {message}" if message else name)
        self.status = status
        self.name = name


def _library_candidates(path: Optional[str]) -> List[str]:
    if path:
        return [os.fspath(path)]
    env = os.environ.get("LOOMRT_LIBRARY")
    if env:
        return [env]
    out: List[str] = []
    try:  # the loomrt wheel ships the library in its package folder (loomrt.library_path());
        # found without importing loomrt (this binding needs neither cffi nor numpy)
        import importlib.util

        spec = importlib.util.find_spec("loomrt")
        if spec is not None and spec.submodule_search_locations:
            name = {"win32": "loomrt.dll", "darwin": "libloomrt.dylib"}.get(sys.platform, "libloomrt.so")
            for folder in spec.submodule_search_locations:
                if os.path.isfile(os.path.join(folder, name)):
                    out.append(os.path.join(folder, name))
    except Exception:
        pass
    found = ctypes.util.find_library("loomrt")
    if found:
        out.append(found)
    return out


class Library:
    """The loaded shared library with every function of loomrt.h typed (``lib.lrt_*``)."""

    def __init__(self, path: Optional[str] = None):
        candidates = _library_candidates(path)
        if not candidates:
            raise OSError("libloomrt not found: pass its path to Library(path) or set LOOMRT_LIBRARY "
                          "(build it with `make -C csrc`, or `pip install loomrt`)")
        err: Optional[Exception] = None
        self.cdll: Optional[ctypes.CDLL] = None
        for c in candidates:
            try:
                self.cdll = ctypes.CDLL(c)
                self.path = c
                break
            except OSError as e:
                err = e
        if self.cdll is None:
            raise OSError(f"cannot load libloomrt from {candidates}: {err}")
        self.missing: List[str] = []
        for name, (restype, argtypes) in SIGNATURES.items():
            try:
                fn = getattr(self.cdll, name)
            except AttributeError:  # an older library: that function is unavailable
                self.missing.append(name)
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)

    def check(self, status: int) -> int:
        """Raise :class:`LoomrtError` for a negative status; return it otherwise."""
        if status < 0:
            msg = (self.lrt_last_error() or b"").decode("utf-8", "replace")
            name = (self.lrt_status_name(status) or b"").decode() or _STATUS_NAMES.get(status, "LRT_ERR_UNKNOWN")
            raise LoomrtError(status, name, msg)
        return status

    def version(self) -> str:
        return self.lrt_version_string().decode()


def _bytes(text) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


class Model:
    """An opened model (read-only; share it between threads, one :class:`Session` each).

    ``Model(lib, path)`` opens a folder or .gguf file; ``Model(lib, files={name: bytes})``
    opens files held in memory (copied, so the bytes may be dropped afterwards)."""

    def __init__(self, lib: Library, path: Optional[str] = None, files: Optional[Dict[str, bytes]] = None,
                 flags: int = 0):
        self.lib = lib
        self._h = c_void_p()
        if (path is None) == (files is None):
            raise ValueError("give either path or files")
        if path is not None:
            raw = os.fsencode(path)
            lib.check(lib.lrt_model_open(raw, len(raw), flags, ctypes.byref(self._h)))
        else:
            assert files is not None
            n = len(files)
            names = [_bytes(k) for k in files]
            blobs = [bytes(v) for v in files.values()]
            bufs = [ctypes.create_string_buffer(b, len(b)) for b in blobs]
            lib.check(lib.lrt_model_open_memory(
                n, (c_char_p * n)(*names), (c_size_t * n)(*[len(k) for k in names]),
                (c_void_p * n)(*[ctypes.cast(b, c_void_p) for b in bufs]), (c_size_t * n)(*[len(b) for b in blobs]),
                flags | OPEN_COPY_BUFFERS, ctypes.byref(self._h)))

    def close(self) -> None:
        if self._h:
            self.lib.lrt_model_close(self._h)
            self._h = c_void_p()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def info(self, key: str) -> int:
        out = c_int64()
        self.lib.check(self.lib.lrt_model_get_int(self._h, MODEL_INFO[key], ctypes.byref(out)))
        return out.value

    def string(self, key: str) -> str:
        p, n = c_void_p(), c_size_t()
        self.lib.check(self.lib.lrt_model_get_str(self._h, MODEL_STR[key], ctypes.byref(p), ctypes.byref(n)))
        return ctypes.string_at(p, n.value).decode("utf-8") if n.value else ""

    def has_tokenizer(self) -> bool:
        out = c_int32()
        self.lib.check(self.lib.lrt_model_has_tokenizer(self._h, ctypes.byref(out)))
        return bool(out.value)

    def tokenize(self, text, add_special: bool = True, parse_special: bool = True) -> List[int]:
        raw = _bytes(text)
        flags = (PROMPT_ADD_SPECIAL if add_special else 0) | (PROMPT_PARSE_SPECIAL if parse_special else 0)
        cap = len(raw) + 8
        while True:
            ids = (c_int32 * cap)()
            n = c_int64()
            st = self.lib.lrt_tokenize(self._h, raw, len(raw), flags, ids, cap, ctypes.byref(n))
            if st == LRT_ERR_BUFFER_TOO_SMALL:
                cap = n.value
                continue
            self.lib.check(st)
            return list(ids[: n.value])

    def detokenize(self, ids: Sequence[int], skip_special: bool = False) -> bytes:
        arr = (c_int32 * len(ids))(*ids)
        cap = 16 * len(ids) + 16
        while True:
            buf = ctypes.create_string_buffer(cap)
            n = c_size_t()
            st = self.lib.lrt_detokenize(self._h, arr, len(ids), 1 if skip_special else 0, buf, cap, ctypes.byref(n))
            if st == LRT_ERR_BUFFER_TOO_SMALL:
                cap = n.value
                continue
            self.lib.check(st)
            return buf.raw[: n.value]

    def chat_format(self) -> int:
        out = c_int32()
        self.lib.check(self.lib.lrt_chat_detect(self._h, ctypes.byref(out)))
        return out.value

    def apply_chat(self, messages: Sequence[Dict[str, str]], fmt: int = CHAT_MODEL,
                   add_generation_prompt: bool = True) -> bytes:
        """Render [{"role", "content"}, ...] with a chat format (default: the model's own)."""
        n = len(messages)
        roles = [_bytes(m["role"]) for m in messages]
        contents = [_bytes(m["content"]) for m in messages]
        args = ((c_char_p * n)(*roles), (c_size_t * n)(*map(len, roles)), (c_char_p * n)(*contents),
                (c_size_t * n)(*map(len, contents)))
        need = c_size_t()
        st = self.lib.lrt_chat_apply(self._h, fmt, n, *args, int(add_generation_prompt), None, 0, ctypes.byref(need))
        if st != LRT_ERR_BUFFER_TOO_SMALL:
            self.lib.check(st)
        buf = ctypes.create_string_buffer(need.value + 1)
        self.lib.check(self.lib.lrt_chat_apply(self._h, fmt, n, *args, int(add_generation_prompt), buf, need.value + 1,
                                               ctypes.byref(need)))
        return buf.raw[: need.value]


class Session:
    """KV cache + sampler + generation state over a model; use one per thread."""

    def __init__(self, model: Model, context: int = 0, threads: int = 1):
        self.model = model
        self.lib = model.lib
        self._h = c_void_p()
        self.lib.check(self.lib.lrt_session_new(model._h, context, threads, ctypes.byref(self._h)))

    def close(self) -> None:
        if self._h:
            self.lib.lrt_session_free(self._h)
            self._h = c_void_p()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def configure(self, **params) -> None:
        """Sampler settings: temperature, top_k, top_p, min_p, repeat_penalty, seed,
        repeat_last_n, max_tokens (the pull API's limit, -1 = none)."""
        for k, v in params.items():
            if k in INT_PARAMS:
                self.lib.check(self.lib.lrt_session_set_int(self._h, PARAMS[k], int(v)))
            else:
                self.lib.check(self.lib.lrt_session_set_float(self._h, PARAMS[k], float(v)))

    def info(self, key: int) -> int:
        out = c_int64()
        self.lib.check(self.lib.lrt_session_get_int(self._h, key, ctypes.byref(out)))
        return out.value

    def prompt(self, text, flags: int = PROMPT_ADD_SPECIAL | PROMPT_PARSE_SPECIAL) -> None:
        raw = _bytes(text)
        self.lib.check(self.lib.lrt_session_prompt(self._h, raw, len(raw), flags))

    def prompt_tokens(self, ids: Sequence[int], flags: int = 0) -> None:
        self.lib.check(self.lib.lrt_session_prompt_tokens(self._h, (c_int32 * len(ids))(*ids), len(ids), flags))

    def step(self) -> Tuple[int, bytes]:
        """(token, complete UTF-8 bytes); token -1 means the generation is over."""
        tok, p, n = c_int32(), c_void_p(), c_size_t()
        self.lib.check(self.lib.lrt_session_step(self._h, ctypes.byref(tok), ctypes.byref(p), ctypes.byref(n)))
        return tok.value, ctypes.string_at(p, n.value) if n.value else b""

    def stream(self, text, max_tokens: int = -1,
               flags: int = PROMPT_ADD_SPECIAL | PROMPT_PARSE_SPECIAL) -> Iterator[Tuple[int, bytes]]:
        """Pull API: yield (token, bytes) until the end; a last (-1, bytes) carries held-back text."""
        self.configure(max_tokens=max_tokens)
        self.prompt(text, flags)
        while True:
            tok, piece = self.step()
            if tok < 0:
                if piece:
                    yield tok, piece
                return
            yield tok, piece

    def generate(self, text, max_tokens: int, callback: Optional[Callable[[int, bytes], bool]] = None,
                 flags: int = PROMPT_ADD_SPECIAL | PROMPT_PARSE_SPECIAL) -> Tuple[List[int], bytes]:
        """Push API (lrt_generate): callback(token, bytes) returns True to stop. Returns
        (token ids, text bytes)."""
        ids: List[int] = []
        pieces: List[bytes] = []

        def on_token(_ud, token, ptr, n):
            piece = ctypes.string_at(ptr, n) if n else b""
            if token >= 0:
                ids.append(token)
            pieces.append(piece)
            return 1 if callback is not None and callback(token, piece) else 0

        cb = TOKEN_CALLBACK(on_token)  # kept alive for the call
        raw = _bytes(text)
        self.lib.check(self.lib.lrt_generate(self._h, raw, len(raw), flags, max_tokens, cb, None))
        return ids, b"".join(pieces)


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64-bit hash (the output hash the examples print)."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Generate with libloomrt through ctypes (like bindings/c/example.c).")
    ap.add_argument("model")
    ap.add_argument("prompt")
    ap.add_argument("--library", default=None, help="path of libloomrt (default: $LOOMRT_LIBRARY)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chat", action="store_true")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--callback", action="store_true")
    a = ap.parse_args(argv)
    lib = Library(a.library)
    if a.memory:
        with open(a.model, "rb") as f:
            model = Model(lib, files={"model.gguf": f.read()})
    else:
        model = Model(lib, a.model)
    session = Session(model, threads=a.threads)
    session.configure(temperature=a.temperature, top_p=a.top_p, top_k=a.top_k, seed=a.seed)
    text: bytes = a.prompt.encode("utf-8")
    flags = PROMPT_ADD_SPECIAL | PROMPT_PARSE_SPECIAL
    if a.chat:
        text = model.apply_chat([{"role": "user", "content": a.prompt}])
        flags = PROMPT_PARSE_SPECIAL
    out = sys.stdout.buffer
    ids: List[int] = []
    pieces: List[bytes] = []

    def show(token: int, piece: bytes) -> bool:
        if token >= 0:
            ids.append(token)
        pieces.append(piece)
        out.write(piece)
        out.flush()
        return False

    if a.callback:
        session.generate(text, a.max_tokens, show, flags)
    else:
        for token, piece in session.stream(text, a.max_tokens, flags):
            show(token, piece)
    reason = session.info(SESSION_FINISH_REASON)
    sys.stderr.write("\nids:" + "".join(f" {i}" for i in ids) + "\n")
    sys.stderr.write(f"fnv1a64: {fnv1a64(b''.join(pieces)):016x}\nfinish: {reason}\n")
    session.close()
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

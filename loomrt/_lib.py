"""Thin checked bindings over the private cffi module (layer 2 of 3).

Each function here maps one C call, turns a status code into a typed exception carrying the
library's thread-local message, and converts between C and Python types. No policy lives
here; the friendly classes are in :mod:`loomrt.model`.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import errors
from ._loomrt_cffi import ffi, lib

_STATUS_TO_ERROR = {
    lib.LRT_ERR_INVALID_ARGUMENT: errors.InvalidArgumentError,
    lib.LRT_ERR_NOT_FOUND: errors.NotFoundError,
    lib.LRT_ERR_IO: errors.LoomrtIOError,
    lib.LRT_ERR_FORMAT: errors.FormatError,
    lib.LRT_ERR_UNSUPPORTED: errors.UnsupportedError,
    lib.LRT_ERR_OUT_OF_MEMORY: errors.OutOfMemoryError,
    lib.LRT_ERR_CONTEXT_FULL: errors.ContextFullError,
    lib.LRT_ERR_STATE: errors.StateError,
    lib.LRT_ERR_INTERNAL: errors.InternalError,
    lib.LRT_ERR_BUFFER_TOO_SMALL: errors.InvalidArgumentError,
    lib.LRT_ERR_BUSY: errors.BusyError,
    lib.LRT_ERR_NUMERIC: errors.NumericError,
}


def int_arg(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi]: Python or NumPy integers only (no bool, float or str,
    which would be coerced silently), ArgumentTypeError otherwise; InvalidArgumentError when
    out of range. ``hi`` is inclusive."""
    if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
        raise errors.ArgumentTypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value.__index__())
    if not lo <= v <= hi:
        raise errors.InvalidArgumentError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def float_arg(name: str, value: Any) -> float:
    """``value`` as a float: Python / NumPy ints and floats only (no bool or str)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise errors.ArgumentTypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def write_text(path: Any, text: str) -> None:
    """Write ``text`` to ``path`` (UTF-8); LoomrtIOError naming the path when that fails."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise errors.LoomrtIOError(f"cannot write {os.fspath(path)}: {exc.strerror}") from None


def check(status: int) -> None:
    """Raise the typed exception for a non-zero status, with the library's message."""
    if status == lib.LRT_OK:
        return
    message = ffi.string(lib.lrt_last_error()).decode("utf-8", "replace")
    name = ffi.string(lib.lrt_status_name(status)).decode()
    cls = _STATUS_TO_ERROR.get(status, errors.InternalError)
    raise cls(message or name)


def version() -> str:
    return ffi.string(lib.lrt_version_string()).decode()


def abi_version() -> int:
    return int(lib.lrt_abi_version())


def numerics_version() -> int:
    return int(lib.lrt_numerics_version())


def kernel_path() -> str:
    return ffi.string(lib.lrt_kernel_path()).decode()


def kernel_paths() -> List[str]:
    """Names of the kernel paths this build and machine can run, best first."""
    out: List[str] = []
    name = ffi.new("const char **")
    n = ffi.new("size_t *")
    while lib.lrt_kernels_available(len(out), name, n) == lib.LRT_OK:
        out.append(ffi.unpack(name[0], n[0]).decode())
    return out


def set_kernel_path(name: str) -> None:
    raw = name.encode("utf-8")
    check(lib.lrt_kernels_select(raw, len(raw)))


# ---- models ------------------------------------------------------------------------------


def model_open(path: str, flags: int = 0) -> Any:
    """Open a model; returns an owning cdata handle (closed by the garbage collector)."""
    raw = os.fsencode(path)
    out = ffi.new("lrt_model **")
    check(lib.lrt_model_open(raw, len(raw), flags, out))
    return ffi.gc(out[0], lib.lrt_model_close)


INFO_KEYS = {
    "vocab_size": lib.LRT_INFO_VOCAB_SIZE,
    "context_length": lib.LRT_INFO_CONTEXT_LENGTH,
    "hidden_size": lib.LRT_INFO_HIDDEN_SIZE,
    "layers": lib.LRT_INFO_LAYERS,
    "heads": lib.LRT_INFO_HEADS,
    "kv_heads": lib.LRT_INFO_KV_HEADS,
    "head_dim": lib.LRT_INFO_HEAD_DIM,
    "ffn_size": lib.LRT_INFO_FFN_SIZE,
    "parameters": lib.LRT_INFO_PARAMETERS,
    "weight_bytes": lib.LRT_INFO_WEIGHT_BYTES,
    "resident_bytes": lib.LRT_INFO_RESIDENT_BYTES,
    "bos_token_id": lib.LRT_INFO_BOS_ID,
    "tied_embeddings": lib.LRT_INFO_TIED_EMBEDDINGS,
    "is_gguf": lib.LRT_INFO_IS_GGUF,
    "sliding_window": lib.LRT_INFO_SLIDING_WINDOW,
    "sliding_layers": lib.LRT_INFO_SLIDING_LAYERS,
    "kv_window_rows": lib.LRT_INFO_KV_WINDOW_ROWS,
}
STR_KEYS = {
    "architecture": lib.LRT_STR_ARCHITECTURE,
    "dtype": lib.LRT_STR_DTYPE,
    "source": lib.LRT_STR_SOURCE,
    "name": lib.LRT_STR_NAME,
    "features": lib.LRT_STR_FEATURES,
}


def model_info(handle: Any) -> Dict[str, Any]:
    info: Dict[str, Any] = {}
    v = ffi.new("int64_t *")
    for name, key in INFO_KEYS.items():
        check(lib.lrt_model_get_int(handle, key, v))
        info[name] = int(v[0])
    for name, key in STR_KEYS.items():
        p = ffi.new("const char **")
        n = ffi.new("size_t *")
        check(lib.lrt_model_get_str(handle, key, p, n))
        info[name] = ffi.unpack(p[0], n[0]).decode("utf-8", "replace")
    check(lib.lrt_model_get_int(handle, lib.LRT_INFO_EOS_COUNT, v))
    eos = ffi.new("int32_t *")
    ids = []
    for i in range(int(v[0])):
        check(lib.lrt_model_eos_id(handle, i, eos))
        ids.append(int(eos[0]))
    info["eos_token_ids"] = ids
    info["tied_embeddings"] = bool(info["tied_embeddings"])
    info["is_gguf"] = bool(info["is_gguf"])
    if info["bos_token_id"] < 0:
        info["bos_token_id"] = None
    return info


def model_metadata(handle: Any) -> Dict[str, Any]:
    """All GGUF metadata as plain Python values (lists for arrays). Empty for safetensors."""
    meta: Dict[str, Any] = {}
    key_p = ffi.new("const char **")
    key_n = ffi.new("size_t *")
    typ = ffi.new("int32_t *")
    elem = ffi.new("int32_t *")
    count = ffi.new("int64_t *")
    sp = ffi.new("const char **")
    sn = ffi.new("size_t *")
    iv = ffi.new("int64_t *")
    uv = ffi.new("uint64_t *")
    fv = ffi.new("double *")
    for i in range(int(lib.lrt_model_meta_count(handle))):
        check(lib.lrt_model_meta_key(handle, i, key_p, key_n))
        kb = ffi.unpack(key_p[0], key_n[0])
        check(lib.lrt_model_meta_type(handle, kb, len(kb), typ, elem, count))
        et = elem[0]
        values: List[Any] = []
        for j in range(int(count[0])):
            if et == lib.LRT_META_STRING:
                check(lib.lrt_model_meta_str(handle, kb, len(kb), j, sp, sn))
                values.append(ffi.unpack(sp[0], sn[0]).decode("utf-8"))
            elif et in (lib.LRT_META_FLOAT32, lib.LRT_META_FLOAT64):
                check(lib.lrt_model_meta_float(handle, kb, len(kb), j, fv))
                values.append(float(fv[0]))
            elif et == lib.LRT_META_BOOL:
                check(lib.lrt_model_meta_int(handle, kb, len(kb), j, iv))
                values.append(bool(iv[0]))
            elif et == lib.LRT_META_UINT64:
                check(lib.lrt_model_meta_uint(handle, kb, len(kb), j, uv))
                values.append(int(uv[0]))
            else:
                check(lib.lrt_model_meta_int(handle, kb, len(kb), j, iv))
                values.append(int(iv[0]))
        meta[kb.decode("utf-8")] = values if typ[0] == lib.LRT_META_ARRAY else values[0]
    return meta


# ---- sessions ----------------------------------------------------------------------------


def session_new(model_handle: Any, context: int, threads: int) -> Any:
    out = ffi.new("lrt_session **")
    check(lib.lrt_session_new(model_handle, context, threads, out))
    return ffi.gc(out[0], lib.lrt_session_free)


def session_eval(handle: Any, tokens: List[int], all_logits: bool) -> None:
    arr = ffi.new("int32_t[]", list(tokens)) if tokens else ffi.NULL
    check(lib.lrt_session_eval(handle, arr, len(tokens), 1 if all_logits else 0))


def session_logits(handle: Any) -> np.ndarray:
    """Copy of the last eval's logits as a (rows, vocab) float32 array."""
    p = ffi.new("const float **")
    rows = ffi.new("int64_t *")
    vocab = ffi.new("int64_t *")
    check(lib.lrt_session_logits(handle, p, rows, vocab))
    n = int(rows[0]) * int(vocab[0])
    buf = ffi.buffer(p[0], n * 4)
    return np.frombuffer(buf, dtype=np.float32).reshape(int(rows[0]), int(vocab[0])).copy()


def session_logits_row(handle: Any) -> np.ndarray:
    """The last eval's last logits row (vocab float32) as a view of the session's buffer, not
    a copy: read it before the session's next call."""
    p = ffi.new("const float **")
    rows = ffi.new("int64_t *")
    vocab = ffi.new("int64_t *")
    check(lib.lrt_session_logits(handle, p, rows, vocab))
    v = int(vocab[0])
    return np.frombuffer(ffi.buffer(p[0] + (int(rows[0]) - 1) * v, v * 4), dtype=np.float32)


def session_log_softmax(handle: Any, vocab: int) -> np.ndarray:
    """Log softmax of the last eval's last logits row (vocab float32, loomrt's own fixed-order
    exp and log: the same bits everywhere)."""
    out = np.empty(vocab, dtype=np.float32)
    check(lib.lrt_session_log_softmax(handle, ffi.cast("float *", ffi.from_buffer(out))))
    return out


def session_sample(handle: Any) -> int:
    t = ffi.new("int32_t *")
    check(lib.lrt_session_sample(handle, t))
    return int(t[0])


def session_candidates(handle: Any) -> Tuple[np.ndarray, np.ndarray]:
    ids = ffi.new("const int32_t **")
    probs = ffi.new("const float **")
    n = ffi.new("int64_t *")
    check(lib.lrt_session_candidates(handle, ids, probs, n))
    k = int(n[0])
    return (np.frombuffer(ffi.buffer(ids[0], 4 * k), dtype=np.int32).copy(),
            np.frombuffer(ffi.buffer(probs[0], 4 * k), dtype=np.float32).copy())


def session_set(handle: Any, **params: Any) -> None:
    """Set sampler parameters by name: temperature, top_k, top_p, min_p, repeat_penalty,
    seed, repeat_last_n."""
    floats = {"temperature": lib.LRT_PARAM_TEMPERATURE, "top_p": lib.LRT_PARAM_TOP_P,
              "min_p": lib.LRT_PARAM_MIN_P, "repeat_penalty": lib.LRT_PARAM_REPEAT_PENALTY}
    ints = {"top_k": lib.LRT_PARAM_TOP_K, "seed": lib.LRT_PARAM_SEED,
            "repeat_last_n": lib.LRT_PARAM_REPEAT_LAST_N}
    for name, value in params.items():
        if name in floats:
            check(lib.lrt_session_set_float(handle, floats[name], float_arg(name, value)))
        elif name in ints:
            if name == "seed":  # a 64-bit unsigned seed, passed as the int64 with the same bits
                if isinstance(value, (bool, np.bool_)) or not hasattr(value, "__index__"):
                    raise errors.ArgumentTypeError(f"seed must be an integer, got {type(value).__name__} {value!r}")
                value = int(value.__index__())
                if not 0 <= value < 1 << 64:
                    raise errors.InvalidArgumentError(f"seed must be in [0, 2**64), got {value}")
                if value >= 1 << 63:
                    value -= 1 << 64
            else:
                value = int_arg(name, value, -(1 << 63), (1 << 63) - 1)
            check(lib.lrt_session_set_int(handle, ints[name], value))
        else:
            raise errors.InvalidArgumentError(f"unknown sampler parameter {name!r}")


def session_reset(handle: Any) -> None:
    check(lib.lrt_session_reset(handle))


def session_truncate(handle: Any, pos: int) -> None:
    check(lib.lrt_session_truncate(handle, pos))


def session_kv_rows(handle: Any, layer: int) -> Tuple[int, int]:
    a = ffi.new("int64_t *")
    b = ffi.new("int64_t *")
    check(lib.lrt_session_kv_rows(handle, int_arg("layer", layer, -1, 1 << 30), a, b))
    return int(a[0]), int(b[0])


def session_pool_stats(handle: Any) -> Dict[str, Any]:
    """The counters of a session's thread pool (lrt_session_pool_stat) as a dict."""
    v = ffi.new("int64_t *")

    def get(thread: int, key: int) -> int:
        check(lib.lrt_session_pool_stat(handle, thread, key, v))
        return int(v[0])

    n = get(0, lib.LRT_POOL_STAT_THREADS)
    return {
        "threads": n, "on": bool(get(0, lib.LRT_POOL_STAT_ON)),
        "jobs": get(0, lib.LRT_POOL_STAT_JOBS), "caller_tasks": get(0, lib.LRT_POOL_STAT_TASKS),
        "caller_run_s": get(0, lib.LRT_POOL_STAT_RUN_NS) * 1e-9,
        "caller_wait_s": get(0, lib.LRT_POOL_STAT_WAIT_NS) * 1e-9,
        "caller_sleeps": get(0, lib.LRT_POOL_STAT_SLEEPS),
        "workers": [{"tasks": get(t, lib.LRT_POOL_STAT_TASKS), "joined": get(t, lib.LRT_POOL_STAT_JOBS),
                     "join_after_post_s": get(t, lib.LRT_POOL_STAT_JOIN_NS) * 1e-9,
                     "sleeps": get(t, lib.LRT_POOL_STAT_SLEEPS)} for t in range(1, n)],
    }


def session_pool_stats_reset(handle: Any, on: bool) -> None:
    check(lib.lrt_session_pool_stats_reset(handle, 1 if on else 0))


def session_position(handle: Any) -> int:
    return int(lib.lrt_session_position(handle))


def session_state_save(handle: Any) -> bytes:
    """The session's state blob (lrt_session_state_save)."""
    size = ffi.new("size_t *")
    check(lib.lrt_session_state_size(handle, size))
    buf = ffi.new("uint8_t[]", max(1, int(size[0])))
    written = ffi.new("size_t *")
    check(lib.lrt_session_state_save(handle, buf, int(size[0]), written))
    return bytes(ffi.buffer(buf, int(written[0])))


def session_state_load(handle: Any, blob: bytes) -> None:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise errors.InvalidArgumentError(f"a session state must be bytes, got {type(blob).__name__}")
    data = bytes(blob)
    check(lib.lrt_session_state_load(handle, ffi.from_buffer(data) if data else ffi.new("uint8_t[1]"), len(data)))


# ---- tokenizer (C) -----------------------------------------------------------------------


def model_has_tokenizer(handle: Any) -> bool:
    out = ffi.new("int32_t *")
    check(lib.lrt_model_has_tokenizer(handle, out))
    return bool(out[0])


def tokenize(handle: Any, text: str, add_special: bool = True, parse_special: bool = True) -> List[int]:
    """Token ids of ``text`` from the model's C tokenizer."""
    if not isinstance(text, str):
        raise errors.InvalidArgumentError(f"text must be str, got {type(text).__name__}")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise errors.InvalidArgumentError(f"text is not valid Unicode (lone surrogate at index {exc.start}); "
                                          "decode input bytes with errors='replace' or remove the surrogate") from None
    return tokenize_utf8(handle, raw, add_special, parse_special)


def tokenize_utf8(handle: Any, raw: bytes, add_special: bool = True, parse_special: bool = True) -> List[int]:
    """Token ids of UTF-8 bytes (the C side checks the encoding)."""
    flags = (lib.LRT_TOKENIZE_ADD_SPECIAL if add_special else 0) | (lib.LRT_TOKENIZE_PARSE_SPECIAL if parse_special else 0)
    n = ffi.new("int64_t *")
    cap = len(raw) + 8  # a token covers at least one byte, except rare normalizer growth: retried
    return _unpack_growing("int32_t[]", cap, n,
                           lambda buf, cap: lib.lrt_tokenize(handle, raw, len(raw), flags, buf, cap, n))


def detokenize(handle: Any, ids: List[int], skip_special: bool = False) -> str:
    """Text of ``ids`` from the model's C tokenizer (decoder rules applied)."""
    try:
        arr = ffi.new("int32_t[]", ids) if ids else ffi.NULL
    except (TypeError, OverflowError):
        arr = ffi.new("int32_t[]", [_int32(i) for i in ids])
    flags = lib.LRT_DETOKENIZE_SKIP_SPECIAL if skip_special else 0
    n = ffi.new("size_t *")
    cap = 16 * len(ids) + 16
    text = _unpack_growing("char[]", cap, n,
                           lambda buf, cap: lib.lrt_detokenize(handle, arr, len(ids), flags, buf, cap, n))
    return text.decode("utf-8")


def _unpack_growing(ctype: str, cap: int, n: Any, call: Callable[[Any, int], int]) -> Any:
    """``call(buf, cap)`` into a new ``ctype`` buffer of ``cap`` items, which stores the
    output's length in ``n[0]``; when the C side says the buffer is too small and needs
    more, again with that size. Returns the ``n[0]`` items (ffi.unpack)."""
    while True:
        buf = ffi.new(ctype, cap)
        status = call(buf, cap)
        if status == lib.LRT_ERR_BUFFER_TOO_SMALL and int(n[0]) > cap:
            cap = int(n[0])
            continue
        check(status)
        return ffi.unpack(buf, int(n[0]))


def model_open_memory(files: Dict[str, bytes], flags: int = 0) -> Any:
    """Open a model from named in-memory files (lrt_model_open_memory); the buffers are
    copied (LRT_OPEN_COPY_BUFFERS), so the caller may drop them."""
    names = [ffi.new("char[]", k.encode("utf-8")) for k in files]
    datas = [ffi.from_buffer(v) if v else ffi.new("char[1]") for v in files.values()]
    out = ffi.new("lrt_model **")
    check(lib.lrt_model_open_memory(len(files), ffi.new("const char *[]", names),
                                    ffi.new("size_t[]", [len(k.encode("utf-8")) for k in files]),
                                    ffi.new("const void *[]", datas), ffi.new("size_t[]", [len(v) for v in files.values()]),
                                    flags | lib.LRT_OPEN_COPY_BUFFERS, out))
    return ffi.gc(out[0], lib.lrt_model_close)


def model_get_int(handle: Any, key: int) -> int:
    v = ffi.new("int64_t *")
    check(lib.lrt_model_get_int(handle, key, v))
    return int(v[0])


def model_eog_ids(handle: Any) -> List[int]:
    """The ids that end a generation (lrt_model_eog_id)."""
    out = ffi.new("int32_t *")
    ids = []
    for i in range(model_get_int(handle, lib.LRT_INFO_EOG_COUNT)):
        check(lib.lrt_model_eog_id(handle, i, out))
        ids.append(int(out[0]))
    return ids


def model_chat_template(handle: Any) -> str:
    """The model's chat template source ("" when none)."""
    p = ffi.new("const char **")
    n = ffi.new("size_t *")
    check(lib.lrt_model_get_str(handle, lib.LRT_STR_CHAT_TEMPLATE, p, n))
    return ffi.unpack(p[0], n[0]).decode("utf-8", "replace")


def token_text(handle: Any, token_id: int) -> bytes:
    """Vocabulary text of one token (lrt_token_text)."""
    p = ffi.new("const char **")
    n = ffi.new("size_t *")
    check(lib.lrt_token_text(handle, int(token_id), p, n))
    return ffi.unpack(p[0], n[0])


def token_id(handle: Any, text: bytes) -> Optional[int]:
    """Id of a vocabulary text, None when no token has it (lrt_token_id)."""
    out = ffi.new("int32_t *")
    status = lib.lrt_token_id(handle, text, len(text), out)
    if status == lib.LRT_ERR_NOT_FOUND and model_has_tokenizer(handle):
        return None
    check(status)
    return int(out[0])


def _int32(value: Any) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise errors.InvalidArgumentError(f"token ids must be ints, got {type(value).__name__}")
    v = int(value.__index__())
    if not -(1 << 31) <= v < (1 << 31):
        raise errors.InvalidArgumentError(f"token id {v} is out of range")
    return v


def token_bytes(handle: Any, token_id: int) -> bytes:
    """Bytes of one token alone, as the decoder maps it."""
    p = ffi.new("const char **")
    n = ffi.new("size_t *")
    check(lib.lrt_token_bytes(handle, int(token_id), p, n))
    return ffi.unpack(p[0], int(n[0]))


# ---- batches (lrt_batch_*) -------------------------------------------------------------------


def batch_new(model_handle: Any, threads: int) -> Any:
    out = ffi.new("lrt_batch **")
    check(lib.lrt_batch_new(model_handle, threads, out))
    return ffi.gc(out[0], lib.lrt_batch_free)


def batch_eval(handle: Any, entries: List[Tuple[Any, List[int]]], before_run: Any = None) -> None:
    """Queue (session handle, token ids) entries and run them in one pass. ``before_run()`` is
    called just before the pass starts (the server hands its held work to other threads
    there: each cffi call releases the GIL, and one woken earlier would hold the GIL through
    the queueing calls while this thread waits for it)."""
    lib.lrt_batch_clear(handle)
    for sh, tokens in entries:
        arr = ffi.new("int32_t[]", tokens) if tokens else ffi.NULL
        st = lib.lrt_batch_add(handle, sh, arr, len(tokens))
        if st:
            lib.lrt_batch_clear(handle)
            check(st)
    if before_run is not None:
        before_run()
    check(lib.lrt_batch_eval(handle))


# ---- exact speculative decoding (lrt_spec_*) --------------------------------------------------

SPEC_KEYS = {"k": 0, "adaptive": 1, "lookup": 2, "lookup_min": 3, "max_tokens": 4, "rounds": 5, "proposed": 6,
             "accepted": 7, "draft_evals": 8}


def spec_new(target: Any, draft: Any) -> Any:
    """A speculation over the target session handle (draft: a session handle or None). Free it
    with spec_free before the sessions go."""
    out = ffi.new("lrt_spec **")
    check(lib.lrt_spec_new(target, draft if draft is not None else ffi.NULL, out))
    return out[0]


def spec_free(handle: Any) -> None:
    lib.lrt_spec_free(handle)


def spec_set(handle: Any, **values: int) -> None:
    for key, v in values.items():
        check(lib.lrt_spec_set_int(handle, SPEC_KEYS[key], int(v)))


def spec_get(handle: Any, key: str) -> int:
    out = ffi.new("int64_t *")
    check(lib.lrt_spec_get_int(handle, SPEC_KEYS[key], out))
    return int(out[0])


def spec_start(handle: Any) -> None:
    check(lib.lrt_spec_start(handle))


def spec_next(handle: Any, vocab: int, want_row: bool) -> Tuple[int, Optional[np.ndarray]]:
    """The next token and (want_row) a copy of the logits row it was sampled from."""
    tok = ffi.new("int32_t *")
    row = ffi.new("const float **")
    check(lib.lrt_spec_next(handle, tok, row))
    if not want_row:
        return int(tok[0]), None
    return int(tok[0]), np.frombuffer(ffi.buffer(row[0], 4 * vocab), dtype=np.float32).copy()

"""Friendly Python API (layer 3 of 3): :func:`load`, :class:`Model`, :class:`Session`.

>>> import loomrt
>>> model = loomrt.load("path/to/folder-or-file.gguf", threads=2)
>>> for piece in model.stream("Once upon a time", max_tokens=64, temperature=0.8, seed=7):
...     print(piece, end="", flush=True)
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib, audit, errors
from .resolve import resolve_model_path
from .sampling import SamplingParams, StopScanner, sampling_params
from .tokenizer import Tokenizer

Messages = Sequence[Dict[str, str]]
PromptLike = Union[str, Sequence[int], Messages]


@dataclasses.dataclass
class Timings:
    """Wall-clock timings of one generation, in seconds."""

    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    finish_reason: str = ""  # "stop" (eos or stop string), "length" (max_tokens), "context"
    # speculation (draft= / lookup=): verification chunks, tokens proposed and accepted
    spec_rounds: int = 0
    proposed_tokens: int = 0
    accepted_tokens: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Accepted / proposed tokens of a speculative generation (0 when none were proposed)."""
        return self.accepted_tokens / self.proposed_tokens if self.proposed_tokens else 0.0

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        """Decode speed: generated tokens per second after the first."""
        return self.generated_tokens / self.generate_seconds if self.generate_seconds > 0 else 0.0


@dataclasses.dataclass
class Generation:
    """Result of :meth:`Model.generate`."""

    text: str
    token_ids: List[int]
    prompt_token_ids: List[int]
    finish_reason: str  # "stop" (eos or stop string), "length" (max_tokens) or "context"
    timings: Timings
    receipt: Optional[Dict[str, Any]] = None  # generate(..., receipt=True): see loomrt.audit


class Session:
    """A KV cache plus sampler state over one model: a low-level, step-by-step interface.

    The logits of a position do not depend on how the sequence was split into
    :meth:`eval` calls, nor on the thread count.

    A session belongs to one thread at a time: a call made while another thread (or a
    running :meth:`Model.stream_tokens` generation over this session) uses it raises
    :class:`loomrt.BusyError` instead of mixing the two. For concurrent work, give each
    thread its own session (``model.session()``), or use :meth:`Model.generate`,
    :meth:`Model.chat` and :meth:`Model.stream`, which take a session of their own.
    """

    def __init__(self, model: "Model", context: Optional[int] = None, threads: Optional[int] = None):
        self.model = model  # keeps the model alive while the session exists
        ctx = model.context_length if context is None else \
            _lib.int_arg("context", context, 1, model.info["context_length"])
        n_threads = model.threads if threads is None else _lib.int_arg("threads", threads, 1, 1024)
        self._h = _lib.session_new(model._h, ctx, n_threads)
        self.context = ctx
        # Held for the length of one method call, or of a whole generation (stream_tokens).
        # Never waited on: a second user gets BusyError (a threading.Lock may be released by
        # another thread, which a generator finalized by the garbage collector needs).
        self._lock = threading.Lock()
        self._holder = ""

    def _acquire(self, what: str) -> None:
        if not self._lock.acquire(blocking=False):
            raise errors.BusyError(
                f"Session.{what}: this session is in use by {self._holder or 'another call'} (another thread, "
                "or a generation over it that is still open); a session serves one thread at a time: give each "
                "thread its own (model.session()), or use model.generate / chat / stream, which take their own")
        self._holder = f"a {what} call"

    def _release(self) -> None:
        self._holder = ""
        self._lock.release()

    def _locked(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(handle, *args)`` with the session held for the call (see :meth:`_acquire`)."""
        self._acquire(what)
        try:
            return fn(self._h, *args)
        finally:
            self._release()

    @property
    def position(self) -> int:
        """Number of tokens in the cache."""
        return self._locked("position", _lib.session_position)

    def reset(self) -> None:
        self._locked("reset", _lib.session_reset)

    def kv_rows(self, layer: int = -1) -> Tuple[int, int]:
        """(allocated, limit): positions of keys and values the KV cache of ``layer`` (-1: all
        layers, summed) holds now and the most it will hold: the context for a full-attention
        layer, window + 127 for a sliding-window layer (a ring; unless ``full_kv=True``). Each
        position costs ``2 * kv_heads * head_dim * 4`` bytes (``kv_bytes``)."""
        return self._locked("kv_rows", _lib.session_kv_rows, layer)

    def pool_stats(self) -> Dict[str, Any]:
        """The counters of this session's thread pool (diagnostics, docs/performance.md), counted
        since the last ``reset_pool_stats(True)`` (off until then): ``jobs`` (parallel
        dispatches), the calling thread's ``caller_tasks``, ``caller_run_s`` (time inside jobs),
        ``caller_wait_s`` (waiting for other threads' tasks after its own share),
        ``caller_sleeps``, and per worker its ``tasks``, the jobs it ``joined``,
        ``join_after_post_s`` (summed time from a job being posted to the worker joining it)
        and ``sleeps`` (times it slept before joining); ``threads`` and ``on``."""
        return self._locked("pool_stats", _lib.session_pool_stats)

    def reset_pool_stats(self, on: bool = True) -> None:
        """Zero the thread pool's counters and turn counting on (``on=True``) or off."""
        self._locked("reset_pool_stats", _lib.session_pool_stats_reset, on)

    def kv_bytes(self) -> int:
        """Bytes of keys and values the session holds now (all layers)."""
        i = self.model.info
        return self.kv_rows(-1)[0] * 2 * i["kv_heads"] * i["head_dim"] * 4

    def truncate(self, position: int) -> None:
        """Drop the tokens from ``position`` on. With sliding-window layers (ring KV cache,
        see ``full_kv`` of :class:`Model`) it may step back at most 128 positions from the
        furthest one evaluated, or to 0; further raises StateError."""
        self._locked("truncate", _lib.session_truncate, position)

    def eval(self, token_ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Append tokens and run the model; returns the logits (rows x vocab, float32) of
        every new position (``all_logits``) or of the last one. Raises NumericError when the
        model produces non-finite logits (the message names the layer where values first
        stopped being finite); the session is then unchanged."""
        ids = _check_ids(token_ids, self.model.vocab_size)
        self._acquire("eval")
        try:
            _lib.session_eval(self._h, ids, all_logits)
            return _lib.session_logits(self._h)
        finally:
            self._release()

    def configure(self, params: SamplingParams) -> None:
        self._locked("configure", params.apply)

    def sample(self) -> int:
        """Pick the next token from the last logits (does not append it)."""
        return self._locked("sample", _lib.session_sample)

    def log_softmax(self) -> np.ndarray:
        """Log-probabilities of the next token (vocab float32): the log softmax of the last
        evaluated position's logits, before the sampler's penalty, temperature and filters,
        computed in one fixed order with loomrt's own exp and log (same bits everywhere)."""
        return self._locked("log_softmax", _lib.session_log_softmax, self.model.vocab_size)

    def candidates(self) -> tuple:
        """(ids, probabilities) the last :meth:`sample` chose from, after all filters."""
        return self._locked("candidates", _lib.session_candidates)

    def save_state(self) -> bytes:
        """The whole session state (tokens, KV cache, last logits, sampler settings and seed)
        as a portable, self-checking blob; :meth:`load_state` on a session of the same model
        continues bit-identically."""
        return self._locked("save_state", _lib.session_state_save)

    def load_state(self, blob: bytes) -> None:
        """Restore a blob from :meth:`save_state`. Raises FormatError (corrupt),
        UnsupportedError (other numerics / blob version), InvalidArgumentError (other model)
        or ContextFullError; the session is unchanged then."""
        self._locked("load_state", _lib.session_state_load, blob)


class _SessionPool:
    """The sessions behind a model's friendly API: each generate / chat / stream / logits
    call takes one for itself (an idle one, or a new one when all are busy) and gives it back
    when done, so concurrent calls never share a KV cache. At most ``max_idle`` idle sessions
    are kept for reuse (a KV cache keeps the size of its longest use); extra ones are freed
    when given back. Sessions are reset by their next user."""

    def __init__(self, model: "Model", max_idle: int):
        self._model = model
        self._lock = threading.Lock()
        self._idle: List[Session] = []
        self.max_idle = max_idle

    def take(self) -> Session:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._model.session()

    def give(self, s: Session) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(s)

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)


def _decode_loop(max_tokens: int, next_token: Callable[[], int], at_context: Callable[[int], bool],
                 advance: Optional[Callable[[int], None]], tm: Timings, t1: float, eos: set) -> Iterator[int]:
    """The token loop plain and speculative decoding share: ``next_token()`` picks the next
    token (and calls the step hook); eos stops ("stop"), ``max_tokens`` ends it ("length", set
    by the caller), ``at_context(i)`` after the i-th token yielded ends it ("context");
    ``advance(tok)`` (plain decoding: evaluate the token) runs before the next pick."""
    for i in range(max_tokens):
        tok = next_token()
        if tok in eos:
            tm.finish_reason = "stop"
            break
        tm.generated_tokens += 1
        tm.generate_seconds = time.perf_counter() - t1
        yield tok
        if i + 1 == max_tokens:
            break
        if at_context(i):
            tm.finish_reason = "context"
            break
        if advance is not None:
            advance(tok)


def _check_prompt_type(prompt: Any, chat: bool) -> None:
    """A prompt is text (str), token ids (a sequence or array of ints) or, for chat, a list of
    message dicts. bytes would otherwise pass as a sequence of ints (b"hi" = [104, 105])."""
    what = "messages" if chat else "prompt"
    want = ("a str or a list of {'role': ..., 'content': ...} dicts" if chat else
            "a str (text) or a sequence of int token ids")
    if isinstance(prompt, (bytes, bytearray, memoryview)):
        raise errors.ArgumentTypeError(f"{what} must be {want}, got {type(prompt).__name__}; decode bytes to text "
                                       "first, e.g. prompt.decode('utf-8')")
    if isinstance(prompt, str) or isinstance(prompt, np.ndarray):
        return
    if isinstance(prompt, Mapping) or not isinstance(prompt, Sequence):
        raise errors.ArgumentTypeError(f"{what} must be {want}, got {type(prompt).__name__}")


def _check_ids(token_ids: Sequence[int], vocab: int) -> List[int]:
    if isinstance(token_ids, (str, bytes)):
        raise errors.InvalidArgumentError("expected token ids (a sequence of ints), got text")
    ids = []
    for t in token_ids:
        if isinstance(t, bool) or not hasattr(t, "__index__"):  # ints and numpy integers only
            raise errors.InvalidArgumentError(f"token ids must be integers, got {type(t).__name__} {t!r}")
        ids.append(int(t.__index__()))
    if not ids:
        raise errors.InvalidArgumentError("the token sequence is empty")
    for i, t in enumerate(ids):
        if not 0 <= t < vocab:
            raise errors.InvalidArgumentError(f"token id {t} at index {i} is outside the vocabulary [0, {vocab})")
    return ids


# idle sessions a model keeps for its friendly API (Model.max_idle_sessions)
DEFAULT_IDLE_SESSIONS = 4

# weight types a float model can be quantized to at load (Model(quantize=...), --quantize)
QUANTIZE_TYPES = ("q8_0",)


class Model:
    """A loaded model: weights (memory-mapped, or read into memory with ``mmap=False``),
    configuration and tokenizer."""

    def __init__(self, path: Union[str, os.PathLike], threads: Optional[int] = None,
                 context: Optional[int] = None, allow_unknown_config_keys: bool = False,
                 tokenizer: Optional[Tokenizer] = None, quantize: Optional[str] = None,
                 int8_activations: bool = False, allow_unused_tensors: bool = False, mmap: bool = True,
                 full_kv: bool = False):
        """``quantize="q8_0"`` quantizes the F32/F16/BF16 weight matrices to Q8_0 at load
        (the rule in docs/numerics.md, the bytes gguf-py writes): about half the memory of
        BF16 and faster decode, with outputs equal to a Q8_0 GGUF of the same weights.

        ``int8_activations=True`` is the opt-in speed mode for Q8_0/Q4_0/Q4_1 weights: the
        activations are quantized to 8 bits per block and multiplied as integers (as
        llama.cpp does), still bit-identical across threads, chunking and machines, but not
        equal to the default exact mode, whose answers stay closer to the float model.

        ``allow_unused_tensors=True`` accepts files holding tensors the configured model does
        not use (by default such a file is refused with a FormatError naming the tensor: a
        block_count / num_hidden_layers smaller than the layers present would otherwise be
        skipped silently).

        ``mmap=False`` reads the weight files into memory at load instead of memory-mapping
        them (same results): the process then no longer depends on the files, so one that is
        truncated or replaced in place while the model is loaded (``cp new.gguf model.gguf``
        under a running server) cannot kill it with SIGBUS or change its weights.

        ``full_kv=True`` keeps every position in the KV cache of sliding-window layers. By
        default such a layer (Gemma 2/3 local layers, Mistral, Phi-3) keeps a ring of its
        last window + 127 positions, so its memory is bounded by the window rather than the
        context (the same logits bits); the ring's one limit is that ``Session.truncate``
        can step back at most 128 positions from the furthest one evaluated (or to 0)."""
        t0 = time.perf_counter()
        if quantize is not None and quantize not in QUANTIZE_TYPES:
            raise errors.InvalidArgumentError(f"quantize must be None or one of {', '.join(QUANTIZE_TYPES)}, got {quantize!r}")
        if isinstance(path, (bytes, bytearray)) or not isinstance(path, (str, os.PathLike)):
            raise errors.ArgumentTypeError(f"the model path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = resolve_model_path(os.fspath(path))
        if threads is not None:
            threads = _lib.int_arg("threads", threads, 1, 1024)
        if context is not None:
            context = _lib.int_arg("context", context, 1, 1 << 40)
        self.threads = threads or default_threads()
        if not isinstance(mmap, bool):
            raise errors.InvalidArgumentError(f"mmap must be True or False, got {mmap!r}")
        self.quantize = quantize
        self.int8_activations = bool(int8_activations)
        self.mmap = mmap
        if not isinstance(full_kv, bool):
            raise errors.InvalidArgumentError(f"full_kv must be True or False, got {full_kv!r}")
        self.full_kv = full_kv
        # what chat templates' strftime_now sees when a chat prompt is rendered (None: now);
        # set it (a datetime.date) to render dated templates reproducibly (CLI: --date)
        self.chat_date: Any = None
        flags = (_lib.lib.LRT_OPEN_ALLOW_UNKNOWN_CONFIG_KEYS if allow_unknown_config_keys else 0) | \
            (_lib.lib.LRT_OPEN_QUANTIZE_Q8_0 if quantize == "q8_0" else 0) | \
            (_lib.lib.LRT_OPEN_INT8_ACTIVATIONS if int8_activations else 0) | \
            (_lib.lib.LRT_OPEN_ALLOW_UNUSED_TENSORS if allow_unused_tensors else 0) | \
            (0 if mmap else _lib.lib.LRT_OPEN_NO_MMAP) | \
            (_lib.lib.LRT_OPEN_FULL_KV if full_kv else 0)
        self._h = _lib.model_open(self.path, flags)
        self.info: Dict[str, Any] = _lib.model_info(self._h)
        self.metadata: Dict[str, Any] = _lib.model_metadata(self._h) if self.info["is_gguf"] else {}
        # the C tokenizer loaded with the model (tokenizer.json / GGUF metadata); without one
        # (absent, or unusable: _tok() says why) the model works on token ids only
        self.tokenizer: Optional[Tokenizer] = tokenizer
        if tokenizer is None and _lib.model_has_tokenizer(self._h):
            self.tokenizer = Tokenizer(self._h, source=self.path)
        max_ctx = self.info["context_length"]
        if context is not None and not 1 <= context <= max_ctx:
            raise errors.InvalidArgumentError(f"context must be in [1, {max_ctx}] for this model, got {context}")
        self.context_length = context if context is not None else max_ctx
        self._pool = _SessionPool(self, DEFAULT_IDLE_SESSIONS)
        self.load_seconds = time.perf_counter() - t0

    # ---- facts --------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.info["vocab_size"]

    @property
    def architecture(self) -> str:
        return self.info["architecture"]

    @property
    def eos_token_ids(self) -> List[int]:
        ids = list(self.info["eos_token_ids"])
        if self.tokenizer is not None:
            ids += [t for t in self.tokenizer.eos_token_ids if t not in ids]
        return ids

    def __repr__(self) -> str:
        i = self.info
        return (f"<loomrt.Model {i['architecture']} {i['parameters'] / 1e6:.1f}M params {i['dtype']} "
                f"from {i['source']}: {self.path}>")

    # ---- low level ----------------------------------------------------------------------

    def session(self, context: Optional[int] = None, threads: Optional[int] = None) -> Session:
        """A new independent session (KV cache) on this model."""
        return Session(self, context if context is not None else self.context_length, threads)

    @property
    def max_idle_sessions(self) -> int:
        """Idle sessions kept for reuse by generate / chat / stream / logits (default 4).
        Each call or open stream uses a session of its own; when it ends, its session is kept
        for the next call if fewer than this many are idle, else freed. Raise it to the number
        of threads that call the model at once to avoid creating sessions; 0 keeps none."""
        return self._pool.max_idle

    @max_idle_sessions.setter
    def max_idle_sessions(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise errors.InvalidArgumentError(f"max_idle_sessions must be an integer >= 0, got {n!r}")
        self._pool.max_idle = n

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Logits for every position of a token sequence: float32 array (positions x vocab)."""
        ids = _check_ids(token_ids, self.vocab_size)
        s = self._pool.take()
        try:
            s._acquire("logits")
            try:
                _lib.session_reset(s._h)
                _lib.session_eval(s._h, ids, True)
                return _lib.session_logits(s._h)
            finally:
                s._release()
        finally:
            self._pool.give(s)

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        return self._tok().encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of token ids; ids beyond the tokenizer's vocabulary (padded embedding rows
        that some models have) produce no text."""
        tok = self._tok()
        return tok.decode([int(i) for i in ids if int(i) < tok.vocab_size], skip_special_tokens=skip_special_tokens)

    def _tok(self) -> Tokenizer:
        if self.tokenizer is None:
            try:
                _lib.tokenize(self._h, "")  # a tokenizer that failed to load raises its reason
            except errors.NotFoundError:
                pass
            raise errors.NotFoundError(f"{self.path} has no tokenizer (tokenizer.json or GGUF tokenizer metadata): "
                                       "pass token ids instead of text, or add the model's tokenizer.json to the folder")
        return self.tokenizer

    def apply_chat_template(self, messages: Union[str, Messages], system: Optional[str] = None,
                            date: Any = None) -> str:
        """Render chat messages (or one user message) with the model's chat template.
        ``date`` (a datetime) pins what the template's ``strftime_now`` sees (default: now)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        msgs = list(messages)
        if system is not None:
            msgs = [{"role": "system", "content": system}] + msgs
        return self._tok().apply_chat_template(msgs, add_generation_prompt=True,
                                               date=date if date is not None else self.chat_date)

    # ---- generation ----------------------------------------------------------------------

    def _prompt_ids(self, prompt: Union[PromptLike, Messages], chat: bool) -> List[int]:
        _check_prompt_type(prompt, chat)
        if isinstance(prompt, str) and not prompt:
            raise errors.InvalidArgumentError("the prompt is empty: give some text to continue")
        if chat:
            if not isinstance(prompt, str):
                for i, msg in enumerate(prompt):
                    if not isinstance(msg, dict):
                        raise errors.InvalidArgumentError(
                            f"chat expects a string or a list of {{'role', 'content'}} messages; messages[{i}] is a "
                            f"{type(msg).__name__}, not a dict")
            ids = self.encode(self.apply_chat_template(prompt), add_special_tokens=False)  # type: ignore[arg-type]
        elif isinstance(prompt, str):
            ids = self.encode(prompt)
        else:
            ids = list(prompt)  # type: ignore[arg-type]
        return _check_ids(ids, self.vocab_size)

    def stream_tokens(self, prompt: PromptLike, max_tokens: int = 256, *, chat: bool = False,
                      session: Optional[Session] = None, timings: Optional[Timings] = None,
                      draft: Optional[Union["Model", str, os.PathLike]] = None, lookup: Union[bool, int] = False,
                      speculate_k: int = 8, _step_hook: Optional[Callable[..., None]] = None,
                      **sampling: Any) -> Iterator[int]:
        """Yield generated token ids (eos excluded). Sampling keywords: temperature, top_k,
        top_p, min_p, repetition_penalty, seed.

        Exact speculative decoding (docs/speculative.md): ``draft=`` a model sharing this
        model's vocabulary (a Model, or a path loaded with default settings) and/or
        ``lookup=True`` (prompt lookup, n-grams up to 3; an int sets the longest n-gram)
        propose up to ``speculate_k`` tokens that one chunked evaluation verifies. The tokens
        and every step's logits are bit-identical to plain decoding; only the speed changes."""
        max_tokens = _lib.int_arg("max_tokens", max_tokens, 0, 1 << 62)
        _check_prompt_type(prompt, chat)
        params = sampling_params(sampling)
        spec = _spec_settings(self, draft, lookup, speculate_k)
        ids = self._prompt_ids(prompt, chat)
        # A session of our own for the whole generation: the caller's (held, so that another
        # thread or stream using it meanwhile gets BusyError), or one from the model's pool.
        s = session if session is not None else self._pool.take()
        try:
            s._acquire("stream_tokens")
            try:
                yield from self._generate_on(s, ids, params, max_tokens, timings, _step_hook, spec)
            finally:
                s._release()
        finally:
            if session is None:
                self._pool.give(s)

    def _generate_on(self, s: Session, ids: List[int], params: SamplingParams, max_tokens: int,
                     timings: Optional[Timings], step_hook: Optional[Callable[[Session, int], None]],
                     spec: Optional[Dict[str, Any]] = None) -> Iterator[int]:
        h = s._h
        _lib.session_reset(h)
        params.apply(h)
        if len(ids) > s.context:
            raise errors.ContextFullError(f"the prompt has {len(ids)} tokens but the context holds {s.context}; "
                                          "shorten the prompt or load the model with a larger context")
        tm = timings if timings is not None else Timings()
        t0 = time.perf_counter()
        _lib.session_eval(h, ids, False)
        tm.prompt_tokens = len(ids)
        tm.prompt_seconds = time.perf_counter() - t0
        eos = set(self.eos_token_ids)
        t1 = time.perf_counter()
        tm.finish_reason = "length"
        if spec is not None:
            yield from self._spec_tokens(s, len(ids), max_tokens, spec, tm, t1, eos, step_hook)
            return

        def next_token() -> int:
            tok = _lib.session_sample(h)
            if step_hook is not None:
                step_hook(s, tok)
            return tok

        yield from _decode_loop(max_tokens, next_token, lambda i: _lib.session_position(h) >= s.context,
                                lambda tok: _lib.session_eval(h, [tok], False), tm, t1, eos)
        tm.generate_seconds = time.perf_counter() - t1

    def _spec_tokens(self, s: Session, n_prompt: int, max_tokens: int, spec: Dict[str, Any], tm: Timings,
                     t1: float, eos: set, hook: Optional[Callable[..., None]]) -> Iterator[int]:
        """stream_tokens' loop with exact speculation: the same tokens, stops and hook rows."""
        draft = spec["draft"]
        ds = None
        if draft is not None:  # a draft session of this generation's own (the draft model's pool)
            ds = draft._pool.take()
            ds._acquire("speculative draft")
        try:
            h = _lib.spec_new(s._h, ds._h if ds is not None else None)
        except BaseException:
            if ds is not None:
                ds._release()
                draft._pool.give(ds)
            raise
        try:
            _lib.spec_set(h, k=spec["k"], lookup=spec["lookup"], max_tokens=max_tokens)
            _lib.spec_start(h)
            vocab = self.vocab_size

            def next_token() -> int:
                tok, row = _lib.spec_next(h, vocab, hook is not None)
                if hook is not None:
                    hook(s, tok, row)
                return tok

            # the context check asks where plain decoding's session would stand
            yield from _decode_loop(max_tokens, next_token, lambda i: n_prompt + i >= s.context, None, tm, t1, eos)
        finally:
            tm.spec_rounds = _lib.spec_get(h, "rounds")
            tm.proposed_tokens = _lib.spec_get(h, "proposed")
            tm.accepted_tokens = _lib.spec_get(h, "accepted")
            _lib.spec_free(h)
            if ds is not None:
                ds._release()
                draft._pool.give(ds)
            tm.generate_seconds = time.perf_counter() - t1

    def stream(self, prompt: PromptLike, max_tokens: int = 256, *, stop: Optional[Sequence[str]] = None,
               chat: bool = False, timings: Optional[Timings] = None, **sampling: Any) -> Iterator[str]:
        """Yield text pieces as they are generated. Only complete UTF-8 characters are
        emitted; text is cut before the first stop string. ``draft=``, ``lookup=`` and
        ``speculate_k=``: exact speculative decoding (see :meth:`stream_tokens`)."""
        yield from self._stream_text(prompt, max_tokens, stop, chat, timings, None, sampling)

    def _stream_text(self, prompt: PromptLike, max_tokens: int, stop: Optional[Sequence[str]], chat: bool,
                     timings: Optional[Timings], out_ids: Optional[List[int]], sampling: Dict[str, Any],
                     step_hook: Optional[Callable[[Session, int], None]] = None) -> Iterator[str]:
        _check_prompt_type(prompt, chat)
        if isinstance(prompt, str) and not prompt:
            raise errors.InvalidArgumentError("the prompt is empty: give some text to continue")
        tok = self._tok()
        tm = timings if timings is not None else Timings()
        stops = [s for s in (stop or []) if s]
        if stop is not None and (isinstance(stop, str) or not all(isinstance(s, str) for s in stop)):
            raise errors.InvalidArgumentError("stop must be a list of strings")
        scan = StopScanner(stops)
        decoder = tok.stream_decoder()
        gen = self.stream_tokens(prompt, max_tokens, chat=chat, timings=tm, _step_hook=step_hook, **sampling)
        for t in gen:
            if out_ids is not None:
                out_ids.append(t)
            # ids beyond the tokenizer (padded embedding rows) have no text
            text = scan.feed(decoder.add(t) if t < tok.vocab_size else "")
            if scan.stopped:
                gen.close()
                tm.finish_reason = "stop"
                if text:
                    yield text
                return
            if text:
                yield text
        text = scan.finish(decoder.flush())
        if scan.stopped:
            tm.finish_reason = "stop"
        if text:
            yield text

    def generate(self, prompt: PromptLike, max_tokens: int = 256, *, stop: Optional[Sequence[str]] = None,
                 chat: bool = False, receipt: bool = False, **sampling: Any) -> Generation:
        """Generate a completion; returns text, token ids, finish reason and timings. With
        ``receipt=True`` the result also carries a generation receipt (a JSON-ready dict:
        model and tokenizer hashes, settings, token ids and a digest of every step's logits)
        that :func:`loomrt.verify_receipt` replays. ``draft=``, ``lookup=``, ``speculate_k=``:
        exact speculative decoding (see :meth:`stream_tokens`): same tokens, same receipt."""
        spec_kw = {k: sampling.pop(k) for k in ("draft", "lookup", "speculate_k") if k in sampling}
        timings = Timings()
        ids: List[int] = []
        rec = None
        if receipt:
            rec = audit.StepRecorder()
        if self.tokenizer is None and not isinstance(prompt, str):
            for t in self.stream_tokens(prompt, max_tokens, chat=chat, timings=timings, _step_hook=rec, **spec_kw,
                                        **sampling):
                ids.append(t)
            text = ""
        else:
            text = "".join(self._stream_text(prompt, max_tokens, stop, chat, timings, ids, {**sampling, **spec_kw}, rec))
        prompt_ids = self._prompt_ids(prompt, chat)
        made = None
        if rec is not None:
            made = audit.make_receipt(self, prompt_ids, rec, timings.finish_reason, max_tokens,
                                      dataclasses.asdict(sampling_params(sampling)), self.context_length,
                                      stop=stop, chat=chat)
        return Generation(text=text, token_ids=ids, prompt_token_ids=prompt_ids,
                          finish_reason=timings.finish_reason, timings=timings, receipt=made)

    def chat(self, messages: Union[str, Messages], max_tokens: int = 256, **kwargs: Any) -> Generation:
        """Answer a chat: one user message or a list of {"role", "content"} messages,
        rendered with the model's chat template."""
        return self.generate(messages, max_tokens, chat=True, **kwargs)  # type: ignore[arg-type]

    def inspect(self, prompt: PromptLike, top_k: int = 5, attention: bool = True) -> Any:
        """Hidden states per layer, attention probabilities per layer and head, the logit lens
        and per-token entropy / surprisal of a prompt (a :class:`loomrt.inspection.Inspection`;
        docs/inspect.md)."""
        from .inspection import inspect_model

        return inspect_model(self, prompt, top_k=top_k, attention=attention)


def _spec_settings(model: "Model", draft: Any, lookup: Any, k: Any) -> Optional[Dict[str, Any]]:
    """Checked speculation settings of stream_tokens (None: plain decoding)."""
    if draft is None and (lookup is False or lookup is None or lookup == 0):
        return None
    if isinstance(lookup, bool):
        n = 3 if lookup else 0
    elif lookup is None:
        n = 0
    else:
        n = _lib.int_arg("lookup", lookup, 0, 64)
    k = _lib.int_arg("speculate_k", k, 1, 64)
    if draft is not None and not isinstance(draft, Model):
        if isinstance(draft, (bytes, bytearray)) or not isinstance(draft, (str, os.PathLike)):
            raise errors.ArgumentTypeError(f"draft must be a loomrt.Model or a model path, got {type(draft).__name__}")
        path = resolve_model_path(os.fspath(draft))
        cache = getattr(model, "_draft_models", None)
        if cache is None or cache[0] != path:
            cache = (path, Model(path, threads=model.threads))
            model._draft_models = cache  # type: ignore[attr-defined]
        draft = cache[1]
    if draft is not None and draft.vocab_size != model.vocab_size:
        raise errors.InvalidArgumentError(f"the draft model has {draft.vocab_size} tokens in its vocabulary, this model "
                                          f"{model.vocab_size}: a draft must share the target's vocabulary")
    return {"draft": draft, "lookup": n, "k": k}


def _allowed_cpus() -> List[int]:
    try:
        return sorted(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return list(range(max(1, os.cpu_count() or 1)))


def physical_cores(cpus: Sequence[int], sysfs: str = "/sys/devices/system/cpu") -> Optional[int]:
    """Physical cores among the logical CPUs `cpus` (Linux: CPUs that share a core's SMT
    siblings list count once), or None when the topology cannot be read."""
    cores = set()
    for cpu in cpus:
        path = os.path.join(sysfs, f"cpu{cpu}", "topology", "thread_siblings_list")
        try:
            with open(path, encoding="ascii") as f:
                cores.add(f.read().strip())
        except OSError:
            return None
    return len(cores) or None


def default_threads() -> int:
    """Threads used when none are given: the physical cores this process may run on (SMT
    siblings of one core count once: the kernels are compute- or bandwidth-bound, and a
    second hardware thread on the same core mostly waits). Falls back to the logical CPUs
    where the topology is unknown."""
    cpus = _allowed_cpus()
    return max(1, physical_cores(cpus) or len(cpus))


def load(path: Union[str, os.PathLike], threads: Optional[int] = None, context: Optional[int] = None,
         allow_unknown_config_keys: bool = False, quantize: Optional[str] = None,
         int8_activations: bool = False, allow_unused_tensors: bool = False, mmap: bool = True,
         full_kv: bool = False) -> Model:
    """Load a model from a HuggingFace folder, a ``.gguf`` file or a hub id in the local cache
    (``quantize="q8_0"``: quantize its float weight matrices to Q8_0 at load;
    ``int8_activations=True``: the opt-in integer-dot speed mode; ``allow_unused_tensors=True``:
    accept tensors the model does not use; ``mmap=False``: read the weights into memory instead of
    mapping the files, so that replacing a file under a running process cannot crash it;
    ``full_kv=True``: keep every position in sliding-window layers' KV cache; see :class:`Model`)."""
    return Model(path, threads=threads, context=context, allow_unknown_config_keys=allow_unknown_config_keys,
                 quantize=quantize, int8_activations=int8_activations, allow_unused_tensors=allow_unused_tensors,
                 mmap=mmap, full_kv=full_kv)

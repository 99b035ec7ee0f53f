"""``loomrt serve``: an OpenAI-compatible HTTP server that batches requests and still answers
bit for bit (docs/serving.md).

One scheduler thread per model runs continuous batching over :class:`loomrt.Batch`: between
two steps it admits queued requests (as many as ``max_sessions`` and the KV budget allow),
feeds their prompts in chunks (at most ``prefill_chunk`` prompt tokens per step, so running
streams are not stalled by a long prompt) and advances every running sequence by one token.
Each sequence's logits are bit-identical to the same request run alone (the batch keeps the
single-sequence arithmetic), so every response equals ``Model.generate`` with the same
settings -- and carries the generation receipt that ``loomrt verify`` replays.

The HTTP layer is Starlette on uvicorn; the C work runs in the scheduler threads (cffi
releases the GIL), never on the event loop.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hmac
import json
import math
import os
import queue
import threading
import time
import uuid
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from . import __version__, _lib, errors
from .audit import StepRecorder, make_receipt, model_hash, tokenizer_hash
from .batch import Batch
from .model import Model, Session
from .sampling import SamplingParams, StopScanner

# ---- configuration --------------------------------------------------------------------------


@dataclasses.dataclass
class ServeConfig:
    """Server limits (the CLI's options)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: Optional[str] = None
    kv_memory: int = 1 << 30        # bytes of KV cache all running sequences of a model may hold
    max_sessions: int = 16          # sequences of one model decoding at once (the batch size)
    max_queue: int = 256            # sequences waiting beyond that; more get 429
    prefill_chunk: int = 128        # prompt tokens fed per step (all prefilling sequences together)
    max_tokens_limit: int = 4096    # largest max_tokens a request may ask for
    max_request_bytes: int = 1 << 20
    max_n: int = 16                 # choices per request
    drain_seconds: float = 60.0     # SIGTERM: how long in-flight requests may take to finish


class APIError(Exception):
    """An error answered as OpenAI does: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: Optional[str] = None,
                 code: Optional[str] = None, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def body(self) -> Dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _bad(message: str, param: Optional[str] = None, code: Optional[str] = None) -> APIError:
    return APIError(400, message, param=param, code=code)


# ---- one sequence ---------------------------------------------------------------------------


class Job:
    """One choice of one request: its session, sampler settings, text state and receipt steps.
    Created on the event loop; from submission on only the scheduler thread touches it,
    except ``cancelled`` (set by the event loop when the client goes away)."""

    def __init__(self, index: int, prompt_ids: List[int], params: SamplingParams, max_tokens: int,
                 stop: List[str], chat: bool, emit: Any, logprobs: Optional[int] = None):
        self.index = index
        self.logprobs = logprobs  # None: off; k: each token's log-probability and the k most likely
        self.lp_pending: List[Tuple[int, float, List[Tuple[int, float]], int]] = []  # not yet sent
        self.text_chars = 0      # characters decoded so far (text_offset of the next token)
        self.prompt_ids = prompt_ids
        self.params = params
        self.max_tokens = max_tokens
        self.stop = stop
        self.scan = StopScanner(stop)  # holds back text that may start a stop string
        self.chat = chat
        self.emit = emit  # thread-safe: puts an event into the request's asyncio queue
        self.cancelled = False
        self.session: Optional[Session] = None
        self.fed = 0             # prompt tokens already evaluated
        self.next_token: Optional[int] = None
        self.token_ids: List[int] = []
        self.rec = StepRecorder()
        self.decoder: Any = None
        self.reserve = 0
        self.t_submit = time.perf_counter()
        self.t_first: Optional[float] = None

    def take_logprobs(self) -> List[Tuple[int, float, List[Tuple[int, float]], int]]:
        """The log-probability entries of the tokens sampled since the last event."""
        out, self.lp_pending = self.lp_pending, []
        return out


def _run_items(items: List[Tuple[Any, Any]]) -> None:
    """Run a step's held work in order: (None, task) hashes a receipt row or sends a finished
    sequence's receipt; (emit, event) hands an event to the event loop."""
    i = 0
    while i < len(items):
        fn, arg = items[i]
        i += 1
        many = getattr(fn, "many", None)
        if many is not None and i < len(items) and items[i][0] is fn:
            # consecutive events of one request: handed over in one call (one wake-up)
            args = [arg]
            while i < len(items) and items[i][0] is fn:
                args.append(items[i][1])
                i += 1
            many(args)
            continue
        try:
            arg() if fn is None else fn(arg)
        except Exception as exc:  # noqa: BLE001 - a failed receipt fails its request, not the server
            emit, index = getattr(arg, "job_emit", None), getattr(arg, "job_index", 0)
            if emit is not None:
                emit(("error", index, APIError(500, f"internal error making the receipt: {exc}",
                                               type_="server_error"), []))


def top_logprobs(lp: Any, k: int) -> List[Tuple[int, float]]:
    """The k largest log-probabilities as (id, value), ordered by value then lower id (a total
    order: ties at the k-th value are cut by id, never by a sort's whim)."""
    if k <= 0:
        return []
    import numpy as np

    k = min(k, lp.shape[0])
    kth = np.partition(lp, lp.shape[0] - k)[lp.shape[0] - k]  # the k-th largest value
    ids = np.flatnonzero(lp >= kth)
    order = np.lexsort((ids, -lp[ids]))[:k]
    return [(int(ids[i]), float(lp[ids[i]])) for i in order]


# ---- one model: queue, budget and the scheduler thread -----------------------------------------


def kv_reserve_bytes(info: Dict[str, int], context: int, positions: int) -> int:
    """KV bytes a session of `context` positions holding `positions` allocates: its cache
    grows by doubling from 256 positions up to the context, except that a sliding-window
    layer's ring stops at ``kv_window_rows`` (window + 127; 0 when the model keeps every
    position: no window, ``full_kv=True``, or a context not longer than the ring)."""
    cap = 256
    while cap < positions:
        cap *= 2
    cap = min(cap, context)
    ring = info.get("kv_window_rows", 0)
    windowed = info.get("sliding_layers", 0) if ring else 0
    rows = (info["layers"] - windowed) * cap + windowed * min(cap, ring)
    return rows * info["kv_heads"] * info["head_dim"] * 2 * 4


class ModelWorker:
    """Continuous batching for one model."""

    def __init__(self, name: str, model: Model, cfg: ServeConfig):
        self.name = name
        self.model = model
        self.cfg = cfg
        self.batch = Batch(model, threads=model.threads)
        i = model.info
        self.kv_info = {k: i.get(k, 0) for k in ("layers", "kv_heads", "head_dim", "sliding_layers", "kv_window_rows")}
        self.eos = set(model.eos_token_ids)
        self.created = int(time.time())
        self.waiting: Deque[Job] = collections.deque()
        self.active: List[Job] = []
        self.reserved = 0
        self.cv = threading.Condition()
        self.closing = False
        # metrics (written by the scheduler thread, read by /metrics)
        self.m_steps = 0
        self.m_prompt_tokens = 0
        self.m_generated_tokens = 0
        self.m_last_batch = 0
        self.m_finished: Dict[str, int] = collections.Counter()
        self.m_recent: Deque[Tuple[float, int]] = collections.deque()
        self.m_ttft: Deque[float] = collections.deque(maxlen=1000)
        model_hash(model)       # hash the files now, not in the first request
        tokenizer_hash(model)
        # receipts: each sampled step's logits row is hashed (SHA-256 of its canonical bytes)
        # by a second thread, in order, while the scheduler runs the next batched step; a
        # finished sequence's receipt and "done" event come from there after its last row
        self.receipts: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        # a step's events and receipt tasks wait here (in order) until the scheduler is about
        # to enter the next batched step (or goes idle); then they go to the receipts thread in
        # one put, which hashes the rows and wakes the event loop while the C step runs with the
        # GIL released (a wake-up from the scheduler itself would hand the GIL to the event
        # loop and make the scheduler wait for it before starting the step)
        self.pending: List[Tuple[Any, Any]] = []
        self.receipt_thread = threading.Thread(target=self._receipts_loop, name=f"loomrt-receipts-{name}", daemon=True)
        self.receipt_thread.start()
        self.thread = threading.Thread(target=self._run, name=f"loomrt-serve-{name}", daemon=True)
        self.thread.start()

    # -- budget --

    def positions_needed(self, prompt_len: int, max_tokens: int) -> int:
        return min(self.model.context_length, prompt_len + max_tokens)

    def reserve_bytes(self, positions: int) -> int:
        return kv_reserve_bytes(self.kv_info, self.model.context_length, positions)

    # -- submission (event loop thread) --

    def submit(self, jobs: List[Job]) -> None:
        with self.cv:
            if self.closing:
                raise APIError(503, "the server is shutting down", type_="server_error", code="shutting_down",
                               headers={"Retry-After": "5"})
            free = max(0, self.cfg.max_sessions - len(self.active))
            if len(self.waiting) + len(jobs) > self.cfg.max_queue + free:
                raise APIError(429, f"the queue of model {self.name!r} is full ({len(self.waiting)} sequences waiting, "
                               f"at most {self.cfg.max_queue} beyond the {self.cfg.max_sessions} running); retry "
                               "later", type_="rate_limit_error", code="queue_full", headers={"Retry-After": "1"})
            for j in jobs:
                j.reserve = self.reserve_bytes(self.positions_needed(len(j.prompt_ids), j.max_tokens))
                self.waiting.append(j)
            self.cv.notify()

    def cancel(self, jobs: Sequence[Job]) -> None:
        with self.cv:
            for j in jobs:
                j.cancelled = True
            self.cv.notify()

    def close(self) -> None:
        with self.cv:
            self.closing = True
            self.cv.notify()
        self.thread.join(timeout=30)
        self.receipts.put(None)
        self.receipt_thread.join(timeout=30)

    def _receipts_loop(self) -> None:
        """Runs each step's held work in order: (None, task) hashes a receipt row or sends a
        finished sequence's receipt; (emit, event) hands an event to the event loop."""
        while True:
            items = self.receipts.get()
            if items is None:
                return
            _run_items(items)

    # -- the scheduler thread --

    def _admit(self) -> None:
        """Move waiting sequences into the batch, first come first served, while the batch
        has room and the KV budget allows (a sequence larger than the whole budget runs
        alone)."""
        while self.waiting and len(self.active) < self.cfg.max_sessions:
            j = self.waiting[0]
            if j.cancelled:
                self.waiting.popleft()
                continue
            if self.active and self.reserved + j.reserve > self.cfg.kv_memory:
                break
            self.waiting.popleft()
            self.reserved += j.reserve
            self.active.append(j)

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.closing and not self.waiting and not self.active:
                    self.cv.wait()
                if self.closing and not self.active:
                    for j in self.waiting:
                        j.emit(("error", j.index, APIError(503, "the server is shutting down", type_="server_error"), []))
                    self.waiting.clear()
                    return
                self._admit()
                jobs = list(self.active)
            try:
                self._step(jobs)
            except Exception as exc:  # noqa: BLE001 - report to every request of the step, keep serving
                for j in jobs:
                    self._finish(j, None, error=APIError(500, f"internal error: {exc}", type_="server_error"))
            if not self.active:
                self._flush()

    def _flush(self) -> None:
        """Hand the held events and receipt tasks to the receipts thread, in the order they
        were made."""
        if self.pending:
            pending, self.pending = self.pending, []
            self.receipts.put(pending)

    def _start(self, j: Job) -> None:
        j.session = self.model.session(context=self.model.context_length, threads=1)
        j.session.configure(j.params)
        if self.model.tokenizer is not None:
            j.decoder = self.model.tokenizer.stream_decoder()

    def _step(self, jobs: List[Job]) -> None:
        entries: List[Tuple[Session, List[int]]] = []
        sampling: List[Job] = []
        budget = self.cfg.prefill_chunk
        for j in jobs:
            if j.cancelled:
                self._finish(j, None)
                continue
            if j.session is None:
                self._start(j)
            assert j.session is not None
            if j.fed < len(j.prompt_ids):
                if budget <= 0:
                    continue
                n = min(budget, len(j.prompt_ids) - j.fed)
                entries.append((j.session, j.prompt_ids[j.fed:j.fed + n]))
                j.fed += n
                budget -= n
                self.m_prompt_tokens += n
                if j.fed == len(j.prompt_ids):
                    sampling.append(j)
            else:
                assert j.next_token is not None
                entries.append((j.session, [j.next_token]))
                sampling.append(j)
        if not entries:
            self._flush()
            return
        # the previous step's events and receipt rows go out as this one's C pass starts
        self.batch.eval(entries, _before_run=self._flush)
        self.m_steps += 1
        self.m_last_batch = len(entries)
        now = time.perf_counter()
        made = 0
        for j in sampling:
            made += self._sample(j)
        self.m_generated_tokens += made
        self.m_recent.append((now, made))
        while self.m_recent and self.m_recent[0][0] < now - 10.0:
            self.m_recent.popleft()

    def _sample(self, j: Job) -> int:
        """One sampling step of a sequence, as Model.stream_tokens / Model._stream_text do it."""
        s = j.session
        assert s is not None
        lp = s.log_softmax() if j.logprobs is not None else None
        tok = s.sample()
        row = _lib.session_logits(s._h)[-1]  # a copy: the next step overwrites the session's
        rec = j.rec
        self.pending.append((None, lambda: rec(None, tok, row)))
        if j.t_first is None:
            j.t_first = time.perf_counter()
            self.m_ttft.append(j.t_first - j.t_submit)
        if tok in self.eos:
            self._finish(j, "stop")
            return 0
        j.token_ids.append(tok)
        tokenizer = self.model.tokenizer
        piece = j.decoder.add(tok) if j.decoder is not None and tok < tokenizer.vocab_size else ""
        if lp is not None:
            j.lp_pending.append((tok, float(lp[tok]), top_logprobs(lp, j.logprobs or 0), j.text_chars))
        j.text_chars += len(piece)
        text = j.scan.feed(piece)
        if text:
            self.pending.append((j.emit, ("text", j.index, text, j.take_logprobs())))
        if j.scan.stopped:
            self._finish(j, "stop", flushed=True)
            return 1
        if len(j.token_ids) == j.max_tokens:
            self._finish(j, "length")
        elif s.position >= s.context:
            self._finish(j, "context")
        else:
            j.next_token = tok
        return 1

    def _finish(self, j: Job, reason: Optional[str], error: Optional[APIError] = None, flushed: bool = False) -> None:
        """End a sequence: flush its text, send its receipt, free its session and budget."""
        if j in self.active:
            self.active.remove(j)
            self.reserved -= j.reserve
        session, j.session = j.session, None
        if reason is not None and error is None and not j.cancelled:
            if not flushed:
                text = j.scan.finish(j.decoder.flush() if j.decoder is not None else "")
                if j.scan.stopped:
                    reason = "stop"
                if text:
                    self.pending.append((j.emit, ("text", j.index, text, j.take_logprobs())))
            self.m_finished[reason] += 1
            done = {"finish_reason": "length" if reason == "context" else reason, "loomrt_finish_reason": reason,
                    "token_ids": list(j.token_ids), "prompt_tokens": len(j.prompt_ids),
                    "completion_tokens": len(j.token_ids)}
            lps = j.take_logprobs()
            model, rec, emit, index = self.model, j.rec, j.emit, j.index
            args = (j.prompt_ids, reason, j.max_tokens, dataclasses.asdict(j.params), self.model.context_length,
                    j.stop, j.chat)

            def send() -> None:  # on the receipts thread, after this sequence's last row
                prompt_ids, why, max_tokens, params, context, stop, chat = args
                done["receipt"] = make_receipt(model, prompt_ids, rec, why, max_tokens, params, context, stop=stop,
                                               chat=chat)
                emit(("done", index, done, lps))

            send.job_emit, send.job_index = emit, index  # type: ignore[attr-defined]
            self.pending.append((None, send))
        elif error is not None:
            self.m_finished["error"] += 1
            self.pending.append((j.emit, ("error", j.index, error, [])))
        else:
            self.m_finished["cancelled"] += 1
        del session  # frees the KV cache now (the last reference)

    # -- metrics --

    def tokens_per_second(self) -> float:
        now = time.perf_counter()
        recent = [(t, n) for t, n in list(self.m_recent) if t >= now - 10.0]
        return sum(n for _, n in recent) / 10.0 if recent else 0.0


# ---- request parsing ----------------------------------------------------------------------------

_IGNORED_FIELDS = {"user", "metadata", "store", "service_tier"}
_COMMON_FIELDS = {"model", "max_tokens", "temperature", "top_p", "seed", "stop", "n", "stream", "stream_options",
                  "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_k", "min_p",
                  "repetition_penalty"} | _IGNORED_FIELDS
_COMPLETION_FIELDS = _COMMON_FIELDS | {"prompt", "echo", "best_of", "suffix"}
_CHAT_FIELDS = _COMMON_FIELDS | {"messages", "top_logprobs", "max_completion_tokens", "tools", "tool_choice",
                                 "functions", "function_call", "response_format", "parallel_tool_calls"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(body: Dict[str, Any], key: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(key)
    if v is None:
        return default
    if not _is_num(v):
        raise _bad(f"'{key}' must be a number, got {json.dumps(v)[:40]}", param=key)
    if v < lo or v > hi or (lo_open and v == lo):
        left = "(" if lo_open else "["
        raise _bad(f"'{key}' must be in {left}{lo:g}, {hi:g}], got {v}", param=key)
    return float(v)


def _int(body: Dict[str, Any], key: str, default: Optional[int], lo: int, hi: int) -> Optional[int]:
    v = body.get(key)
    if v is None:
        return default
    if not _is_int(v):
        raise _bad(f"'{key}' must be an integer, got {json.dumps(v)[:40]}", param=key)
    if not lo <= v <= hi:
        raise _bad(f"'{key}' must be in [{lo}, {hi}], got {v}", param=key)
    return v


@dataclasses.dataclass
class Parsed:
    worker: ModelWorker
    prompts: List[Any]
    chat: bool
    params: SamplingParams
    max_tokens: Optional[int]
    stop: List[str]
    n: int
    stream: bool
    include_usage: bool
    logprobs: Optional[int] = None  # None: off; k >= 0: each token's log-probability and the k most likely


def parse_request(body: Any, chat: bool, workers: Dict[str, ModelWorker], cfg: ServeConfig) -> Parsed:
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    known = _CHAT_FIELDS if chat else _COMPLETION_FIELDS
    unknown = sorted(k for k in body if k not in known)
    if unknown:
        raise _bad(f"unknown field(s) {unknown}: loomrt serve does not know them (see docs/serving.md for the "
                   "supported fields)", param=unknown[0])
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise _bad("'model' is required: the name of a served model (GET /v1/models lists them)", param="model")
    if name not in workers:
        raise APIError(404, f"the model {name!r} does not exist; served: {sorted(workers)}", param="model",
                       code="model_not_found")
    worker = workers[name]
    # refused features: a clear 400 rather than a silently different answer
    for key, ok in (("presence_penalty", lambda v: v in (None, 0, 0.0)), ("frequency_penalty", lambda v: v in (None, 0, 0.0)),
                    ("logit_bias", lambda v: v in (None, {})), ("echo", lambda v: v in (None, False)),
                    ("suffix", lambda v: v is None), ("tools", lambda v: v in (None, [])),
                    ("tool_choice", lambda v: v in (None, "none")), ("functions", lambda v: v in (None, [])),
                    ("function_call", lambda v: v in (None, "none")), ("parallel_tool_calls", lambda v: v is None or isinstance(v, bool)),
                    ("response_format", lambda v: v is None or v == {"type": "text"})):
        if key in body and not ok(body[key]):
            raise _bad(f"'{key}' is not supported by loomrt serve (only its default is accepted); the alternatives "
                       "are listed in docs/serving.md", param=key, code="unsupported_parameter")
    n = _int(body, "n", 1, 1, cfg.max_n)
    assert n is not None
    if not chat and body.get("best_of") not in (None, n):
        raise _bad("'best_of' is not supported (only best_of = n)", param="best_of", code="unsupported_parameter")
    temperature = _num(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _num(body, "top_p", 1.0, 0.0, 1.0, lo_open=True)
    min_p = _num(body, "min_p", 0.0, 0.0, 1.0)
    rep = _num(body, "repetition_penalty", 1.0, 0.0, 100.0, lo_open=True)
    top_k = _int(body, "top_k", 0, 0, 1 << 31)
    seed = _int(body, "seed", 0, -(1 << 63), (1 << 63) - 1)
    key = "max_tokens"
    if chat and body.get("max_completion_tokens") is not None:
        key = "max_completion_tokens"
    if body.get(key) is not None and _is_int(body[key]) and body[key] > cfg.max_tokens_limit:
        raise _bad(f"'{key}' is {body[key]}, more than this server allows ({cfg.max_tokens_limit}, "
                   "--max-tokens-limit)", param=key)
    max_tokens = _int(body, key, None if chat else 16, 1, cfg.max_tokens_limit)
    stop_v = body.get("stop")
    if stop_v is None:
        stop: List[str] = []
    elif isinstance(stop_v, str):
        stop = [stop_v]
    elif isinstance(stop_v, list) and all(isinstance(s, str) for s in stop_v) and len(stop_v) <= 16:
        stop = list(stop_v)
    else:
        raise _bad("'stop' must be a string or a list of at most 16 strings", param="stop")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", param="stream")
    so = body.get("stream_options")
    include_usage = False
    if so is not None:
        if not isinstance(so, dict) or set(so) - {"include_usage"} or not isinstance(so.get("include_usage", False), bool):
            raise _bad("'stream_options' must be {\"include_usage\": bool}", param="stream_options")
        if not stream:
            raise _bad("'stream_options' is only allowed with stream = true", param="stream_options")
        include_usage = bool(so.get("include_usage", False))
    logprobs = _logprobs(body, chat)
    params = SamplingParams(temperature=temperature, top_k=int(top_k or 0), top_p=top_p, min_p=min_p,
                            repetition_penalty=rep, seed=int(seed or 0))
    if chat:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise _bad("'messages' must be a non-empty list of {\"role\", \"content\"} objects", param="messages")
        conv = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
                raise _bad(f"messages[{i}] must be an object with a role of system, user or assistant", param="messages")
            c = m.get("content")
            if isinstance(c, list):
                parts = []
                for p in c:
                    if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                        raise _bad(f"messages[{i}].content: only text parts are supported", param="messages")
                    parts.append(p["text"])
                c = "".join(parts)
            if not isinstance(c, str):
                raise _bad(f"messages[{i}].content must be a string or a list of text parts", param="messages")
            role = "system" if m["role"] == "developer" else m["role"]
            conv.append({"role": role, "content": c})
        prompts: List[Any] = [conv]
    else:
        p = body.get("prompt")
        if isinstance(p, str) or (isinstance(p, list) and p and all(_is_int(t) for t in p)):
            prompts = [p]
        elif isinstance(p, list) and p and all(isinstance(x, str) or (isinstance(x, list) and x and all(_is_int(t) for t in x))
                                              for x in p):
            prompts = list(p)
        else:
            raise _bad("'prompt' must be a non-empty string, a list of token ids, or a list of those", param="prompt")
        if len(prompts) * n > cfg.max_n:
            raise _bad(f"{len(prompts)} prompts x n = {n} is more than {cfg.max_n} choices per request", param="n")
    return Parsed(worker, prompts, chat, params, max_tokens, stop, n, stream, include_usage, logprobs)


MAX_TOP_LOGPROBS = 20


def _logprobs(body: Dict[str, Any], chat: bool) -> Optional[int]:
    """Completions: 'logprobs' = k (0-20) -> each token's log-probability and the k most likely.
    Chat: 'logprobs' = true, 'top_logprobs' = k (0-20)."""
    if not chat:
        if body.get("logprobs") is False:
            return None
        return _int(body, "logprobs", None, 0, MAX_TOP_LOGPROBS)
    on = body.get("logprobs")
    if on is not None and not isinstance(on, bool):
        raise _bad(f"'logprobs' must be a boolean (then 'top_logprobs' = 0-{MAX_TOP_LOGPROBS} sets how many "
                   f"alternatives), got {json.dumps(on)[:40]}", param="logprobs")
    k = _int(body, "top_logprobs", None, 0, MAX_TOP_LOGPROBS)
    if k is not None and not on:
        raise _bad("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    return (k or 0) if on else None


# prompts up to this many characters (all of a request's together) are tokenized on the event
# loop; longer ones on a worker thread, so that a huge prompt does not hold up other requests
INLINE_TOKENIZE_CHARS = 4096


def _prompt_chars(p: Parsed) -> int:
    """Characters (or token ids) in a parsed request's prompts or messages."""
    n = 0
    for prompt in p.prompts:
        if isinstance(prompt, str):
            n += len(prompt)
        elif prompt and isinstance(prompt[0], dict):  # chat messages
            n += sum(len(m["content"]) + 16 for m in prompt)
        else:
            n += len(prompt)
    return n


def tokenize_prompts(p: Parsed, cfg: ServeConfig) -> List[List[int]]:
    """Token ids of each prompt, as Model.generate makes them (runs off the event loop)."""
    model = p.worker.model
    out = []
    for prompt in p.prompts:
        if isinstance(prompt, str) and not prompt:
            raise _bad("the prompt is empty", param="prompt")
        try:
            ids = model._prompt_ids(prompt, p.chat)
        except errors.NotFoundError as exc:
            raise _bad(f"this model has no tokenizer: send token ids ({exc})", param="prompt") from None
        except errors.LoomrtError as exc:
            raise _bad(str(exc), param="messages" if p.chat else "prompt") from None
        ctx = model.context_length
        if len(ids) > ctx:
            raise _bad(f"the prompt has {len(ids)} tokens but the model's context holds {ctx}: shorten it",
                       param="messages" if p.chat else "prompt", code="context_length_exceeded")
        out.append(ids)
    return out


# ---- the app ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _fingerprint() -> str:
    return f"loomrt-{__version__}-numerics{_lib.numerics_version()}"


def create_app(models: Dict[str, Model], cfg: Optional[ServeConfig] = None) -> Any:
    """The Starlette app serving `models` (name -> loaded Model)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    cfg = cfg or ServeConfig()
    if not models:
        raise errors.InvalidArgumentError("no model to serve")
    workers: Dict[str, ModelWorker] = {}
    state = {"requests": collections.Counter(), "started": time.time()}

    def err(e: APIError) -> JSONResponse:
        state["requests"][str(e.status)] += 1
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    def check_key(request: Request) -> None:
        if cfg.api_key is None:
            return
        h = request.headers.get("authorization", "")
        given = h[7:] if h.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), cfg.api_key.encode()):
            raise APIError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    async def read_json(request: Request) -> Any:
        cl = request.headers.get("content-length")
        if cl is not None and cl.isdigit() and int(cl) > cfg.max_request_bytes:
            raise APIError(413, f"the request body has {cl} bytes, more than this server accepts "
                           f"({cfg.max_request_bytes}, --max-request-bytes)", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_request_bytes:
                raise APIError(413, f"the request body is larger than this server accepts ({cfg.max_request_bytes} "
                               "bytes, --max-request-bytes)", code="request_too_large")
            chunks.append(chunk)

        def no_constants(name: str) -> Any:
            raise ValueError(f"{name} is not valid JSON")

        try:
            return json.loads(b"".join(chunks).decode("utf-8"), parse_constant=no_constants)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _bad(f"the request body is not valid JSON: {exc}") from None

    async def generate(request: Request, chat: bool) -> Response:
        try:
            check_key(request)
            body = await read_json(request)
            p = parse_request(body, chat, workers, cfg)
            if _prompt_chars(p) <= INLINE_TOKENIZE_CHARS:
                ids_list = tokenize_prompts(p, cfg)  # well under a millisecond: no thread hop
            else:
                ids_list = await run_in_threadpool(tokenize_prompts, p, cfg)
        except APIError as e:
            return err(e)
        worker = p.worker
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def emit(ev: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, ev)
            except RuntimeError:  # the event loop is gone (shutdown): nobody is listening
                pass

        def emit_many(evs: List[Any]) -> None:
            try:
                loop.call_soon_threadsafe(_put_all, queue, evs)
            except RuntimeError:
                pass

        emit.many = emit_many  # type: ignore[attr-defined]

        jobs: List[Job] = []
        for pi, ids in enumerate(ids_list):
            for k in range(p.n):
                params = dataclasses.replace(p.params, seed=p.params.seed + k) if k else p.params
                mt = p.max_tokens if p.max_tokens is not None else \
                    max(1, min(cfg.max_tokens_limit, worker.model.context_length - len(ids)))
                jobs.append(Job(len(jobs), ids, params, mt, p.stop, chat, emit, p.logprobs))
        try:
            worker.submit(jobs)
        except APIError as e:
            return err(e)
        state["requests"]["200"] += 1
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        model_name = worker.name
        obj = "chat.completion" if chat else "text_completion"
        prompt_tokens = sum(len(ids_list[i // p.n]) for i in range(len(jobs)))

        def logprobs_json(entries: List[Any]) -> Optional[Dict[str, Any]]:
            """OpenAI's logprobs object for entries (token, logprob, top, text offset); None when
            the request did not ask for log-probabilities."""
            if p.logprobs is None:
                return None
            tok = worker.model.tokenizer
            if chat:
                def one(t: int, v: float) -> Dict[str, Any]:
                    b = _token_bytes(tok, t)
                    return {"token": _token_str(b), "logprob": v, "bytes": list(b)}
                return {"content": [dict(one(t, v), top_logprobs=[one(a, w) for a, w in top]) for t, v, top, _ in entries],
                        "refusal": None}
            tops = []
            for t, v, top, _ in entries:
                d = {_token_str(_token_bytes(tok, a)): w for a, w in top}
                d.setdefault(_token_str(_token_bytes(tok, t)), v)  # the sampled token is always listed
                tops.append(d)
            return {"tokens": [_token_str(_token_bytes(tok, t)) for t, _, _, _ in entries],
                    "token_logprobs": [v for _, v, _, _ in entries], "top_logprobs": tops,
                    "text_offset": [o for _, _, _, o in entries]}

        if p.stream:
            async def events() -> Any:
                done = 0
                completion = 0
                try:
                    if chat:
                        for j in jobs:
                            yield _sse({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model_name,
                                        "system_fingerprint": _fingerprint(),
                                        "choices": [{"index": j.index, "delta": {"role": "assistant", "content": ""},
                                                     "logprobs": None, "finish_reason": None}]})
                    while done < len(jobs):
                        # every event already waiting goes out in one write (one wake-up of the
                        # client): the last token, the final chunk and [DONE] usually come together
                        out: List[bytes] = []
                        ev = await queue.get()
                        while True:
                            kind, idx, data, lps = ev
                            if kind == "error":
                                out.append(_sse(data.body()))
                                yield b"".join(out)
                                return
                            lp_obj = logprobs_json(lps)
                            if kind == "text":
                                choice = ({"index": idx, "delta": {"content": data}, "logprobs": lp_obj,
                                           "finish_reason": None}
                                          if chat else {"index": idx, "text": data, "logprobs": lp_obj, "finish_reason": None})
                            else:
                                done += 1
                                completion += data["completion_tokens"]
                                ext = {"receipt": data["receipt"], "token_ids": data["token_ids"],
                                       "finish_reason": data["loomrt_finish_reason"]}
                                choice = ({"index": idx, "delta": {}, "logprobs": lp_obj,
                                           "finish_reason": data["finish_reason"], "loomrt": ext} if chat else
                                          {"index": idx, "text": "", "logprobs": lp_obj,
                                           "finish_reason": data["finish_reason"], "loomrt": ext})
                            out.append(_sse({"id": rid, "object": obj + ".chunk" if chat else obj, "created": created,
                                             "model": model_name, "system_fingerprint": _fingerprint(),
                                             "choices": [choice]}))
                            if done == len(jobs) or queue.empty():
                                break
                            ev = queue.get_nowait()
                        if done == len(jobs):
                            if p.include_usage:
                                out.append(_sse({"id": rid, "object": obj + ".chunk" if chat else obj, "created": created,
                                                 "model": model_name, "system_fingerprint": _fingerprint(), "choices": [],
                                                 "usage": _usage(prompt_tokens, completion)}))
                            out.append(b"data: [DONE]\n\n")
                        yield b"".join(out)
                finally:
                    worker.cancel(jobs)  # a client that went away frees its sessions at once

            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        texts = [""] * len(jobs)
        all_lps: List[List[Any]] = [[] for _ in jobs]
        results: Dict[int, Dict[str, Any]] = {}
        try:
            while len(results) < len(jobs):
                try:
                    kind, idx, data, lps = await asyncio.wait_for(queue.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        worker.cancel(jobs)
                        return Response(status_code=499)
                    continue
                if kind == "error":
                    worker.cancel(jobs)
                    return err(data)
                all_lps[idx] += lps
                if kind == "text":
                    texts[idx] += data
                else:
                    results[idx] = data
        finally:
            worker.cancel(jobs)
        choices = []
        for j in jobs:
            d = results[j.index]
            ext = {"receipt": d["receipt"], "token_ids": d["token_ids"], "finish_reason": d["loomrt_finish_reason"]}
            if chat:
                choices.append({"index": j.index, "message": {"role": "assistant", "content": texts[j.index]},
                                "logprobs": logprobs_json(all_lps[j.index]), "finish_reason": d["finish_reason"],
                                "loomrt": ext})
            else:
                choices.append({"index": j.index, "text": texts[j.index], "logprobs": logprobs_json(all_lps[j.index]),
                                "finish_reason": d["finish_reason"], "loomrt": ext})
        completion = sum(results[i]["completion_tokens"] for i in results)
        return JSONResponse({"id": rid, "object": obj, "created": created, "model": model_name,
                             "system_fingerprint": _fingerprint(), "choices": choices,
                             "usage": _usage(prompt_tokens, completion)})

    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    async def chat_completions(request: Request) -> Response:
        return await generate(request, chat=True)

    def model_card(w: ModelWorker) -> Dict[str, Any]:
        i = w.model.info
        return {"id": w.name, "object": "model", "created": w.created, "owned_by": "loomrt",
                "loomrt": {"architecture": i["architecture"], "dtype": i["dtype"], "context_length": w.model.context_length,
                           "model_hash": model_hash(w.model).hash, "numerics_version": _lib.numerics_version()}}

    async def list_models(request: Request) -> Response:
        try:
            check_key(request)
        except APIError as e:
            return err(e)
        return JSONResponse({"object": "list", "data": [model_card(w) for w in workers.values()]})

    async def get_model(request: Request) -> Response:
        try:
            check_key(request)
            name = request.path_params["name"]
            if name not in workers:
                raise APIError(404, f"the model {name!r} does not exist; served: {sorted(workers)}", param="model",
                               code="model_not_found")
        except APIError as e:
            return err(e)
        return JSONResponse(model_card(workers[name]))

    async def health(request: Request) -> Response:
        closing = any(w.closing for w in workers.values())
        return JSONResponse({"status": "draining" if closing else "ok", "models": sorted(workers)},
                            status_code=503 if closing else 200)

    async def metrics(request: Request) -> Response:
        try:
            check_key(request)
        except APIError as e:
            return err(e)
        return Response(_metrics_text(workers, state), media_type="text/plain; version=0.0.4")

    async def http_error(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        msg = {404: f"no route {request.url.path}: the API is under /v1 (docs/serving.md)",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(code, str(getattr(exc, "detail", exc)))
        return err(APIError(code, msg, code="not_found" if code == 404 else None))

    async def server_error(request: Request, exc: Exception) -> Response:
        return err(APIError(500, f"internal error: {exc}", type_="server_error"))

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        for name, m in models.items():
            if name not in workers:
                workers[name] = ModelWorker(name, m, cfg)
        try:
            yield
        finally:
            await run_in_threadpool(lambda: [w.close() for w in workers.values()])

    routes = [Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/chat/completions", chat_completions, methods=["POST"]),
              Route("/v1/models", list_models, methods=["GET"]),
              Route("/v1/models/{name:path}", get_model, methods=["GET"]),
              Route("/health", health, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, Exception: server_error})
    app.state.workers = workers
    return app


def _token_bytes(tokenizer: Any, token: int) -> bytes:
    if tokenizer is None or token >= tokenizer.vocab_size:
        return f"<token {token}>".encode()
    return tokenizer.token_bytes(token)


def _token_str(b: bytes) -> str:
    """A token's text; a token that is not whole UTF-8 (part of a character) is written
    'bytes:\\xNN...' as OpenAI does."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{c:02x}" for c in b)


def _put_all(q: "asyncio.Queue[Any]", evs: List[Any]) -> None:
    for ev in evs:
        q.put_nowait(ev)


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n\n"


def _usage(prompt: int, completion: int) -> Dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _metrics_text(workers: Dict[str, ModelWorker], state: Dict[str, Any]) -> str:
    lines = []

    def metric(name: str, kind: str, help_: str, rows: List[Tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, v in rows:
            lines.append(f"{name}{{{labels}}} {v:g}" if labels else f"{name} {v:g}")

    ws = list(workers.values())

    def per(fn: Any) -> List[Tuple[str, float]]:
        return [(f'model="{w.name}"', float(fn(w))) for w in ws]

    metric("loomrt_queue_depth", "gauge", "Sequences waiting for a batch slot.", per(lambda w: len(w.waiting)))
    metric("loomrt_active_sequences", "gauge", "Sequences in the running batch.", per(lambda w: len(w.active)))
    metric("loomrt_batch_size", "gauge", "Sequences in the last batched step.", per(lambda w: w.m_last_batch))
    metric("loomrt_kv_reserved_bytes", "gauge", "KV cache bytes reserved by running sequences.", per(lambda w: w.reserved))
    metric("loomrt_kv_budget_bytes", "gauge", "KV cache budget (--kv-memory).", per(lambda w: w.cfg.kv_memory))
    metric("loomrt_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.",
           per(lambda w: round(w.tokens_per_second(), 3)))
    metric("loomrt_steps_total", "counter", "Batched steps run.", per(lambda w: w.m_steps))
    metric("loomrt_prompt_tokens_total", "counter", "Prompt tokens evaluated.", per(lambda w: w.m_prompt_tokens))
    metric("loomrt_generated_tokens_total", "counter", "Tokens sampled.", per(lambda w: w.m_generated_tokens))
    ttft = []
    for w in ws:
        xs = sorted(w.m_ttft)
        for q in (0.5, 0.99):
            v = xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0
            ttft.append((f'model="{w.name}",quantile="{q}"', round(v, 6)))
    metric("loomrt_time_to_first_token_seconds", "summary", "Time from submission to the first token (last 1000).", ttft)
    metric("loomrt_sequences_finished_total", "counter", "Sequences ended, by reason.",
           [(f'model="{w.name}",reason="{r}"', float(c)) for w in ws for r, c in sorted(w.m_finished.items())])
    metric("loomrt_http_requests_total", "counter", "Generation and model requests answered, by status.",
           [(f'status="{s}"', float(c)) for s, c in sorted(state["requests"].items())])
    return "\n".join(lines) + "\n"


# ---- running it ---------------------------------------------------------------------------------


def parse_bytes(text: str) -> int:
    """'1G', '512M', '1.5GiB', '1000000' -> bytes."""
    t = text.strip().upper().replace("IB", "").replace("B", "")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if t and t[-1] in mult:
            return int(float(t[:-1]) * mult[t[-1]])
        return int(t)
    except ValueError:
        raise errors.InvalidArgumentError(f"cannot read {text!r} as a size: use e.g. 512M or 2G") from None


def model_name_for(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    return base[:-5] if base.lower().endswith(".gguf") else base


def serve(models: Dict[str, Model], cfg: ServeConfig, log_level: str = "info") -> None:
    """Run the server until SIGINT/SIGTERM; in-flight requests are drained first."""
    import uvicorn

    app = create_app(models, cfg)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=log_level,
                            timeout_graceful_shutdown=cfg.drain_seconds, access_log=False)
    uvicorn.Server(config).run()

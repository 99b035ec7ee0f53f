"""Batch generation over a JSONL file: ``loomrt batch INPUT.jsonl -o OUTPUT.jsonl --model M``.

The same job runs here, in this process (:func:`run_local`), or on a Ray cluster
(:mod:`loomrt.ray`): each row's output is computed by :class:`RowRunner` in both, from the row
alone (its prompt, settings and seed), so the output rows are the same bits whatever runs them.

Input: one JSON object per line (blank lines are skipped; line numbers count every line,
from 1)::

    {"id": "q1", "prompt": "Once upon a time", "max_tokens": 32, "temperature": 0.8, "seed": 7}
    {"messages": [{"role": "user", "content": "What is a loom?"}], "stop": ["\\n\\n"]}
    {"prompt_ids": [1, 42, 17], "receipt": true}
    {"prompt": "def add(a, b):", "weave": {"models": ["code.gguf"], "weights": [0.6, 0.4], "mode": "mix"}}

Keys: ``id`` (any JSON string or number; default the line number), exactly one of ``prompt``
(text), ``prompt_ids`` (token ids) or ``messages`` (chat, rendered with the model's template),
``max_tokens``, the sampling settings of :class:`loomrt.sampling.SamplingParams`
(``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``, ``seed``), ``stop``
(a list of strings), ``receipt`` (true: the row carries a generation receipt) and ``weave``
(the job's model woven with more models: ``models``, ``weights``, ``mode``, see
docs/weaving.md).

Output: one JSON object per input row, in input order: ``id``, ``line``, ``status`` ("ok" or
"failed"), and for ok rows ``text``, ``token_ids``, ``prompt_tokens``, ``finish_reason``,
``output_sha256`` (SHA-256 of the canonical JSON of token ids, text and finish reason) and
``receipt`` when asked; a failed row (malformed JSON, unknown key, a prompt too long for the
context, ...) carries ``error`` {type, message} and the job goes on.

Resuming: the output file is only appended to, whole rows in input order, and a side file
``OUTPUT.jsonl.job.json`` records the job (model hash, settings). Running the same command
again skips the lines already in the output (a row cut by the interruption is dropped and
redone); a different job writing to the same output is refused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from . import errors
from .sampling import SamplingParams

JOB_FORMAT = "loomrt-batch-job"
JOB_VERSION = 1
SAMPLING_KEYS = tuple(f.name for f in dataclasses.fields(SamplingParams))
PROMPT_KEYS = ("prompt", "prompt_ids", "messages")
ROW_KEYS = frozenset(("id", "max_tokens", "stop", "receipt", "weave") + PROMPT_KEYS + SAMPLING_KEYS)
WEAVE_KEYS = frozenset(("models", "weights", "mode", "alpha"))


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """What every row of a job shares. ``threads`` is per runner (per Ray actor)."""

    model: str
    max_tokens: int = 64
    threads: Optional[int] = None
    context: Optional[int] = None
    date: Optional[str] = None  # the date chat templates see (YYYY-MM-DD); None: today
    receipts: bool = False      # a receipt on every row

    def identity(self) -> Dict[str, Any]:
        """The settings that decide the rows' bits (threads never do)."""
        return {"max_tokens": self.max_tokens, "context": self.context, "date": self.date, "receipts": self.receipts}


# ---- input ----------------------------------------------------------------------------------


def read_lines(path: str) -> Iterator[Tuple[int, str]]:
    """(line number from 1, text) of every non-blank line."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise errors.LoomrtIOError(f"cannot read the input {path}: {exc.strerror}") from None
    with f:
        for n, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield n, "\x00not-utf8"
                continue
            if text.strip():
                yield n, text


def parse_row(line: int, text: str) -> Dict[str, Any]:
    """The checked row of one input line; raises InvalidArgumentError saying what is wrong."""
    if text == "\x00not-utf8":
        raise errors.InvalidArgumentError(f"line {line}: not UTF-8 text")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.InvalidArgumentError(f"line {line}: malformed JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise errors.InvalidArgumentError(f"line {line}: a row must be a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - ROW_KEYS)
    if unknown:
        raise errors.InvalidArgumentError(f"line {line}: unknown key(s) {unknown}; known: {sorted(ROW_KEYS)}")
    given = [k for k in PROMPT_KEYS if k in row]
    if len(given) != 1:
        raise errors.InvalidArgumentError(f"line {line}: give exactly one of {list(PROMPT_KEYS)}, got {given or 'none'}")
    rid = row.get("id", line)
    if not (isinstance(rid, (str, int, float)) and not isinstance(rid, bool)):
        raise errors.InvalidArgumentError(f"line {line}: id must be a string or a number")
    row["id"] = rid
    if "prompt" in row and not isinstance(row["prompt"], str):
        raise errors.InvalidArgumentError(f"line {line}: prompt must be a string (token ids go in prompt_ids)")
    if "prompt_ids" in row and not (isinstance(row["prompt_ids"], list) and row["prompt_ids"] and all(
            isinstance(t, int) and not isinstance(t, bool) for t in row["prompt_ids"])):
        raise errors.InvalidArgumentError(f"line {line}: prompt_ids must be a non-empty list of integers")
    if "messages" in row and not (isinstance(row["messages"], list) and row["messages"] and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in row["messages"])):
        raise errors.InvalidArgumentError(f"line {line}: messages must be a non-empty list of "
                                          "{\"role\": ..., \"content\": ...} objects with string values")
    if "stop" in row and not (isinstance(row["stop"], list) and all(isinstance(s, str) for s in row["stop"])):
        raise errors.InvalidArgumentError(f"line {line}: stop must be a list of strings")
    if "max_tokens" in row and not (isinstance(row["max_tokens"], int) and not isinstance(row["max_tokens"], bool)
                                    and 0 <= row["max_tokens"] <= 1 << 20):
        raise errors.InvalidArgumentError(f"line {line}: max_tokens must be an integer in [0, 2^20]")
    if "receipt" in row and not isinstance(row["receipt"], bool):
        raise errors.InvalidArgumentError(f"line {line}: receipt must be true or false")
    for k in SAMPLING_KEYS:
        if k in row and (isinstance(row[k], bool) or not isinstance(row[k], (int, float))):
            raise errors.InvalidArgumentError(f"line {line}: {k} must be a number")
    if "weave" in row:
        w = row["weave"]
        if not isinstance(w, dict) or not isinstance(w.get("models"), list) or not w["models"] or not all(
                isinstance(m, str) for m in w["models"]):
            raise errors.InvalidArgumentError(f"line {line}: weave must be an object with \"models\": a list of model "
                                              "paths (woven with the job's model, which comes first)")
        bad = sorted(set(w) - WEAVE_KEYS)
        if bad:
            raise errors.InvalidArgumentError(f"line {line}: unknown weave key(s) {bad}; known: {sorted(WEAVE_KEYS)}")
    row["line"] = line
    return row


def failed_row(line: int, rid: Any, exc: BaseException) -> Dict[str, Any]:
    name = type(exc).__name__ if isinstance(exc, errors.LoomrtError) else "InternalError"
    return {"id": rid, "line": line, "status": "failed", "error": {"type": name, "message": str(exc)}}


def output_sha256(token_ids: Sequence[int], text: str, finish_reason: str) -> str:
    canon = json.dumps([list(token_ids), text, finish_reason], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode("ascii")).hexdigest()


# ---- one row --------------------------------------------------------------------------------


class RowRunner:
    """Loads the job's model once (memory-mapped) and computes output rows."""

    def __init__(self, settings: JobSettings):
        from .model import load

        self.settings = settings
        self.model = load(settings.model, threads=settings.threads, context=settings.context)
        if settings.date:
            import datetime

            try:
                self.model.chat_date = datetime.date.fromisoformat(settings.date)
            except ValueError:
                raise errors.InvalidArgumentError(f"date {settings.date!r} is not a date like 2025-03-09") from None
        self._extra: Dict[str, Any] = {}  # weave models by path

    def _woven(self, spec: Dict[str, Any]) -> Any:
        from .model import load
        from .weave import Weave

        models = [self.model]
        for p in spec["models"]:
            if p not in self._extra:
                self._extra[p] = load(p, threads=self.settings.threads, context=self.settings.context)
                self._extra[p].chat_date = self.model.chat_date
            models.append(self._extra[p])
        kw = {k: spec[k] for k in ("weights", "mode", "alpha") if k in spec}
        return Weave(models, threads=self.settings.threads, **kw)

    def run(self, row: Dict[str, Any]) -> Dict[str, Any]:
        """The output row of a parsed input row (a failed row on any loomrt error)."""
        line, rid = row["line"], row["id"]
        try:
            chat = "messages" in row
            prompt = row["messages"] if chat else row.get("prompt", row.get("prompt_ids"))
            sampling = {k: row[k] for k in SAMPLING_KEYS if k in row}
            max_tokens = row.get("max_tokens", self.settings.max_tokens)
            want_receipt = bool(row.get("receipt", self.settings.receipts))
            kw = dict(stop=row.get("stop"), chat=chat, receipt=want_receipt, **sampling)
            if "weave" in row:
                g = self._woven(row["weave"]).generate(prompt, max_tokens, **kw)
            else:
                g = self.model.generate(prompt, max_tokens, **kw)
            out: Dict[str, Any] = {"id": rid, "line": line, "status": "ok", "text": g.text,
                                   "token_ids": list(g.token_ids), "prompt_tokens": len(g.prompt_token_ids),
                                   "finish_reason": g.finish_reason,
                                   "output_sha256": output_sha256(g.token_ids, g.text, g.finish_reason)}
            if want_receipt:
                out["receipt"] = g.receipt
            return out
        except errors.LoomrtError as exc:
            return failed_row(line, rid, exc)
        except (TypeError, ValueError) as exc:  # a setting of the wrong kind that reached Python code
            return failed_row(line, rid, errors.InvalidArgumentError(f"line {line}: {exc}"))


# ---- the job: rows to do, output written in order, resume -------------------------------------


def _job_meta(settings: JobSettings, input_path: str) -> Dict[str, Any]:
    from .audit import model_hash

    return {"format": JOB_FORMAT, "version": JOB_VERSION, "model_hash": model_hash(settings.model).hash,
            "settings": settings.identity(), "input": os.path.abspath(input_path)}


class OutputFile:
    """Append-only JSONL output plus its job file; ``done`` holds the lines already written."""

    def __init__(self, path: str, meta: Dict[str, Any], overwrite: bool = False):
        self.path = path
        self.meta_path = path + ".job.json"
        self.done: set = set()
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        if exists and not overwrite:
            try:
                with open(self.meta_path, encoding="utf-8") as f:
                    old = json.load(f)
            except (OSError, ValueError):
                raise errors.InvalidArgumentError(
                    f"{path} exists but has no readable job file {self.meta_path}: it was not written by "
                    "`loomrt batch`; give another -o or --overwrite") from None
            if {k: old.get(k) for k in ("format", "model_hash", "settings")} != \
                    {k: meta[k] for k in ("format", "model_hash", "settings")}:
                raise errors.InvalidArgumentError(
                    f"{path} holds rows of another job (model hash {str(old.get('model_hash'))[:12]}..., settings "
                    f"{old.get('settings')}); this job has model hash {meta['model_hash'][:12]}..., settings "
                    f"{meta['settings']}: give another -o, or --overwrite to start again")
            self._scan()
        else:
            self._atomic_json(meta)
            open(path, "wb").close()
        try:
            self._f = open(path, "ab")
        except OSError as exc:
            raise errors.LoomrtIOError(f"cannot write {path}: {exc.strerror}") from None

    def _atomic_json(self, meta: Dict[str, Any]) -> None:
        tmp = self.meta_path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=1)
            os.replace(tmp, self.meta_path)
        except OSError as exc:
            raise errors.LoomrtIOError(f"cannot write {self.meta_path}: {exc.strerror}") from None

    def _scan(self) -> None:
        """Collect the written lines; drop a last row cut by an interruption."""
        good = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    self.done.add(int(json.loads(raw)["line"]))
                except (ValueError, KeyError, TypeError):
                    break
                good += len(raw)
        if good != os.path.getsize(self.path):
            with open(self.path, "r+b") as f:
                f.truncate(good)

    def write(self, row: Dict[str, Any]) -> None:
        self._f.write((json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))
        self.done.add(row["line"])

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


@dataclasses.dataclass
class JobReport:
    rows: int = 0        # rows in the input
    skipped: int = 0     # already in the output (resume)
    written: int = 0     # written by this run
    failed: int = 0      # written as failed by this run
    seconds: float = 0.0
    failures: List[Tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, message), first 20

    @property
    def rows_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


class Progress:
    """A progress line on a stream (stderr): redrawn in place on a terminal, else every 10%."""

    def __init__(self, total: int, done: int = 0, stream: Any = None, label: str = "batch"):
        self.total, self.done, self.failed = total, done, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = label
        self.t0 = time.perf_counter()
        self.start_done = done
        self._last = 0.0
        self._next_pct = 10

    def update(self, n: int = 1, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        now = time.perf_counter()
        pct = 100 * self.done // max(1, self.total)
        if self.tty and (now - self._last > 0.2 or self.done == self.total):
            self._last = now
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif not self.tty and (pct >= self._next_pct or self.done == self.total):
            self._next_pct = pct // 10 * 10 + 10
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        el = time.perf_counter() - self.t0
        rate = (self.done - self.start_done) / el if el > 0 else 0.0
        left = self.total - self.done
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        width = 24
        fill = int(width * self.done / max(1, self.total))
        return (f"[loomrt] {self.label} [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} rows"
                f" ({self.failed} failed) {rate:.1f} rows/s ETA {eta}")

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def plan(input_path: str, done: Iterable[int]) -> Tuple[int, List[Tuple[int, str]]]:
    """(rows in the input, [(line, text) of the rows still to do]) in input order."""
    done = set(done)
    total = 0
    todo = []
    for line, text in read_lines(input_path):
        total += 1
        if line not in done:
            todo.append((line, text))
    return total, todo


Executor = Callable[[JobSettings, List[Dict[str, Any]]], Iterator[Dict[str, Any]]]


def local_executor(settings: JobSettings, rows: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """Rows computed here, in order, by one RowRunner."""
    if not rows:
        return
    runner = RowRunner(settings)
    for r in rows:
        yield runner.run(r)


def run_job(input_path: str, output_path: str, settings: JobSettings, executor: Executor = local_executor, *,
            overwrite: bool = False, progress: Optional[Progress] = None,
            on_progress: Optional[Callable[[int, int, int], None]] = None) -> JobReport:
    """Run (or resume) a job: parse the rows still to do, give the valid ones to the executor,
    write every row (failed ones too) in input order."""
    if not os.path.isfile(settings.model) and not os.path.isdir(settings.model):
        raise errors.NotFoundError(f"model not found: {settings.model!r} (give a .gguf file or a model folder)")
    meta = _job_meta(settings, input_path)
    out = OutputFile(output_path, meta, overwrite=overwrite)
    rep = JobReport()
    t0 = time.perf_counter()
    try:
        total, todo = plan(input_path, out.done)
        rep.rows, rep.skipped = total, total - len(todo)
        if progress is not None:
            progress.total, progress.done, progress.start_done = total, rep.skipped, rep.skipped
        parsed: Dict[int, Dict[str, Any]] = {}  # line -> output row of a line that failed to parse
        valid: List[Dict[str, Any]] = []
        for line, text in todo:
            try:
                valid.append(parse_row(line, text))
            except errors.LoomrtError as exc:
                parsed[line] = failed_row(line, None, exc)
        results = executor(settings, valid)
        order = [line for line, _ in todo]
        pending: Dict[int, Dict[str, Any]] = {}
        next_i = 0
        last_flush = time.perf_counter()

        def emit(row: Dict[str, Any]) -> None:
            out.write(row)
            rep.written += 1
            bad = row.get("status") != "ok"
            if bad:
                rep.failed += 1
                if len(rep.failures) < 20:
                    rep.failures.append((row["line"], row["error"]["message"]))
            if progress is not None:
                progress.update(1, int(bad))
            if on_progress is not None:
                on_progress(rep.skipped + rep.written, total, rep.failed)

        def drain() -> None:
            nonlocal next_i
            while next_i < len(order):
                ln = order[next_i]
                row = parsed.get(ln) or pending.pop(ln, None)
                if row is None:
                    return
                emit(row)
                next_i += 1

        drain()
        for row in results:
            pending[row["line"]] = row
            drain()
            if time.perf_counter() - last_flush > 0.5:
                out.flush()
                last_flush = time.perf_counter()
        drain()
        if next_i != len(order):
            raise errors.InternalError(f"the executor returned {next_i} of {len(order)} rows")
    finally:
        out.close()
        if progress is not None:
            progress.close()
        rep.seconds = time.perf_counter() - t0
    return rep


def read_output(path: str) -> List[Dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]

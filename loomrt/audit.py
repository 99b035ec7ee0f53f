"""Audit tools: content hashes of models, output hashes of generations, and generation
receipts that anyone can replay (docs/determinism.md).

>>> import loomrt
>>> model = loomrt.load("model.gguf")
>>> g = model.generate("Once upon a time", max_tokens=32, temperature=0.8, seed=7, receipt=True)
>>> loomrt.verify_receipt(g.receipt, model).ok
True

Definitions (all hashes are SHA-256, written as lowercase hex):

* model hash: for a ``.gguf`` file, the SHA-256 of the file. For a HuggingFace folder, the
  SHA-256 of the manifest ``"<sha256 of file>  <name>\\n"`` (the format of ``sha256sum``)
  over the files that decide the model's outputs -- ``config.json``,
  ``generation_config.json`` (when present), ``model.safetensors`` or
  ``model.safetensors.index.json`` plus every shard it names -- in byte order of the names.
* tokenizer hash: for a folder, the same manifest over the tokenizer files present
  (``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``,
  ``chat_template.jinja``, ``chat_template.json``); for a GGUF file, the SHA-256 of the
  canonical JSON (sorted keys, no spaces, UTF-8) of its ``tokenizer.*`` metadata. ``None``
  when the model has no tokenizer.
* step logits digest: the SHA-256 of the logits row a sampling step drew from, as
  little-endian float32 with every NaN replaced by 0x7fc00000.
* output hash (rolling): ``R0 = SHA-256(b"loomrt-steps-v1")``,
  ``R(i+1) = SHA-256(R(i) || digest(i) || int32le(token(i)))`` over the steps (raw 32-byte
  digests); the output hash is the last ``R``.
* tokens hash: SHA-256 of the sampled token ids as int32 little-endian.
* logits hash: SHA-256 of the concatenated canonical logits rows of all steps.

Nothing is cached on disk; a Model object keeps its hashes once computed (the files of an
open model must not change, as they are memory-mapped).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib, errors
from .sampling import SamplingParams

RECEIPT_FORMAT = "loomrt-receipt"
RECEIPT_VERSION = 1
MODEL_HASH_SCHEME = "loomrt-files-v1"
_ROLLING_SEED = hashlib.sha256(b"loomrt-steps-v1").digest()
_CHUNK = 1 << 22

MODEL_FOLDER_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "chat_template.json")


# ---- files --------------------------------------------------------------------------------------


def sha256_file(path: str) -> str:
    """SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _manifest(folder: str, names: Sequence[str]) -> Tuple[str, List[Dict[str, Any]]]:
    files = []
    lines = []
    for name in sorted(set(names), key=lambda n: n.encode("utf-8")):
        p = os.path.join(folder, name)
        digest = sha256_file(p)
        files.append({"name": name, "size": os.path.getsize(p), "sha256": digest})
        lines.append(f"{digest}  {name}\n")
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest(), files


def model_files(path: str) -> List[str]:
    """Names (relative to the folder) of the files the model hash covers; for a GGUF file,
    its own name."""
    if os.path.isfile(path):
        return [os.path.basename(path)]
    names = [n for n in MODEL_FOLDER_FILES if os.path.isfile(os.path.join(path, n))]
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise errors.FormatError(f"{index}: cannot read the shard list ({exc})") from None
        names += ["model.safetensors.index.json"] + shards
    else:
        names.append("model.safetensors")
    for n in names:
        if os.path.isabs(n) or ".." in n.replace("\\", "/").split("/"):
            raise errors.FormatError(f"{path}: shard name {n!r} points outside the model folder")
        if not os.path.isfile(os.path.join(path, n)):
            raise errors.NotFoundError(f"{path}: {n} is missing")
    return names


@dataclasses.dataclass(frozen=True)
class ModelHash:
    """The model hash and the per-file digests behind it."""

    hash: str
    scheme: str
    files: Tuple[Dict[str, Any], ...]


def model_hash(model: Union[str, os.PathLike, Any]) -> ModelHash:
    """Content hash of a model (a loaded :class:`loomrt.Model`, a folder or a .gguf path)."""
    cached = getattr(model, "_audit_model_hash", None)
    if cached is not None:
        return cached
    path = model.path if hasattr(model, "path") else os.fspath(model)
    if os.path.isfile(path):
        digest = sha256_file(path)
        result = ModelHash(digest, MODEL_HASH_SCHEME,
                           ({"name": os.path.basename(path), "size": os.path.getsize(path), "sha256": digest},))
    elif os.path.isdir(path):
        h, files = _manifest(path, model_files(path))
        result = ModelHash(h, MODEL_HASH_SCHEME, tuple(files))
    else:
        raise errors.NotFoundError(f"model not found: {path!r}")
    if hasattr(model, "path"):
        model._audit_model_hash = result
    return result


def tokenizer_hash(model: Any) -> Optional[str]:
    """Hash of the tokenizer a loaded model uses (None when it has none); see the module doc."""
    cached = getattr(model, "_audit_tokenizer_hash", False)
    if cached is not False:
        return cached
    result: Optional[str] = None
    if model.tokenizer is not None:
        if model.info["is_gguf"]:
            meta = {k: v for k, v in model.metadata.items() if k.startswith("tokenizer.")}
            text = json.dumps(meta, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
            result = hashlib.sha256(text.encode("utf-8")).hexdigest()
        else:
            names = [n for n in TOKENIZER_FILES if os.path.isfile(os.path.join(model.path, n))]
            result = _manifest(model.path, names)[0] if names else None
    model._audit_tokenizer_hash = result
    return result


# ---- outputs -----------------------------------------------------------------------------------


def canonical_logits_bytes(row: np.ndarray) -> bytes:
    """Little-endian float32 bytes with every NaN replaced by the quiet NaN 0x7fc00000."""
    a = np.ascontiguousarray(row, dtype="<f4")
    bits = a.view("<u4").copy()
    bits[np.isnan(a)] = 0x7FC00000
    return bits.tobytes()


def _canonical_buffer(row: np.ndarray) -> Any:
    """The bytes of :func:`canonical_logits_bytes` as a buffer, without copying the row when
    it is already little-endian float32 without NaN (the usual case)."""
    a = np.ascontiguousarray(row, dtype="<f4")
    if np.isnan(a).any():
        return canonical_logits_bytes(a)
    return a


def rolling_hash(step_digests: Sequence[str], tokens: Sequence[int]) -> str:
    """Output hash of a generation from its per-step logits digests (hex) and tokens."""
    if len(step_digests) != len(tokens):
        raise errors.InvalidArgumentError("one logits digest per sampled token is needed")
    r = _ROLLING_SEED
    for d, t in zip(step_digests, tokens):
        r = hashlib.sha256(r + bytes.fromhex(d) + struct.pack("<i", int(t))).digest()
    return r.hex()


def tokens_sha256(tokens: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(list(tokens), dtype="<i4").tobytes()).hexdigest()


class StepRecorder:
    """Collects the logits row and the token of every sampling step (the hook of
    :meth:`loomrt.Model.stream_tokens`)."""

    def __init__(self) -> None:
        self.digests: List[str] = []
        self.tokens: List[int] = []
        self._logits = hashlib.sha256()

    def __call__(self, session: Any, token: int, row: Any = None) -> None:
        if row is None:  # plain decoding: the session's last row; speculation passes the row
            row = _lib.session_logits_row(session._h)  # hashed at once: no copy needed
        b = _canonical_buffer(row)
        self.digests.append(hashlib.sha256(b).hexdigest())
        self._logits.update(b)
        self.tokens.append(int(token))

    @property
    def logits_sha256(self) -> str:
        return self._logits.hexdigest()

    @property
    def output_sha256(self) -> str:
        return rolling_hash(self.digests, self.tokens)


# ---- receipts -----------------------------------------------------------------------------------


def make_receipt(model: Any, prompt_ids: Sequence[int], rec: StepRecorder, finish_reason: str,
                 max_tokens: int, sampling: Dict[str, Any], context: int, stop: Optional[Sequence[str]] = None,
                 chat: bool = False) -> Dict[str, Any]:
    """The receipt of a generation (see docs/determinism.md for the fields)."""
    mh = model_hash(model)
    return {
        "format": RECEIPT_FORMAT,
        "version": RECEIPT_VERSION,
        "loomrt_version": _lib.version(),
        "numerics_version": _lib.numerics_version(),
        "model": {
            "hash": mh.hash,
            "hash_scheme": mh.scheme,
            "files": [dict(f) for f in mh.files],
            "name": model.info.get("name", ""),
            "architecture": model.info.get("architecture", ""),
            "quantize": getattr(model, "quantize", None),
            "int8_activations": bool(getattr(model, "int8_activations", False)),
        },
        "tokenizer": {"hash": tokenizer_hash(model)},
        "sampling": {k: sampling[k] for k in sorted(sampling)},
        "max_tokens": int(max_tokens),
        "context_length": int(context),
        "stop": list(stop) if stop else [],
        "chat": bool(chat),
        "prompt_token_ids": [int(t) for t in prompt_ids],
        "output_token_ids": list(rec.tokens),
        "finish_reason": finish_reason,
        "step_logits_sha256": list(rec.digests),
        "logits_rolling_sha256": rec.output_sha256,
        "tokens_sha256": tokens_sha256(rec.tokens),
        "logits_sha256": rec.logits_sha256,
        "made_on": {"kernel_path": _lib.kernel_path(), "machine": platform.machine(),
                    "system": platform.system(), "threads": int(getattr(model, "threads", 0))},
    }


@dataclasses.dataclass
class VerifyResult:
    """Outcome of :func:`verify_receipt`. ``first_difference`` is the first step whose logits
    or token differ (None when the steps match or were not replayed); ``what`` names what
    differs: "logits", "token", "logits and token", "model", "tokenizer",
    "numerics_version" or "receipt"."""

    ok: bool
    message: str
    first_difference: Optional[int] = None
    what: Optional[str] = None
    expected: Optional[Dict[str, Any]] = None
    actual: Optional[Dict[str, Any]] = None
    steps_checked: int = 0

    def __bool__(self) -> bool:
        return self.ok


_SAMPLING_KEYS = {"temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed"}


WEAVE_RECEIPT_FORMAT = "loomrt-weave-receipt"  # made and replayed by loomrt.weave


def load_receipt(receipt: Union[Dict[str, Any], str, os.PathLike, bytes]) -> Dict[str, Any]:
    """A receipt as a dict from a dict, JSON text or a file path; checked for shape."""
    if isinstance(receipt, dict):
        r = receipt
    else:
        where = "the receipt"
        if isinstance(receipt, bytes):
            text = receipt.decode("utf-8", "replace")
        elif isinstance(receipt, str) and receipt.lstrip().startswith("{"):
            text = receipt
        else:
            where = os.fspath(receipt)
            try:
                with open(where, "rb") as f:
                    raw = f.read()
            except OSError as exc:
                raise errors.NotFoundError(f"cannot read the receipt {receipt!r}: {exc.strerror}") from None
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise errors.FormatError(f"{where}: not a loomrt receipt: byte 0x{raw[exc.start]:02x} at offset "
                                         f"{exc.start} is not UTF-8 (receipts are UTF-8 JSON)") from None
        try:
            r = json.loads(text)
        except RecursionError:
            raise errors.FormatError(f"{where}: not a loomrt receipt: JSON nested too deeply") from None
        except ValueError as exc:
            raise errors.FormatError(f"{where}: the receipt is not valid JSON: {exc}") from None
        if where != "the receipt":
            try:
                _check_receipt(r)
            except errors.FormatError as exc:
                raise errors.FormatError(f"{where}: {exc}") from None
    _check_receipt(r)
    return r


def _check_receipt(r: Any) -> None:
    def bad(msg: str) -> errors.FormatError:
        return errors.FormatError(f"not a valid loomrt receipt: {msg}")

    if isinstance(r, dict) and r.get("format") == WEAVE_RECEIPT_FORMAT:
        return  # loomrt.weave's receipts: checked by loomrt.weave (loomrt.receipts dispatches)
    if not isinstance(r, dict) or r.get("format") != RECEIPT_FORMAT:
        raise bad(f'"format" must be "{RECEIPT_FORMAT}"')
    if r.get("version") != RECEIPT_VERSION:
        raise errors.UnsupportedError(f"receipt version {r.get('version')!r}; this loomrt reads version {RECEIPT_VERSION}")

    def ints(key: str) -> List[int]:
        v = r.get(key)
        if not isinstance(v, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in v):
            raise bad(f'"{key}" must be a list of integers')
        return v

    ints("prompt_token_ids")
    out = ints("output_token_ids")
    if not r["prompt_token_ids"]:
        raise bad('"prompt_token_ids" is empty')
    d = r.get("step_logits_sha256")
    if not isinstance(d, list) or len(d) != len(out) or not all(
            isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x) for x in d):
        raise bad('"step_logits_sha256" must hold one lowercase hex SHA-256 per output token')
    s = r.get("sampling")
    if not isinstance(s, dict) or set(s) != _SAMPLING_KEYS:
        raise bad(f'"sampling" must have exactly the keys {sorted(_SAMPLING_KEYS)}')
    for k, v in s.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (k in ("top_k", "seed") and not isinstance(v, int)):
            raise bad(f'sampling "{k}" has a bad value {v!r}')
    if not isinstance(r.get("model"), dict) or not isinstance(r["model"].get("hash"), str):
        raise bad('"model.hash" is missing')
    if not isinstance(r.get("tokenizer"), dict) or "hash" not in r["tokenizer"]:
        raise bad('"tokenizer.hash" is missing')
    for k in ("numerics_version", "max_tokens", "context_length"):
        if not isinstance(r.get(k), int) or isinstance(r.get(k), bool):
            raise bad(f'"{k}" must be an integer')
    for k in ("logits_rolling_sha256", "tokens_sha256", "logits_sha256"):
        if not isinstance(r.get(k), str):
            raise bad(f'"{k}" is missing')


def _open_model(model: Any, r: Dict[str, Any], threads: Optional[int], load: Optional[Callable[..., Any]]) -> Any:
    """A loaded model as given, or the path loaded with ``load`` the way the receipt's was."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    if load is None:
        raise errors.InvalidArgumentError("audit.verify_receipt needs a loaded model, or load= to open a path "
                                          "(loomrt.verify_receipt passes loomrt.load)")
    return load(os.fspath(model), threads=threads, quantize=r["model"].get("quantize"),
                int8_activations=bool(r["model"].get("int8_activations", False)))


def _preflight(r: Dict[str, Any], m: Any) -> Optional[VerifyResult]:
    """Compare what must match before a replay means anything."""
    if r["numerics_version"] != _lib.numerics_version():
        return VerifyResult(False, f"the receipt was made with numerics version {r['numerics_version']}, this loomrt "
                            f"has numerics version {_lib.numerics_version()}: outputs are only promised to match "
                            "within one numerics version", what="numerics_version")
    mh = model_hash(m).hash
    if mh != r["model"]["hash"]:
        name = r["model"].get("name") or "?"
        return VerifyResult(False, f"the receipt was made with another model ({name}, model hash "
                            f"{r['model']['hash'][:16]}...); the model given has hash {mh[:16]}... ({m.path}). "
                            "Pass the same model files with --model / model=", what="model",
                            expected={"model_hash": r["model"]["hash"]}, actual={"model_hash": mh})
    want_q, have_q = r["model"].get("quantize"), getattr(m, "quantize", None)
    if want_q != have_q:
        how = f"quantize={want_q!r} (--quantize {want_q})" if want_q else "without quantize (no --quantize)"
        return VerifyResult(False, f"the receipt was made with the model loaded {how}; this model was loaded "
                            f"with quantize={have_q!r}. Load it the same way", what="model",
                            expected={"quantize": want_q}, actual={"quantize": have_q})
    want_i8, have_i8 = bool(r["model"].get("int8_activations", False)), bool(getattr(m, "int8_activations", False))
    if want_i8 != have_i8:
        how = "with int8 activations (--int8-activations)" if want_i8 else "without int8 activations"
        return VerifyResult(False, f"the receipt was made with the model computing {how}; this model was loaded "
                            f"with int8_activations={have_i8}. Load it the same way", what="model",
                            expected={"int8_activations": want_i8}, actual={"int8_activations": have_i8})
    th = tokenizer_hash(m)
    if r["tokenizer"]["hash"] is not None and th != r["tokenizer"]["hash"]:  # null: not recorded (C tool)
        return VerifyResult(False, f"the receipt was made with another tokenizer (hash {r['tokenizer']['hash']}); "
                            f"this model's tokenizer hash is {th}", what="tokenizer",
                            expected={"tokenizer_hash": r["tokenizer"]["hash"]}, actual={"tokenizer_hash": th})
    v = m.vocab_size
    for key in ("prompt_token_ids", "output_token_ids"):
        for t in r[key]:
            if not 0 <= t < v:
                return VerifyResult(False, f"the receipt's {key} has id {t}, outside this model's vocabulary", what="receipt")
    return None


def _summary_ok(r: Dict[str, Any]) -> bool:
    """The receipt's summary hashes agree with its per-step digests and tokens."""
    return (rolling_hash(r["step_logits_sha256"], r["output_token_ids"]) == r["logits_rolling_sha256"]
            and tokens_sha256(r["output_token_ids"]) == r["tokens_sha256"])


_EDITED = ("the receipt is inconsistent: its logits_rolling_sha256, tokens_sha256 or logits_sha256 does not "
           "match its per-step data (it was edited after it was made)")


def _step_diff(r: Dict[str, Any], i: int, digest: str, token: int) -> Optional[VerifyResult]:
    want_d, want_t = r["step_logits_sha256"][i], r["output_token_ids"][i]
    if digest == want_d and token == want_t:
        return None
    what = " and ".join(w for w, bad in (("logits", digest != want_d), ("token", token != want_t)) if bad)
    pos = len(r["prompt_token_ids"]) + i
    msg = (f"step {i} (position {pos}) differs in {what}: the receipt has token {want_t} "
           f"(logits sha256 {want_d[:16]}...), the replay gives token {token} (logits sha256 {digest[:16]}...)")
    return VerifyResult(False, msg, first_difference=i, what=what,
                        expected={"token": want_t, "logits_sha256": want_d},
                        actual={"token": token, "logits_sha256": digest}, steps_checked=i + 1)


def _row_digest(s: Any) -> str:
    return hashlib.sha256(canonical_logits_bytes(_lib.session_logits(s._h)[-1])).hexdigest()


def verify_receipt(receipt: Union[Dict[str, Any], str, os.PathLike, bytes], model: Any = None, *,
                   step: Optional[int] = None, threads: Optional[int] = None,
                   load: Optional[Callable[..., Any]] = None) -> VerifyResult:
    """Replay a receipt and compare every step's logits digest and token.

    ``model`` is a loaded model (anything with ``session()``, ``path``, ``info``,
    ``vocab_size``, ``tokenizer``: :class:`loomrt.Model`) or a path (default: the default
    model) that ``load(path, threads=, quantize=, int8_activations=)`` opens; the receipt code
    does not know the Model class (:func:`loomrt.verify_receipt` passes ``loomrt.load``). With ``step=N`` only
    step N is replayed, on its own: one evaluation of the prompt plus the first N output
    tokens, then one sampling draw (the sampler's random number depends only on the seed and
    the position)."""
    r = load_receipt(receipt)
    if r["format"] == WEAVE_RECEIPT_FORMAT:
        raise errors.InvalidArgumentError("a weave receipt: replay it with loomrt.verify_receipt (loomrt.weave)")
    if model is None:
        from .resolve import default_model_path

        model = default_model_path()
    m = _open_model(model, r, threads, load)
    pre = _preflight(r, m)
    if pre is not None:
        return pre
    out, prompt = r["output_token_ids"], r["prompt_token_ids"]
    n = len(out)
    ctx = min(max(r["context_length"], len(prompt) + n), m.info["context_length"])
    if len(prompt) + max(n - 1, 0) > ctx:
        return VerifyResult(False, "the receipt's tokens do not fit this model's context", what="receipt")
    s = m.session(context=ctx)
    s.configure(SamplingParams(**r["sampling"]))
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < n:
            raise errors.InvalidArgumentError(f"step must be in [0, {n}) for this receipt, got {step!r}")
        s.eval(list(prompt) + list(out[:step]))
        diff = _step_diff(r, step, _row_digest(s), s.sample())
        if diff is not None:
            return diff
        if not _summary_ok(r):
            return VerifyResult(False, f"step {step} matches, but " + _EDITED, what="receipt", steps_checked=1)
        return VerifyResult(True, f"step {step} (position {len(prompt) + step}) matches: token {out[step]}, "
                            f"logits sha256 {r['step_logits_sha256'][step][:16]}...", steps_checked=1)
    s.eval(prompt)
    concat = hashlib.sha256()
    for i in range(n):
        b = canonical_logits_bytes(_lib.session_logits(s._h)[-1])
        concat.update(b)
        diff = _step_diff(r, i, hashlib.sha256(b).hexdigest(), s.sample())
        if diff is not None:
            return diff
        if i + 1 < n:
            s.eval([out[i]])
    if not _summary_ok(r) or concat.hexdigest() != r["logits_sha256"]:
        return VerifyResult(False, f"all {n} steps replay as recorded, but " + _EDITED, what="receipt", steps_checked=n)
    return VerifyResult(True, f"the receipt matches: all {n} steps give the same logits and tokens "
                        f"(output hash {r['logits_rolling_sha256'][:16]}...)", steps_checked=n)

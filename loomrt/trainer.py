"""The trainer handle: Python's view of the C training API (``lrt_trainer_*`` in loomrt.h).

A :class:`Trainer` holds float32 weights, gradient accumulators and the AdamW state in the C
core. One training step is one or more :meth:`Trainer.accumulate` calls (micro-batches of
whole sequences) and one :meth:`Trainer.apply`. Losses, gradients and weights are
bit-identical at any thread count and kernel path, and for any split of a batch into
micro-batches (docs/training.md). The data pipeline, checkpoints and CLI are in
:mod:`loomrt.train`.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from ._lib import check
from ._loomrt_cffi import ffi, lib
from . import errors

SCHEDULES = {"constant": lib.LRT_SCHEDULE_CONSTANT, "cosine": lib.LRT_SCHEDULE_COSINE}
_SETTINGS = {
    "lr": lib.LRT_TRAIN_LR, "min_lr": lib.LRT_TRAIN_MIN_LR, "warmup": lib.LRT_TRAIN_WARMUP_STEPS,
    "total_steps": lib.LRT_TRAIN_TOTAL_STEPS, "schedule": lib.LRT_TRAIN_SCHEDULE,
    "weight_decay": lib.LRT_TRAIN_WEIGHT_DECAY, "beta1": lib.LRT_TRAIN_BETA1, "beta2": lib.LRT_TRAIN_BETA2,
    "eps": lib.LRT_TRAIN_EPS, "clip": lib.LRT_TRAIN_CLIP_NORM, "lr_scale": lib.LRT_TRAIN_LR_SCALE,
}
_WHAT = {"weight": lib.LRT_TENSOR_WEIGHT, "grad": lib.LRT_TENSOR_GRAD, "adam_m": lib.LRT_TENSOR_ADAM_M,
         "adam_v": lib.LRT_TENSOR_ADAM_V}


def _tokens(tokens: Any, seq_len: Optional[int] = None) -> Tuple[np.ndarray, int, int]:
    arr = np.ascontiguousarray(np.asarray(tokens, dtype=np.int32))
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise errors.InvalidArgumentError(
            f"tokens must be a (batch, seq_len + 1) array of ids with seq_len >= 1, got shape {arr.shape}")
    return arr, arr.shape[0], arr.shape[1] - 1


class Trainer:
    """A trainable model in the C core.

    ``Trainer(config, seed=0, threads=0)`` starts from seeded random weights for an HF-style
    config (a dict or config.json text for ``LlamaForCausalLM`` or ``GPT2LMHeadModel``);
    :meth:`Trainer.from_pretrained` starts from a model folder or GGUF file."""

    def __init__(self, config: Union[Mapping[str, Any], str, None] = None, seed: int = 0, threads: int = 0,
                 _handle: Any = None) -> None:
        if _handle is None:
            text = config if isinstance(config, str) else json.dumps(dict(config or {}))
            raw = text.encode("utf-8")
            out = ffi.new("lrt_trainer **")
            check(lib.lrt_trainer_new(raw, len(raw), int(seed) & 0xFFFFFFFFFFFFFFFF, int(threads), out))
            _handle = out[0]
        self._h = ffi.gc(_handle, lib.lrt_trainer_free)
        self._names: List[str] = []
        self._shapes: Dict[str, Tuple[int, int]] = {}
        n = ffi.new("int64_t *")
        check(lib.lrt_trainer_tensor_count(self._h, n))
        name = ffi.new("const char **")
        ln = ffi.new("size_t *")
        rows = ffi.new("int64_t *")
        cols = ffi.new("int64_t *")
        for i in range(n[0]):
            check(lib.lrt_trainer_tensor_info(self._h, i, name, ln, rows, cols))
            nm = ffi.unpack(name[0], ln[0]).decode()
            self._names.append(nm)
            self._shapes[nm] = (int(rows[0]), int(cols[0]))
        self._index = {nm: i for i, nm in enumerate(self._names)}

    @classmethod
    def from_pretrained(cls, path: str, threads: int = 0) -> "Trainer":
        """Start from the weights of a model folder (config.json + safetensors) or GGUF file."""
        raw = os.fsencode(path)
        out = ffi.new("lrt_trainer **")
        check(lib.lrt_trainer_open(raw, len(raw), int(threads), out))
        return cls(_handle=out[0])

    # ---- settings -----------------------------------------------------------------------

    def set(self, **settings: Any) -> None:
        """Set hyperparameters: lr, min_lr, warmup, total_steps, schedule ("constant" or
        "cosine"), weight_decay, beta1, beta2, eps, clip (0: off), lr_scale."""
        for key, value in settings.items():
            if key not in _SETTINGS:
                raise errors.InvalidArgumentError(f"unknown trainer setting {key!r}; known: {sorted(_SETTINGS)}")
            if key == "schedule" and isinstance(value, str):
                if value not in SCHEDULES:
                    raise errors.InvalidArgumentError(f"schedule must be one of {sorted(SCHEDULES)}, got {value!r}")
                value = SCHEDULES[value]
            check(lib.lrt_trainer_set(self._h, _SETTINGS[key], float(value)))

    def _get(self, key: int) -> float:
        out = ffi.new("double *")
        check(lib.lrt_trainer_get(self._h, key, out))
        return float(out[0])

    @property
    def step(self) -> int:
        """Optimizer updates applied."""
        return int(self._get(lib.LRT_TRAIN_STEP))

    @property
    def loss(self) -> float:
        """Mean loss of the last applied step."""
        return self._get(lib.LRT_TRAIN_LOSS)

    @property
    def grad_norm(self) -> float:
        """Global gradient norm of the last applied step (before clipping)."""
        return self._get(lib.LRT_TRAIN_GRAD_NORM)

    @property
    def last_lr(self) -> float:
        return self._get(lib.LRT_TRAIN_LAST_LR)

    @property
    def n_params(self) -> int:
        return int(self._get(lib.LRT_TRAIN_PARAMETERS))

    def setting(self, key: str) -> float:
        return self._get(_SETTINGS[key])

    # ---- steps --------------------------------------------------------------------------

    def accumulate(self, tokens: Any) -> float:
        """Forward and backward over a micro-batch (batch, seq_len + 1) of ids; returns its mean loss."""
        arr, b, t = _tokens(tokens)
        loss = ffi.new("double *")
        check(lib.lrt_trainer_accumulate(self._h, ffi.from_buffer("int32_t[]", arr), b, t, loss))
        return float(loss[0])

    def apply(self) -> None:
        """One AdamW update with the accumulated gradient (clears it)."""
        check(lib.lrt_trainer_apply(self._h))

    def train_step(self, tokens: Any, accum: int = 1) -> float:
        """Split ``tokens`` into ``accum`` micro-batches, accumulate them, apply; return the step's loss."""
        arr, b, _ = _tokens(tokens)
        if accum < 1 or b % accum:
            raise errors.InvalidArgumentError(f"batch {b} is not a multiple of accum {accum}")
        mb = b // accum
        for i in range(accum):
            self.accumulate(arr[i * mb:(i + 1) * mb])
        self.apply()
        return self.loss

    def eval_loss(self, tokens: Any) -> float:
        """Mean loss over (batch, seq_len + 1) ids without touching the gradients."""
        arr, b, t = _tokens(tokens)
        loss = ffi.new("double *")
        check(lib.lrt_trainer_eval(self._h, ffi.from_buffer("int32_t[]", arr), b, t, loss))
        return float(loss[0])

    def logits(self, tokens: Any) -> np.ndarray:
        """Logits (vocab,) of the last of a sequence of ids."""
        arr = np.ascontiguousarray(np.asarray(tokens, dtype=np.int32).reshape(-1))
        vocab = self._shapes["tok_embd"][0]
        out = np.empty(vocab, dtype=np.float32)
        check(lib.lrt_trainer_logits(self._h, ffi.from_buffer("int32_t[]", arr), arr.size,
                                     ffi.from_buffer("float[]", out), vocab))
        return out

    # ---- tensors ------------------------------------------------------------------------

    @property
    def names(self) -> List[str]:
        return list(self._names)

    def shape(self, name: str) -> Tuple[int, int]:
        return self._shapes[name]

    def read(self, name: str, what: str = "weight") -> np.ndarray:
        """A copy of a tensor as float32 (rows, cols); vectors as (cols,)."""
        if name not in self._index:
            raise errors.NotFoundError(f"no tensor {name!r}; tensors: {', '.join(self._names[:8])}, ...")
        r, c = self._shapes[name]
        out = np.empty(r * c, dtype=np.float32)
        check(lib.lrt_trainer_tensor_read(self._h, self._index[name], _WHAT[what], ffi.from_buffer("float[]", out),
                                          r * c))
        return out.reshape(c) if r == 1 else out.reshape(r, c)

    def write(self, name: str, value: Any) -> None:
        if name not in self._index:
            raise errors.NotFoundError(f"no tensor {name!r}")
        r, c = self._shapes[name]
        arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        if arr.size != r * c:
            raise errors.InvalidArgumentError(f"tensor {name} has shape ({r}, {c}); got {arr.shape}")
        check(lib.lrt_trainer_tensor_write(self._h, self._index[name], ffi.from_buffer("float[]", arr), r * c))

    def weights(self) -> Dict[str, np.ndarray]:
        return {n: self.read(n) for n in self._names}

    def weights_bytes(self) -> bytes:
        """All weights, in tensor order, as little-endian float32 bytes (for hashing)."""
        return b"".join(self.read(n).astype("<f4").tobytes() for n in self._names)

    # ---- optimizer state ----------------------------------------------------------------

    def state_bytes(self) -> bytes:
        n = ffi.new("size_t *")
        check(lib.lrt_trainer_state_size(self._h, n))
        buf = bytearray(n[0])
        check(lib.lrt_trainer_state_save(self._h, ffi.from_buffer(buf), n[0], ffi.NULL))
        return bytes(buf)

    def load_state(self, blob: bytes) -> None:
        check(lib.lrt_trainer_state_load(self._h, ffi.from_buffer(blob), len(blob)))

    # ---- gradient buffers (data parallelism: loomrt.ray, docs/scale-out.md) ----------------

    def grad_size(self) -> int:
        """Floats in the flat gradient buffer (the parameters; the embedding lookup's part travels
        as per-token rows: :meth:`accumulate_rows`, :meth:`lookup_add`)."""
        n = ffi.new("int64_t *")
        check(lib.lrt_trainer_grad_size(self._h, n))
        return int(n[0])

    def grad_read(self) -> Tuple[np.ndarray, float, int]:
        """The pending accumulation: (raw gradient sums (float32), loss sum, target count)."""
        out = np.empty(self.grad_size(), dtype=np.float32)
        loss = ffi.new("double *")
        cnt = ffi.new("int64_t *")
        check(lib.lrt_trainer_grad_read(self._h, ffi.from_buffer("float[]", out), out.size, loss, cnt))
        return out, float(loss[0]), int(cnt[0])

    def grad_add(self, grad: Any, loss_sum: float, count: int) -> None:
        """Add a part read by :meth:`grad_read` (of a trainer of the same config) to the
        accumulators: one float addition per element, in the order of the calls."""
        arr = np.ascontiguousarray(np.asarray(grad, dtype=np.float32).reshape(-1))
        check(lib.lrt_trainer_grad_add(self._h, ffi.from_buffer("float[]", arr), arr.size, float(loss_sum),
                                       int(count)))

    def accumulate_rows(self, tokens: Any) -> Tuple[float, np.ndarray]:
        """:meth:`accumulate`, also returning the gradient at each input position's embedding
        row, (batch * seq_len, dim) float32: what the lookup adds to tok_embd, token after token."""
        arr, b, t = _tokens(tokens)
        d = self._shapes["tok_embd"][1]
        rows = np.empty((b * t, d), dtype=np.float32)
        loss = ffi.new("double *")
        check(lib.lrt_trainer_accumulate_rows(self._h, ffi.from_buffer("int32_t[]", arr), b, t,
                                              ffi.from_buffer("float[]", rows), rows.size, loss))
        return float(loss[0]), rows

    def lookup_add(self, tokens: Any, rows: Any) -> None:
        """Add rows from :meth:`accumulate_rows` of the same tokens to the lookup's accumulator."""
        arr, b, t = _tokens(tokens)
        r = np.ascontiguousarray(np.asarray(rows, dtype=np.float32))
        check(lib.lrt_trainer_lookup_add(self._h, ffi.from_buffer("int32_t[]", arr), b, t,
                                         ffi.from_buffer("float[]", r), r.size))

    def grad_clear(self) -> None:
        """Drop the pending accumulation."""
        check(lib.lrt_trainer_grad_clear(self._h))

    def flat_weights(self) -> np.ndarray:
        """All weights as one float32 vector, in tensor order."""
        out = np.empty(self.n_params, dtype=np.float32)
        check(lib.lrt_trainer_weights_read(self._h, ffi.from_buffer("float[]", out), out.size))
        return out

    def set_flat_weights(self, flat: Any) -> None:
        arr = np.ascontiguousarray(np.asarray(flat, dtype=np.float32).reshape(-1))
        check(lib.lrt_trainer_weights_write(self._h, ffi.from_buffer("float[]", arr), arr.size))

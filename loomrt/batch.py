"""Batched decoding: advance many sessions of one model in one pass.

>>> import loomrt
>>> model = loomrt.load("model.gguf")
>>> a, b = model.session(), model.session()
>>> batch = loomrt.Batch(model)
>>> batch.eval([(a, model.encode("Hello")), (b, model.encode("Once upon a time"))])
>>> a.sample(), b.sample()

Each session's logits are bit-identical to ``session.eval(tokens)`` on that session alone,
whatever else is in the batch (its size, order, the other sequences' positions) and at any
thread count; the weights are read once per pass for all of them.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from . import _lib, errors
from .model import Model, Session, _check_ids


class Batch:
    """Scratch buffers and worker threads for batched passes over one model's sessions."""

    def __init__(self, model: Model, threads: Optional[int] = None):
        n = model.threads if threads is None else threads
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1024:
            raise errors.InvalidArgumentError(f"threads must be an integer in [1, 1024], got {threads!r}")
        self.model = model
        self.threads = n
        self._h = _lib.batch_new(model._h, n)

    def eval(self, entries: Sequence[Tuple[Session, Sequence[int]]], *, _before_run: Any = None) -> None:
        """Append each entry's tokens to its session and run them all in one pass; each
        session then holds the logits of its last token (``session.logits()``) and samples
        with its own settings (``session.sample()``). Each session at most once. On failure
        no session changes."""
        items: List[Tuple[Any, List[int]]] = []
        for e in entries:
            if not isinstance(e, tuple) or len(e) != 2 or not isinstance(e[0], Session):
                raise errors.InvalidArgumentError("batch entries must be (Session, token ids) pairs")
            s, ids = e
            if s.model is not self.model and s.model._h != self.model._h:
                raise errors.InvalidArgumentError("a session of another model was given to this batch")
            items.append((s._h, _check_ids(ids, self.model.vocab_size)))
        if not items:
            raise errors.InvalidArgumentError("the batch is empty: give (session, token ids) pairs")
        # each session is held for the step like any Session call: one another thread (or an
        # open stream over it) is using raises BusyError and nothing runs
        held: List[Session] = []
        try:
            for s, _ in entries:
                if not any(s is h for h in held):  # the same session twice: C refuses it clearly
                    s._acquire("batch eval")
                    held.append(s)
            _lib.batch_eval(self._h, items, _before_run)  # _before_run: loomrt.server's hand-off
        finally:
            for s in held:
                s._release()


def last_logits(session: Session) -> np.ndarray:
    """The logits row of a session's last evaluated token (vocab float32)."""
    return _lib.session_logits(session._h)[-1]

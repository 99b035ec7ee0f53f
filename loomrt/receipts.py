"""Replaying receipts of every kind: the one entry point above the modules that make them.

``audit`` knows single-model receipts and nothing of the Model class; ``weave`` knows woven
ones and uses ``audit``'s hashes. This module sits above both (and above ``model``, whose
``load`` it passes down), so imports keep one direction (tests/test_layout.py checks it).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from . import audit, weave
from .model import load


def verify_receipt(receipt: Union[Dict[str, Any], str, os.PathLike, bytes], model: Any = None, *,
                   step: Optional[int] = None, threads: Optional[int] = None) -> audit.VerifyResult:
    """Replay a generation receipt (a dict, JSON text or bytes, or a path to a JSON file).

    Single-model receipts (:func:`loomrt.audit.verify_receipt`): ``model`` is a loaded
    :class:`loomrt.Model` or a path, loaded the way the receipt's model was (quantize, int8
    activations); default: the default model. ``step=N`` replays step N alone.
    Weave receipts (:func:`loomrt.weave.verify_weave_receipt`): ``model`` is a list of loaded
    models or paths in the receipt's order; default: the recorded paths."""
    r = audit.load_receipt(receipt)
    if r["format"] == audit.WEAVE_RECEIPT_FORMAT:
        if step is not None:
            raise audit.errors.InvalidArgumentError("step= replays one step of a single-model receipt; a weave "
                                                    "receipt is replayed whole")
        return weave.verify_weave_receipt(r, model, threads=threads)
    return audit.verify_receipt(r, model, step=step, threads=threads, load=load)

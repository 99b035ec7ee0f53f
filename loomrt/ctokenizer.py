"""The C tokenizer of a model (csrc/text/tok_*.c) from Python.

The Python package tokenizes with :class:`loomrt.Tokenizer` (HuggingFace ``tokenizers``);
the C library carries its own tokenizer, loaded with the model, for users without Python
(C, C#, ctypes). Both give the same ids and text (tests/test_c_tokenizer.py checks it).
:class:`CTokenizer` exposes the C one::

    model = loomrt.load("model.gguf")
    ctok = loomrt.CTokenizer(model)
    ids = ctok.encode("Hello")                  # == model.encode("Hello")
    text = ctok.decode(ids)                     # == model.tokenizer.decode(ids)
"""
from __future__ import annotations

import os
from typing import Any, Iterable, List, Union

from . import _lib, errors


class CTokenizer:
    """Tokenize and detokenize with the tokenizer built into a model by the C library."""

    def __init__(self, model: Any) -> None:
        """``model``: a :class:`loomrt.Model`, or a path to open (folder or .gguf file).

        Raises NotFoundError / FormatError / UnsupportedError when the model has no
        usable tokenizer, with the reason."""
        if isinstance(model, (str, os.PathLike)):
            self._handle = _lib.model_open(os.fspath(model))
        else:
            handle = getattr(model, "_h", None)
            if handle is None:
                raise errors.InvalidArgumentError("CTokenizer needs a loomrt.Model or a model path")
            self._handle = handle
        self._model = model  # keeps the model (and its handle) alive
        if not _lib.model_has_tokenizer(self._handle):
            _lib.tokenize(self._handle, "")  # raises the reason
            raise errors.InternalError("the model reports no tokenizer but tokenizing worked")

    def encode(self, text: str, add_special_tokens: bool = True, parse_special: bool = True) -> List[int]:
        """Token ids of ``text``. ``add_special_tokens``: BOS/EOS as the tokenizer's
        post-processor adds them; ``parse_special``: special-token texts in ``text`` become
        their ids (as :meth:`loomrt.Tokenizer.encode` does)."""
        return _lib.tokenize(self._handle, text, add_special=add_special_tokens, parse_special=parse_special)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids`` (the decoder's rules apply; invalid UTF-8 becomes U+FFFD)."""
        checked = []
        for i in ids:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise errors.InvalidArgumentError(f"token ids must be ints, got {type(i).__name__}")
            value = int(i.__index__())
            if not -(1 << 31) <= value < (1 << 31):
                raise errors.InvalidArgumentError(f"token id {value} is out of range")
            checked.append(value)
        return _lib.detokenize(self._handle, checked, skip_special=skip_special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """Bytes of one token as the decoder maps it, without neighbouring context."""
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not -(1 << 31) <= token_id < (1 << 31):
            raise errors.InvalidArgumentError(f"token id must be an int32, got {token_id!r}")
        return _lib.token_bytes(self._handle, token_id)

    def __repr__(self) -> str:
        return f"CTokenizer({self._model!r})" if isinstance(self._model, (str, os.PathLike)) else "CTokenizer(<model>)"


def has_tokenizer(model: Union[Any, str]) -> bool:
    """True when the C library found a usable tokenizer in the model."""
    handle = getattr(model, "_h", None)
    if handle is None:
        handle = _lib.model_open(os.fspath(model))
    return _lib.model_has_tokenizer(handle)

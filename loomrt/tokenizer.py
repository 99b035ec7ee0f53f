"""Text <-> token ids for loomrt: the C tokenizer (csrc/text/tok_*.c) from Python.

There is one tokenizer implementation, in C, loaded with the model from ``tokenizer.json``
(HuggingFace folders) or the GGUF ``tokenizer.ggml.*`` metadata. The Python package encodes
and decodes through it, so Python, C, C# and web users get the same ids and text. Its
output equals HuggingFace ``tokenizers`` on tokenizer.json files and llama.cpp on GGUF
files; the tests use both as oracles (tests/test_c_tokenizer.py, tests/test_tokenizer.py),
and ``benchmarks/tokenizer_speed.py`` compares the speed.

:class:`Tokenizer` keeps the names ``tokenizers`` users know (``encode`` returning
:class:`Encoding` with ``.ids`` / ``.tokens``, ``decode``, ``encode_batch``,
``token_to_id``, ``id_to_token``) and adds what an inference runtime needs: BOS/EOS
bookkeeping, chat-template rendering (Jinja, as ``transformers`` does it) and streaming
detokenization::

    tok = loomrt.Tokenizer.from_file("tokenizer.json")      # or from_folder / from_gguf
    enc = tok.encode("Hello world")
    enc.ids, enc.tokens, tok.decode(enc.ids)
    model.tokenizer                                          # the tokenizer of a loaded model
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox

from . import _lib
from .errors import FormatError, InvalidArgumentError, LoomrtError, NotFoundError

__all__ = ["Tokenizer", "Encoding", "StreamDecoder", "CHATML_TEMPLATE"]

#: Template used when a model ships no chat template (ChatML, as popularised by
#: OpenAI and used by Qwen/SmolLM/Hermes models).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# ---------------------------------------------------------------------------
# Chat template support
# ---------------------------------------------------------------------------


class _GenerationTag(jinja2.ext.Extension):
    """Accepts ``{% generation %}...{% endgeneration %}`` blocks (rendered as-is).

    Hugging Face templates use the tag to mark assistant output for training
    masks; for inference the body is simply rendered.
    """

    tags = {"generation"}

    def parse(self, parser: Any) -> list[jinja2.nodes.Node]:
        next(parser.stream)
        body: list[jinja2.nodes.Node] = parser.parse_statements(
            ("name:endgeneration",), drop_needle=True
        )
        return body


class _TemplateRaised(Exception):
    """Raised by the ``raise_exception`` template helper."""


def _raise_exception(message: str) -> NoReturn:
    raise _TemplateRaised(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """The ``tojson`` filter as Hugging Face defines it (no HTML escaping)."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _template_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as transformers hands it to a template: a deep plain copy (dicts, lists,
    scalars) with its reasoning also under ``reasoning_content`` and ``thinking``."""

    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(plain(x) for x in v) if isinstance(v, tuple) else [plain(x) for x in v]
        return v

    out = plain(message)
    reasoning = next((out[k] for k in _REASONING_FIELDS if out.get(k) is not None), None)
    if reasoning is not None:
        out = {"thinking": reasoning, **out, "reasoning_content": reasoning}
    return out


def _make_template_env() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    return env


# ---------------------------------------------------------------------------
# Public classes
# ---------------------------------------------------------------------------


class Encoding(list):
    """The ids of one encoded text: a ``list`` of ints, plus ``tokenizers``' names
    ``.ids`` (the ids) and ``.tokens`` (their vocabulary texts)."""

    __slots__ = ("_tokenizer",)

    def __init__(self, ids: Iterable[int], tokenizer: Tokenizer) -> None:
        super().__init__(ids)
        self._tokenizer = tokenizer

    @property
    def ids(self) -> list[int]:
        """The token ids (a plain list)."""
        return list(self)

    @property
    def tokens(self) -> list[str]:
        """The vocabulary text of each id (e.g. ``'Ġworld'``, ``'<0x0A>'``; for an added
        token its content, where ``tokenizers`` shows the matched text with any stripped
        spaces)."""
        return [self._tokenizer.id_to_token(i) for i in self]


class Tokenizer:
    """A model's tokenizer (the C one), with the metadata an inference runtime needs.

    Immutable and safe to share between threads. Build one with :meth:`from_file`,
    :meth:`from_str`, :meth:`from_folder` or :meth:`from_gguf`, or take ``model.tokenizer``.
    """

    def __init__(self, handle: Any, source: str = "<memory>") -> None:
        """Wrap an ``lrt_model`` handle that carries a tokenizer (use the constructors)."""
        if not _lib.model_has_tokenizer(handle):
            _lib.tokenize(handle, "")  # raises the reason (missing, malformed, unsupported)
            raise InvalidArgumentError("the handle has no tokenizer")
        self._h = handle  # keeps the C model (or tokenizer-only handle) alive
        self._source = source
        self._vocab_size = _lib.model_get_int(handle, _lib.lib.LRT_INFO_TOKENIZER_SIZE)
        bos = _lib.model_get_int(handle, _lib.lib.LRT_INFO_TOKENIZER_BOS_ID)
        eos = _lib.model_get_int(handle, _lib.lib.LRT_INFO_TOKENIZER_EOS_ID)
        self._bos_token_id = bos if bos >= 0 else None
        eog = _lib.model_eog_ids(handle)
        self._eos_token_ids = ([eos] if eos >= 0 else []) + [i for i in eog if i != eos]
        template = _lib.model_chat_template(handle)
        self._chat_template = template or None
        self._compiled_template: jinja2.Template | None = None

    # -- constructors -------------------------------------------------------

    @classmethod
    def from_str(cls, json_text: str | bytes) -> Tokenizer:
        """A tokenizer from the text of a ``tokenizer.json`` (``tokenizers.Tokenizer.to_str()``)."""
        data = json_text.encode("utf-8") if isinstance(json_text, str) else bytes(json_text)
        return cls(_lib.model_open_memory({"tokenizer.json": data}, _lib.lib.LRT_OPEN_TOKENIZER_ONLY))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a ``tokenizer.json`` file.

        No BOS/EOS ids or chat template are known from this file alone; use
        :meth:`from_folder` to pick them up from ``tokenizer_config.json``.
        ``encode`` adds whatever the file's post-processor adds.
        """
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"{path}: tokenizer.json not found")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise NotFoundError(f"{path}: cannot read it ({exc.strerror})") from None
        try:
            handle = _lib.model_open_memory({"tokenizer.json": data}, _lib.lib.LRT_OPEN_TOKENIZER_ONLY)
        except LoomrtError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        return cls(handle, source=str(path))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> Tokenizer:
        """Load the tokenizer of a Hugging Face model folder (no weights needed).

        Reads ``tokenizer.json`` (required) and, when present, ``tokenizer_config.json``
        (``bos_token``, ``eos_token``, ``add_bos_token``, ``add_eos_token``,
        ``chat_template``), ``special_tokens_map.json`` (``bos_token``/``eos_token``
        fallback), ``chat_template.jinja`` / ``chat_template.json`` (take precedence over the
        config's template) and ``generation_config.json`` (extra ``eos_token_id`` values).

        As in ``transformers``, an explicit ``add_bos_token`` or ``add_eos_token`` in
        ``tokenizer_config.json`` overrides the post-processor of ``tokenizer.json``;
        otherwise the post-processor decides which special tokens ``encode`` adds.
        """
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise NotFoundError(f"{folder}: tokenizer folder does not exist")
        return cls(_lib.model_open(folder, _lib.lib.LRT_OPEN_TOKENIZER_ONLY), source=folder)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike) -> Tokenizer:
        """Load the tokenizer of a GGUF file (its ``tokenizer.ggml.*`` metadata; the
        tensors are not read). Gives llama.cpp's ids for the file."""
        path = os.fspath(path)
        return cls(_lib.model_open(path, _lib.lib.LRT_OPEN_TOKENIZER_ONLY), source=path)

    # -- properties ---------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of token ids (highest id + 1, added tokens included)."""
        return self._vocab_size

    def get_vocab_size(self) -> int:
        """``tokenizers``' name for :attr:`vocab_size`."""
        return self._vocab_size

    @property
    def bos_token_id(self) -> int | None:
        """Beginning-of-sequence token id, or ``None``."""
        return self._bos_token_id

    @property
    def eos_token_ids(self) -> list[int]:
        """Ids that end generation; the first one is the model's primary EOS."""
        return list(self._eos_token_ids)

    @property
    def bos_token(self) -> str | None:
        """Text of the BOS token, or ``None``."""
        return None if self._bos_token_id is None else self.id_to_token(self._bos_token_id)

    @property
    def eos_token(self) -> str | None:
        """Text of the primary EOS token, or ``None``."""
        return self.id_to_token(self._eos_token_ids[0]) if self._eos_token_ids else None

    @property
    def chat_template(self) -> str | None:
        """The model's Jinja chat template source, or ``None`` if it has none."""
        return self._chat_template

    # -- encoding / decoding ------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True, parse_special: bool = True) -> Encoding:
        """Convert ``text`` to token ids (an :class:`Encoding`: a list with ``.ids`` and
        ``.tokens``).

        With ``parse_special`` (the default, as in ``tokenizers``) special-token strings
        in ``text`` become their ids. With ``add_special_tokens`` the model's BOS/EOS policy
        applies (``add_bos_token`` for GGUF files, the post-processor or an explicit
        ``add_bos_token`` for Hugging Face folders).

        Raises:
            InvalidArgumentError: ``text`` is not a str or contains lone surrogates.
        """
        return Encoding(_lib.tokenize(self._h, text, bool(add_special_tokens), bool(parse_special)), self)

    def encode_batch(self, texts: Iterable[str], add_special_tokens: bool = True,
                     parse_special: bool = True) -> list[Encoding]:
        """:meth:`encode` of each text."""
        if isinstance(texts, (str, bytes)):
            raise InvalidArgumentError("encode_batch expects a list of texts; use encode for one text")
        return [self.encode(t, add_special_tokens, parse_special) for t in texts]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Convert token ids back to text (the decoder's rules across tokens apply).

        Invalid UTF-8 produced by byte tokens is replaced by U+FFFD. Ids the model's
        embedding has beyond the tokenizer's (padded rows) give no text.

        Raises:
            InvalidArgumentError: an id is not an int, or negative, or outside the vocabulary.
        """
        return _lib.detokenize(self._h, self._fast_ids(ids), bool(skip_special_tokens))

    def _fast_ids(self, ids: Any) -> Any:
        """``ids`` itself when it is a list / tuple of plain ints (checked at C speed: the
        range is checked by the C library), else the checked list."""
        if type(ids) in (list, tuple, Encoding) and set(map(type, ids)) <= {int}:
            return ids
        return self._check_ids(ids)

    def decode_batch(self, sequences: Iterable[Iterable[int]], skip_special_tokens: bool = False) -> list[str]:
        """:meth:`decode` of each id sequence."""
        return [self.decode(ids, skip_special_tokens) for ids in sequences]

    def token_to_id(self, token: str) -> int | None:
        """Id of the vocabulary entry ``token`` (raw token text), or ``None``."""
        if not isinstance(token, str):
            raise InvalidArgumentError(f"token must be str, got {type(token).__name__}")
        return _lib.token_id(self._h, token.encode("utf-8", "surrogateescape"))

    def id_to_token(self, token_id: int) -> str:
        """Raw vocabulary text of ``token_id`` (e.g. ``'Ġthe'`` or ``'<0x0A>'``).

        Raises:
            InvalidArgumentError: ``token_id`` is out of range or unassigned.
        """
        (checked,) = self._check_ids([token_id])
        try:
            raw = _lib.token_text(self._h, checked)
        except NotFoundError:
            raise InvalidArgumentError(f"token id {token_id} is not assigned in this vocabulary") from None
        return raw.decode("utf-8", "surrogateescape")

    def token_bytes(self, token_id: int) -> bytes:
        """Bytes of one token as the decoder maps it, without neighbouring context (may be a
        partial UTF-8 sequence)."""
        (checked,) = self._check_ids([token_id])
        return _lib.token_bytes(self._h, checked)

    def get_vocab(self) -> dict[str, int]:
        """Vocabulary text -> id of every assigned id (``tokenizers``' ``get_vocab``)."""
        out: dict[str, int] = {}
        for i in range(self._vocab_size):
            try:
                out.setdefault(_lib.token_text(self._h, i).decode("utf-8", "surrogateescape"), i)
            except NotFoundError:
                continue
        return out

    def stream_decoder(self, skip_special_tokens: bool = False) -> StreamDecoder:
        """Create an incremental decoder for generated tokens."""
        return StreamDecoder(self, skip_special_tokens=skip_special_tokens)

    # -- chat templates -----------------------------------------------------

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> str:
        """Render ``messages`` with the model's chat template.

        The template runs in a sandboxed Jinja environment configured like
        Hugging Face ``transformers`` (``trim_blocks``, ``lstrip_blocks``, the
        ``tojson`` filter, ``raise_exception``, ``loopcontrols`` and
        ``{% generation %}`` blocks).  Variables: ``messages``,
        ``add_generation_prompt``, ``bos_token``, ``eos_token`` plus any
        ``kwargs`` (e.g. ``tools=...``; ``tools`` and ``documents`` are None
        when not given), and ``strftime_now(format)``, which formats ``date``
        (a ``datetime``; default: now) so that a dated prompt can be rendered
        reproducibly.  Messages are passed as transformers prepares them
        (plain copies; ``content`` may be None, ``tool_calls`` are kept; the
        reasoning under ``reasoning_content`` and ``thinking`` as well).

        When the model has no template, ChatML (:data:`CHATML_TEMPLATE`) is
        used.

        Raises:
            InvalidArgumentError: ``messages`` is malformed, or the template
                rejected the conversation via ``raise_exception``.
            FormatError: the template is not valid Jinja or fails to render.
        """
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise InvalidArgumentError("messages must be a list of {'role': ..., 'content': ...} dicts")
        for index, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise InvalidArgumentError(f"messages[{index}] must be a dict, got {type(message).__name__}")
            if not isinstance(message.get("role"), str):
                raise InvalidArgumentError(f"messages[{index}] needs a string 'role', e.g. {{'role': 'user', 'content': 'Hi'}}")
            if "content" not in message:
                raise InvalidArgumentError(
                    f"messages[{index}] has no 'content': every message needs one, e.g. {{'role': 'user', 'content': 'Hi'}}"
                )
            content = message["content"]
            if not (isinstance(content, (str, list)) or (content is None and message.get("tool_calls"))):
                raise InvalidArgumentError(
                    f"messages[{index}]['content'] must be a str (or a list of content parts), got "
                    f"{type(content).__name__}"
                )
        template = self._template()
        # as transformers' render_jinja_template: tools / documents are None unless given,
        # strftime_now formats the current time (pinned by date=, for a reproducible
        # prompt), messages are plain copies with reasoning under its usual names
        date = kwargs.pop("date", None)
        when = date if date is not None else datetime.datetime.now()
        if not isinstance(when, (datetime.date, datetime.datetime)):
            raise InvalidArgumentError("date must be a datetime.date or datetime.datetime (or None: now)")
        variables: dict[str, Any] = {
            "bos_token": self.bos_token or "",
            "eos_token": self.eos_token or "",
            "tools": None,
            "documents": None,
            "strftime_now": lambda fmt: when.strftime(fmt),
        }
        variables.update(kwargs)
        variables["messages"] = [_template_message(m) for m in messages]
        variables["add_generation_prompt"] = bool(add_generation_prompt)
        try:
            return template.render(**variables)
        except _TemplateRaised as exc:
            raise InvalidArgumentError(f"chat template rejected the messages: {exc}") from exc
        except Exception as exc:  # jinja2 errors, or TypeErrors raised inside the template
            raise FormatError(
                f"{self._source}: chat template failed to render: {type(exc).__name__}: {exc}"
            ) from exc

    # -- internals ----------------------------------------------------------

    def _template(self) -> jinja2.Template:
        if self._compiled_template is None:
            source = self._chat_template if self._chat_template is not None else CHATML_TEMPLATE
            try:
                self._compiled_template = _make_template_env().from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise FormatError(
                    f"{self._source}: chat template is not valid Jinja "
                    f"(line {exc.lineno}: {exc.message}); fix the template text"
                ) from exc
        return self._compiled_template

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise InvalidArgumentError("ids must be an iterable of ints")
        checked: list[int] = []
        for tid in ids:
            if isinstance(tid, bool) or not hasattr(tid, "__index__"):
                raise InvalidArgumentError(f"token ids must be ints, got {type(tid).__name__}")
            value = int(tid.__index__())  # accepts numpy integers too
            if not 0 <= value < self._vocab_size:
                raise InvalidArgumentError(f"token id {value} out of range [0, {self._vocab_size})")
            checked.append(value)
        return checked

    def __repr__(self) -> str:
        return f"Tokenizer(source={self._source!r}, vocab_size={self._vocab_size})"


class StreamDecoder:
    """Incremental detokenizer for streaming generation.

    :meth:`add` returns only text that is final: a character whose UTF-8
    bytes are spread over several tokens is held back until it is complete.
    Concatenating every :meth:`add` result and the final :meth:`flush` gives
    exactly ``tokenizer.decode(all_ids)``.

    Implementation: the text of a small window of already-emitted tokens (the
    "prefix") is decoded together with the new tokens; the difference is the
    new text.  Decoding a window rather than single tokens keeps decoders that
    depend on neighbouring tokens (leading-space stripping, byte fallback,
    byte-level pieces) correct.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = False) -> None:
        """Create a decoder for ids produced with ``tokenizer``."""
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        # Window of ids still needed: ids[:read] were already emitted as text
        # (kept as left context), ids[read:] are pending.
        self._ids: list[int] = []
        self._read = 0

    def add(self, token_id: int) -> str:
        """Append one token id and return the newly completed text (maybe ``""``).

        Raises:
            InvalidArgumentError: ``token_id`` is not a valid id.
        """
        (checked,) = self._tokenizer._check_ids([token_id])
        self._ids.append(checked)
        prefix_text, full_text = self._window_texts()
        if full_text.endswith("\ufffd") or len(full_text) <= len(prefix_text):
            return ""  # an incomplete character is pending, or nothing visible yet
        # The tokens emitted just now become the left context of the next window.
        del self._ids[: self._read]
        self._read = len(self._ids)
        return full_text[len(prefix_text):]

    def flush(self) -> str:
        """Return any held-back text (dangling bytes become U+FFFD) and reset."""
        prefix_text, full_text = self._window_texts()
        self._ids.clear()
        self._read = 0
        return full_text[len(prefix_text):] if len(full_text) > len(prefix_text) else ""

    def _window_texts(self) -> tuple[str, str]:
        h, skip = self._tokenizer._h, self._skip_special
        prefix_text = _lib.detokenize(h, self._ids[: self._read], skip) if self._read else ""
        full_text = _lib.detokenize(h, self._ids, skip) if self._ids else ""
        return prefix_text, full_text

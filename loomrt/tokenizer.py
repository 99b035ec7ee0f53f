"""Text <-> token-id conversion for loomrt.

The :class:`Tokenizer` class wraps a Hugging Face ``tokenizers.Tokenizer``
(the Rust implementation) and adds what an inference runtime needs on top of
it: BOS/EOS bookkeeping, chat-template rendering and incremental (streaming)
detokenization.

Three sources are supported:

* ``tokenizer.json`` files (:meth:`Tokenizer.from_file`),
* Hugging Face model folders (:meth:`Tokenizer.from_folder`), which add
  ``tokenizer_config.json`` / ``special_tokens_map.json`` /
  ``generation_config.json`` / ``chat_template.jinja`` metadata,
* GGUF metadata (:meth:`Tokenizer.from_gguf_metadata`).  The tokenizer is
  rebuilt from the ``tokenizer.ggml.*`` keys so that the produced ids are the
  ones llama.cpp produces for the same file:

  - ``tokenizer.ggml.model == "gpt2"``: byte-level BPE.  The pre-tokenizer is
    selected from ``tokenizer.ggml.pre`` and uses the same split expressions,
    applied in the same order, as llama.cpp.
  - ``tokenizer.ggml.model == "llama"``: SentencePiece-style BPE with byte
    fallback.  llama.cpp merges adjacent symbols by the *score* of the merged
    piece; this is expressed as an ordinary BPE whose merge ranks are derived
    from the scores.  When merge priorities are ambiguous (two different
    mergeable pieces with the same score; llama.cpp then prefers the leftmost
    pair, which a rank-based BPE cannot express) encoding switches to an exact
    pure-Python port of llama.cpp's algorithm (slower, same ids).

Special tokens are always recognised in the input text (llama.cpp's
``parse_special=True``; Hugging Face's default behaviour).

Known, deliberate limits of the GGUF path (none occur with ordinary files):

* when two special tokens overlap in the input text, the leftmost-longest
  match wins, whereas llama.cpp extracts the longest token first;
* in a SentencePiece vocabulary without score ties (fast path), when the
  *same* piece can be formed at two overlapping positions by different
  splits, the split with the lower rank wins, whereas llama.cpp takes the
  leftmost;
* per-model token attributes that llama.cpp hard-codes by model name (e.g.
  right-stripping around Phi-3 special tokens) are not reproduced;
* Unicode character classes come from the regex engine of ``tokenizers``
  (Oniguruma), llama.cpp uses its own tables; they agree except possibly on
  characters assigned in very recent Unicode versions.
"""

from __future__ import annotations

import datetime
import heapq
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from .errors import FormatError, InvalidArgumentError, NotFoundError, UnsupportedError

__all__ = ["Tokenizer", "StreamDecoder", "CHATML_TEMPLATE", "SUPPORTED_GGUF_PRE_TOKENIZERS"]

#: Template used when a model ships no chat template (ChatML, as popularised by
#: OpenAI and used by Qwen/SmolLM/Hermes models).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# ---------------------------------------------------------------------------
# GGUF token types (tokenizer.ggml.token_type)
# ---------------------------------------------------------------------------

_TYPE_UNDEFINED = 0
_TYPE_NORMAL = 1
_TYPE_UNKNOWN = 2
_TYPE_CONTROL = 3
_TYPE_USER_DEFINED = 4
_TYPE_UNUSED = 5
_TYPE_BYTE = 6

# Token texts that llama.cpp treats as control tokens whatever their declared
# type (end-of-generation, fill-in-the-middle and tool-channel markers).  They
# are split out of the input before BPE, exactly like declared control tokens.
_FORCED_CONTROL_TEXTS = frozenset(
    {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|eom_id|>",
        "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "</s>", "<eos>",
        "<turn|>", "<|tool_response>", "<end_of_utterance>",
        "<\uff5cend\u2581of\u2581sentence\uff5c>",
        "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\u2581<PRE>",
        "<|code_prefix|>", "<|prefix|>", "<\uff5cfim\u2581begin\uff5c>",
        "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\u2581<SUF>",
        "<|code_suffix|>", "<|suffix|>", "<\uff5cfim\u2581hole\uff5c>",
        "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\u2581<MID>",
        "<|code_middle|>", "<|middle|>", "<\uff5cfim\u2581end\uff5c>",
        "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
        "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
        "<|file_sep|>",
    }
)

# Token texts that llama.cpp always treats as user-defined (split out before
# BPE, but not "special": they stay visible when special tokens are skipped).
_FORCED_USER_DEFINED_TEXTS = frozenset({"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})

# Token texts that end a generation turn (used for ``eos_token_ids``).
_END_OF_TURN_TEXTS = frozenset(
    {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|end_of_text|>", "<|eom_id|>", "<EOT>", "<end_of_utterance>",
    }
)

# ---------------------------------------------------------------------------
# Pre-tokenizer split expressions, per llama.cpp pre-tokenizer type.
#
# Every expression splits each piece produced by the previous one; matches
# and the text between matches both become pieces ("isolated" behaviour).
# ---------------------------------------------------------------------------

_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_RE_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_RE_LLAMA3 = (
    _CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_QWEN2 = (
    _CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_QWEN35 = (
    _CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+"
    + r"|\s+(?!\S)|\s+"
)
_RE_SEED_CODER = (
    _CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_MINICPM5 = (
    _CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_BAILINGMOE = (
    r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"
)
_RE_UFAKZEKA = r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_RE_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_GPT4O = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+" + _CONTRACTIONS + "?"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*" + _CONTRACTIONS + "?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_BLOOM = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
# llama.cpp runs expressions without \p{..} classes through std::wregex after
# replacing every non-ASCII whitespace character by U+000B, so such characters
# only ever match \s.  Classes whose ranges cover non-ASCII whitespace (U+2028,
# U+3000, ...) are therefore intersected with \S ("&&\S", Oniguruma syntax).
_RE_CJK_HANGUL = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff&&\\S]+"
_RE_DEEPSEEK_LETTERS = (
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
    "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
    "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
    "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
    "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2"
    "\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
_RE_DEEPSEEK_PUNCT = "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002&&\\S]+"
_RE_DEEPSEEK3_MAIN = (
    r"[!" + '"' + r"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+"
    r"|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class _PreTokenizerSpec:
    """How llama.cpp pre-tokenizes text for one ``tokenizer.ggml.pre`` family."""

    __slots__ = ("patterns", "ignore_merges", "add_bos")

    def __init__(
        self, patterns: Sequence[str], *, ignore_merges: bool = False, add_bos: bool = False
    ) -> None:
        self.patterns: tuple[str, ...] = tuple(patterns)
        self.ignore_merges = ignore_merges
        self.add_bos = add_bos


_SPEC_DEFAULT = _PreTokenizerSpec([r"[\p{P}\$\+<=>\^~\|]+", _RE_GPT2, r"\p{N}+", "[0-9][0-9][0-9]"])
_SPEC_GPT2 = _PreTokenizerSpec([_RE_GPT2])
_SPEC_STARCODER = _PreTokenizerSpec([r"\p{N}", _RE_GPT2])
_SPEC_LLAMA3 = _PreTokenizerSpec([_RE_LLAMA3], ignore_merges=True, add_bos=True)
_SPEC_DBRX = _PreTokenizerSpec([_RE_LLAMA3])
_SPEC_QWEN2 = _PreTokenizerSpec([_RE_QWEN2])

# tokenizer.ggml.pre value -> split behaviour (names as accepted by llama.cpp).
_PRE_TOKENIZERS: dict[str, _PreTokenizerSpec] = {
    "default": _SPEC_DEFAULT,
    **{
        name: _SPEC_GPT2
        for name in (
            "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
            "a.x-4.0", "mellum", "modern-bert", "exaone4", "mpt", "olmo", "jais", "trillion",
            "granite-docling",
        )
    },
    **{
        name: _SPEC_LLAMA3
        for name in (
            "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
            "lfm2", "jina-v5-nano",
        )
    },
    "dbrx": _SPEC_DBRX,
    "smaug-bpe": _SPEC_DBRX,
    "glm4": _SPEC_DBRX,
    "chatglm-bpe": _SPEC_DBRX,
    **{
        name: _SPEC_QWEN2
        for name in (
            "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan",
            "solar-open", "grok-2",
        )
    },
    "qwen35": _PreTokenizerSpec([_RE_QWEN35]),
    **{
        name: _SPEC_STARCODER
        for name in (
            "starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b",
            "mellum2",
        )
    },
    "deepseek-llm": _PreTokenizerSpec(
        ["[\r\n]", _RE_DEEPSEEK_LETTERS, _RE_DEEPSEEK_PUNCT, r"\s+$", _RE_CJK_HANGUL, r"\p{N}+"]
    ),
    "deepseek-coder": _PreTokenizerSpec(
        ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _RE_CJK_HANGUL, r"\p{N}"]
    ),
    **{
        name: _PreTokenizerSpec(
            [r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+", _RE_DEEPSEEK3_MAIN]
        )
        for name in ("deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4")
    },
    "falcon": _PreTokenizerSpec([r"[\p{P}\$\+<=>\^~\|`]+", _RE_GPT2, "[0-9][0-9][0-9]"]),
    **{name: _PreTokenizerSpec([_RE_BLOOM]) for name in ("bloom", "poro-chat", "gpt3-finnish")},
    "viking": _PreTokenizerSpec([_RE_BLOOM, r"\p{N}"]),
    "tekken": _PreTokenizerSpec([_RE_TEKKEN], ignore_merges=True, add_bos=True),
    **{
        name: _PreTokenizerSpec([_RE_GPT4O])
        for name in ("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2")
    },
    "seed-coder": _PreTokenizerSpec([_RE_SEED_CODER]),
    **{
        name: _PreTokenizerSpec([_RE_BAILINGMOE])
        for name in ("bailingmoe", "bailingmoe2", "llada-moe")
    },
    "ufakzeka": _PreTokenizerSpec([_RE_UFAKZEKA]),
    "minicpm5": _PreTokenizerSpec([r"\p{N}{1,3}", _RE_MINICPM5], ignore_merges=True),
}

#: ``tokenizer.ggml.pre`` values accepted by :meth:`Tokenizer.from_gguf_metadata`.
SUPPORTED_GGUF_PRE_TOKENIZERS: frozenset[str] = frozenset(_PRE_TOKENIZERS)


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
# Small validation helpers
# ---------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_json(path: Path) -> Any:
    return _parse_json(path, _read_text(path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not valid UTF-8 ({exc}); re-save the file as UTF-8") from exc


def _parse_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
            "fix the syntax or re-export the file"
        ) from exc


def _token_content(value: Any, where: str) -> str | None:
    """Extract a token string from a config value (str, AddedToken dict or None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    raise FormatError(f"{where}: expected a token string or an object with a 'content' string")


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InvalidArgumentError(f"text must be str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"text is not valid Unicode (lone surrogate at index {exc.start}); "
            "decode input bytes with errors='replace' or remove the surrogate"
        ) from exc
    return text


# ---------------------------------------------------------------------------
# Public classes
# ---------------------------------------------------------------------------


class Tokenizer:
    """A tokenizer with the metadata an inference runtime needs.

    Instances are immutable after construction and safe to share between
    threads (the underlying Rust tokenizer is thread-safe for encode/decode).
    Use the ``from_*`` constructors rather than calling ``__init__`` directly.
    """

    def __init__(
        self,
        backend: HFTokenizer,
        *,
        bos_token_id: int | None = None,
        eos_token_ids: Sequence[int] = (),
        chat_template: str | None = None,
        add_bos: bool | None = None,
        add_eos: bool = False,
        source: str = "<memory>",
        encoder: Callable[[str], list[int]] | None = None,
        vocab_size: int | None = None,
    ) -> None:
        """Wrap ``backend``.

        Args:
            backend: the Hugging Face tokenizer doing the actual work.
            bos_token_id: beginning-of-sequence id, if the model has one.
            eos_token_ids: ids that end generation; the first is the primary EOS.
            chat_template: Jinja chat template source, or ``None``.
            add_bos: ``None`` to let ``backend``'s post-processor decide which
                special tokens ``encode`` adds; a bool to ignore the
                post-processor and add BOS (and EOS when ``add_eos``) here.
            add_eos: append the primary EOS id when ``add_bos`` is not ``None``.
            source: description of where the tokenizer came from (for errors).
            encoder: optional replacement for ``backend``'s text-to-ids step
                (special tokens included, BOS/EOS excluded); requires
                ``add_bos`` to be a bool.
            vocab_size: number of valid ids, when ``backend`` holds internal
                entries beyond them (default: highest backend id + 1).
        """
        self._backend = backend
        self._source = source
        if vocab_size is None:
            vocab = backend.get_vocab(with_added_tokens=True)
            vocab_size = (max(vocab.values()) + 1) if vocab else 0
        self._vocab_size = vocab_size
        eos_list = list(dict.fromkeys(eos_token_ids))
        for tid in ([] if bos_token_id is None else [bos_token_id]) + eos_list:
            if not _is_int(tid) or not 0 <= tid < self._vocab_size:
                raise FormatError(f"{source}: special token id {tid!r} is not a valid token id")
        self._bos_token_id = bos_token_id
        self._eos_token_ids = eos_list
        self._chat_template = chat_template
        self._compiled_template: jinja2.Template | None = None
        if add_bos and bos_token_id is None:
            raise FormatError(f"{source}: the model asks for a BOS token but defines none")
        if add_bos is not None and add_eos and not eos_list:
            raise FormatError(f"{source}: the model asks for an EOS token but defines none")
        if encoder is not None and add_bos is None:
            raise InvalidArgumentError("a custom encoder needs an explicit add_bos policy")
        self._add_bos = add_bos
        self._add_eos = add_eos
        self._encoder = encoder

    # -- constructors -------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Load a ``tokenizer.json`` file.

        No BOS/EOS ids or chat template are known from this file alone; use
        :meth:`from_folder` to pick them up from ``tokenizer_config.json``.
        ``encode`` adds whatever the file's post-processor adds.
        """
        path = Path(path)
        return cls(_load_tokenizer_json(path), source=str(path))

    @classmethod
    def from_folder(cls, folder: str | Path) -> Tokenizer:
        """Load a Hugging Face model folder.

        Reads ``tokenizer.json`` (required) and, when present,
        ``tokenizer_config.json`` (``bos_token``, ``eos_token``,
        ``add_bos_token``, ``add_eos_token``, ``chat_template``),
        ``special_tokens_map.json`` (``bos_token``/``eos_token`` fallback),
        ``chat_template.jinja`` / ``chat_template.json`` (take precedence over
        the config's template) and ``generation_config.json`` (extra
        ``eos_token_id`` values).

        As in ``transformers``, an explicit ``add_bos_token`` or
        ``add_eos_token`` in ``tokenizer_config.json`` overrides the
        post-processor of ``tokenizer.json``; otherwise the post-processor
        decides which special tokens ``encode`` adds.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise NotFoundError(f"{folder}: tokenizer folder does not exist")
        backend = _load_tokenizer_json(folder / "tokenizer.json")

        config: dict[str, Any] = {}
        config_path = folder / "tokenizer_config.json"
        if config_path.is_file():
            loaded = _read_json(config_path)
            if not isinstance(loaded, dict):
                raise FormatError(f"{config_path}: top level must be a JSON object")
            config = loaded
        special_map: dict[str, Any] = {}
        special_map_path = folder / "special_tokens_map.json"
        if special_map_path.is_file():
            loaded = _read_json(special_map_path)
            if not isinstance(loaded, dict):
                raise FormatError(f"{special_map_path}: top level must be a JSON object")
            special_map = loaded

        def token_id(key: str) -> int | None:
            if config.get(key) is not None:
                text = _token_content(config[key], f"{config_path}: '{key}'")
                where = config_path
            else:
                text = _token_content(special_map.get(key), f"{special_map_path}: '{key}'")
                where = special_map_path
            if text is None:
                return None
            tid = backend.token_to_id(text)
            if tid is None:
                raise FormatError(
                    f"{where}: {key} {text!r} is not in the vocabulary of tokenizer.json; "
                    "fix the token string or add it to added_tokens"
                )
            return int(tid)

        bos_id = token_id("bos_token")
        eos_ids: list[int] = []
        eos_id = token_id("eos_token")
        if eos_id is not None:
            eos_ids.append(eos_id)
        gen_path = folder / "generation_config.json"
        if gen_path.is_file():
            gen = _read_json(gen_path)
            extra = gen.get("eos_token_id") if isinstance(gen, dict) else None
            extra_list = extra if isinstance(extra, list) else [] if extra is None else [extra]
            if not all(_is_int(e) for e in extra_list):
                raise FormatError(f"{gen_path}: eos_token_id must be an integer or a list of integers")
            eos_ids.extend(extra_list)

        add_bos: bool | None = None
        add_eos = False
        if "add_bos_token" in config or "add_eos_token" in config:
            add_bos_raw = config.get("add_bos_token", False)
            add_eos_raw = config.get("add_eos_token", False)
            if not isinstance(add_bos_raw, bool) or not isinstance(add_eos_raw, bool):
                raise FormatError(f"{config_path}: add_bos_token/add_eos_token must be true or false")
            # Like transformers: a flag without its token is silently ignored.
            add_bos = add_bos_raw and bos_id is not None
            add_eos = add_eos_raw and eos_id is not None

        template = _folder_chat_template(folder, config, config_path)
        return cls(
            backend,
            bos_token_id=bos_id,
            eos_token_ids=eos_ids,
            chat_template=template,
            add_bos=add_bos,
            add_eos=add_eos,
            source=str(folder),
        )

    @classmethod
    def from_gguf_metadata(cls, meta: Mapping[str, Any]) -> Tokenizer:
        """Build the tokenizer described by GGUF metadata.

        ``meta`` maps GGUF keys to Python values (str, int, float, bool or
        lists of those), as read from the file's key/value section.

        Raises:
            FormatError: a ``tokenizer.ggml.*`` key is missing or malformed.
            UnsupportedError: the tokenizer model (``tokenizer.ggml.model``)
                or pre-tokenizer type (``tokenizer.ggml.pre``) is not
                supported.
        """
        if not isinstance(meta, Mapping):
            raise InvalidArgumentError("meta must be a mapping of GGUF keys to values")
        return _GGUFBuilder(meta).build()

    # -- properties ---------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of token ids (highest id + 1, added tokens included)."""
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
    def chat_template(self) -> str | None:
        """The model's Jinja chat template source, or ``None`` if it has none."""
        return self._chat_template

    @property
    def backend(self) -> HFTokenizer:
        """The wrapped ``tokenizers.Tokenizer`` (treat as read-only).

        Prefer :meth:`encode`: for GGUF files BOS/EOS are added by this class,
        some byte-level vocabularies need an internal placeholder filtered
        out, and for SentencePiece vocabularies with score ties the backend's
        BPE is not used for encoding at all.  Decoding is always done by the
        backend.
        """
        return self._backend

    # -- encoding / decoding ------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Convert ``text`` to token ids.

        Special-token strings occurring in ``text`` are mapped to their ids.
        With ``add_special_tokens`` the model's BOS/EOS policy is applied
        (``add_bos_token`` for GGUF files, the post-processor or explicit
        ``add_bos_token`` for Hugging Face folders).

        Raises:
            InvalidArgumentError: ``text`` is not a str or contains lone
                surrogates.
        """
        _check_text(text)
        if self._add_bos is None:
            return list(self._backend.encode(text, add_special_tokens=add_special_tokens).ids)
        if self._encoder is not None:
            ids = self._encoder(text)
        else:
            ids = list(self._backend.encode(text, add_special_tokens=False).ids)
        if add_special_tokens:
            if self._add_bos:
                assert self._bos_token_id is not None
                ids.insert(0, self._bos_token_id)
            if self._add_eos:
                ids.append(self._eos_token_ids[0])
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Convert token ids back to text.

        Invalid UTF-8 produced by byte tokens is replaced by U+FFFD.

        Raises:
            InvalidArgumentError: an id is not an int in ``[0, vocab_size)``.
        """
        checked = self._check_ids(ids)
        return str(self._backend.decode(checked, skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        """Id of the vocabulary entry ``token`` (raw token text), or ``None``."""
        if not isinstance(token, str):
            raise InvalidArgumentError(f"token must be str, got {type(token).__name__}")
        tid = self._backend.token_to_id(token)
        return None if tid is None else int(tid)

    def id_to_token(self, token_id: int) -> str:
        """Raw vocabulary text of ``token_id`` (e.g. ``'Ġthe'`` or ``'<0x0A>'``).

        Raises:
            InvalidArgumentError: ``token_id`` is out of range or unassigned.
        """
        (checked,) = self._check_ids([token_id])
        token = self._backend.id_to_token(checked)
        if token is None:
            raise InvalidArgumentError(f"token id {token_id} is not assigned in this vocabulary")
        return str(token)

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
                raise InvalidArgumentError(f"messages[{index}] needs a string 'role'")
        template = self._template()
        # as transformers' render_jinja_template: tools / documents are None unless given,
        # strftime_now formats the current time (pinned by date=, for a reproducible
        # prompt), messages are plain copies with reasoning under its usual names
        date = kwargs.pop("date", None)
        when = date if date is not None else datetime.datetime.now()
        if not isinstance(when, (datetime.date, datetime.datetime)):
            raise InvalidArgumentError("date must be a datetime.date or datetime.datetime (or None: now)")
        variables: dict[str, Any] = {
            "bos_token": self._special_text(self._bos_token_id),
            "eos_token": self._special_text(self._eos_token_ids[0] if self._eos_token_ids else None),
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

    def _special_text(self, token_id: int | None) -> str:
        if token_id is None:
            return ""
        token = self._backend.id_to_token(token_id)
        return "" if token is None else str(token)

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
        decode = self._tokenizer.backend.decode
        skip = self._skip_special
        prefix_text = str(decode(self._ids[: self._read], skip_special_tokens=skip)) if self._read else ""
        full_text = str(decode(self._ids, skip_special_tokens=skip)) if self._ids else ""
        return prefix_text, full_text


# ---------------------------------------------------------------------------
# Loading helpers
# ---------------------------------------------------------------------------


def _load_tokenizer_json(path: Path) -> HFTokenizer:
    if not path.is_file():
        raise NotFoundError(f"{path}: tokenizer.json not found")
    text = _read_text(path)
    data = _parse_json(path, text)  # precise message for JSON syntax errors
    if not isinstance(data, dict) or "model" not in data:
        raise FormatError(f"{path}: not a Hugging Face tokenizer.json (no 'model' section)")
    try:
        return HFTokenizer.from_str(text)
    except Exception as exc:  # tokenizers raises a bare Exception on schema errors
        raise FormatError(
            f"{path}: tokenizers could not load this file ({exc}); "
            "re-export it with a recent tokenizers/transformers version"
        ) from exc


def _folder_chat_template(folder: Path, config: Mapping[str, Any], config_path: Path) -> str | None:
    jinja_path = folder / "chat_template.jinja"
    if jinja_path.is_file():
        try:
            return jinja_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{jinja_path}: not valid UTF-8; re-save the template as UTF-8") from exc
    json_path = folder / "chat_template.json"
    if json_path.is_file():
        data = _read_json(json_path)
        value = data.get("chat_template") if isinstance(data, dict) else None
        return _pick_template(value, json_path)
    if "chat_template" in config:
        return _pick_template(config["chat_template"], config_path)
    return None


def _pick_template(value: Any, where: Path) -> str | None:
    """Accept a template string or HF's list of ``{"name", "template"}`` entries."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        named: dict[str, str] = {}
        for entry in value:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("name"), str)
                and isinstance(entry.get("template"), str)
            ):
                raise FormatError(
                    f"{where}: chat_template list entries must be objects with string 'name' and 'template'"
                )
            named[entry["name"]] = entry["template"]
        if "default" in named:
            return named["default"]
        return next(iter(named.values()), None)
    raise FormatError(f"{where}: chat_template must be a string or a list of named templates")


class _GGUFBuilder:
    """Turns GGUF ``tokenizer.ggml.*`` metadata into a :class:`Tokenizer`."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.meta = meta

    # -- typed metadata access ---------------------------------------------

    def _fail(self, key: str, problem: str) -> NoReturn:
        raise FormatError(f"GGUF metadata '{key}': {problem}; re-convert the model with a current llama.cpp")

    def _str(self, key: str, required: bool = False) -> str | None:
        value = self.meta.get(key)
        if value is None:
            if required:
                self._fail(key, "missing")
            return None
        if not isinstance(value, str):
            self._fail(key, f"expected a string, got {type(value).__name__}")
        return value

    def _bool(self, key: str) -> bool | None:
        value = self.meta.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self._fail(key, f"expected a bool, got {type(value).__name__}")
        return value

    def _token_id(self, key: str, n_tokens: int) -> int | None:
        value = self.meta.get(key)
        if value is None:
            return None
        if not _is_int(value):
            self._fail(key, f"expected an integer token id, got {type(value).__name__}")
        if not 0 <= value < n_tokens:
            self._fail(key, f"token id {value} is outside the vocabulary (size {n_tokens})")
        return int(value)

    def _list(self, key: str, n_min: int, check: Any, what: str, required: bool) -> list[Any] | None:
        value = self.meta.get(key)
        if value is None:
            if required:
                self._fail(key, "missing")
            return None
        if not isinstance(value, (list, tuple)):
            self._fail(key, f"expected an array of {what}, got {type(value).__name__}")
        for index, item in enumerate(value):
            if not check(item):
                self._fail(key, f"element {index} is {type(item).__name__}, expected {what}")
        if len(value) < n_min:
            self._fail(key, f"has {len(value)} entries, expected at least {n_min}")
        return list(value)

    # -- build --------------------------------------------------------------

    def build(self) -> Tokenizer:
        model = self._str("tokenizer.ggml.model", required=True)
        tokens = self._list(
            "tokenizer.ggml.tokens", 1, lambda x: isinstance(x, str), "strings", required=True
        )
        assert tokens is not None and model is not None
        # llama.cpp renames empty entries so that the vocabulary stays unique.
        tokens = [tok if tok else f"[EMPTY_{i}]" for i, tok in enumerate(tokens)]
        n_tokens = len(tokens)
        vocab: dict[str, int] = {}
        for index, tok in enumerate(tokens):
            if vocab.setdefault(tok, index) != index:
                self._fail(
                    "tokenizer.ggml.tokens", f"duplicate token {tok!r} at ids {vocab[tok]} and {index}"
                )
        types = self._list(
            "tokenizer.ggml.token_type", n_tokens, _is_int, "integers", required=False
        ) or [_TYPE_NORMAL] * n_tokens
        special_ids, user_ids = _classify_split_tokens(tokens, types)

        encoder: Callable[[str], list[int]] | None = None
        if model == "gpt2":
            backend, add_bos_default, sentinel = self._build_bpe(tokens, vocab)
            if sentinel is not None:
                encoder = _without_id(backend, sentinel)
        elif model == "llama":
            backend, encoder = self._build_spm(tokens, vocab, types, special_ids + user_ids)
            add_bos_default = True
        else:
            raise UnsupportedError(
                f"GGUF tokenizer model {model!r} is not supported (supported: 'gpt2', 'llama')"
            )
        if user_ids:
            backend.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i in user_ids])
        if special_ids:
            backend.add_special_tokens(
                [AddedToken(tokens[i], special=True, normalized=False) for i in special_ids]
            )

        bos = self._token_id("tokenizer.ggml.bos_token_id", n_tokens)
        eos = self._token_id("tokenizer.ggml.eos_token_id", n_tokens)
        if model == "llama":  # llama.cpp's SentencePiece defaults
            bos = 1 if bos is None and n_tokens > 1 else bos
            eos = 2 if eos is None and n_tokens > 2 else eos
        eos_ids: list[int] = [] if eos is None else [eos]
        for key in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"):
            extra = self._token_id(key, n_tokens)
            if extra is not None:
                eos_ids.append(extra)
        eos_ids.extend(vocab[t] for t in sorted(_END_OF_TURN_TEXTS) if t in vocab)

        add_bos = self._bool("tokenizer.ggml.add_bos_token")
        add_bos = add_bos_default if add_bos is None else add_bos
        add_eos = bool(self._bool("tokenizer.ggml.add_eos_token"))
        if add_bos and bos is None:
            self._fail("tokenizer.ggml.bos_token_id", "missing although add_bos_token is true")
        if add_eos and eos is None:
            self._fail("tokenizer.ggml.eos_token_id", "missing although add_eos_token is true")
        template = self._str("tokenizer.chat_template")
        return Tokenizer(
            backend,
            bos_token_id=bos,
            eos_token_ids=eos_ids,
            chat_template=template,
            add_bos=add_bos,
            add_eos=add_eos,
            source="GGUF metadata",
            encoder=encoder,
            vocab_size=n_tokens,
        )

    def _build_bpe(
        self, tokens: list[str], vocab: dict[str, int]
    ) -> tuple[HFTokenizer, bool, int | None]:
        """Byte-level BPE (``gpt2``).

        Returns the backend, the pre-tokenizer's default add_bos and, when some
        of the 256 byte symbols are missing from the vocabulary, the id of an
        internal placeholder that encoding must drop.  (llama.cpp keeps such
        bytes as symbols that block merges across them, then drops them; the
        placeholder reproduces that, whereas plain BPE would skip them before
        merging.)
        """
        key = "tokenizer.ggml.merges"
        raw_merges = self._list(key, 0, lambda x: isinstance(x, str), "strings", required=True)
        assert raw_merges is not None
        merges: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for index, entry in enumerate(raw_merges):
            cut = entry.find(" ", 1)
            if cut < 0:
                self._fail(key, f"entry {index} {entry!r} is not of the form 'left right'")
            pair = (entry[:cut], entry[cut + 1:])
            for part in (pair[0], pair[1], pair[0] + pair[1]):
                if part not in vocab:
                    self._fail(
                        key, f"entry {index} {entry!r} uses {part!r}, which is not in tokenizer.ggml.tokens"
                    )
            if pair not in seen:  # llama.cpp keeps the first rank of a duplicate
                seen.add(pair)
                merges.append(pair)

        pre = self._str("tokenizer.ggml.pre") or "default"
        spec = _PRE_TOKENIZERS.get(pre)
        if spec is None:
            raise UnsupportedError(
                f"GGUF pre-tokenizer type {pre!r} is not supported; supported: "
                + ", ".join(sorted(_PRE_TOKENIZERS))
            )
        sentinel: int | None = None
        bpe_vocab = vocab
        if any(ch not in vocab for ch in pre_tokenizers.ByteLevel.alphabet()):
            sentinel = len(tokens)
            name = "<loomrt:missing-byte>"
            while name in vocab:
                name += "_"
            bpe_vocab = {**vocab, name: sentinel}
        backend = HFTokenizer(
            models.BPE(
                vocab=bpe_vocab,
                merges=merges,
                ignore_merges=spec.ignore_merges,
                unk_token=None if sentinel is None else name,
            )
        )
        splits: list[pre_tokenizers.PreTokenizer] = [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated") for pattern in spec.patterns
        ]
        splits.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False))
        backend.pre_tokenizer = pre_tokenizers.Sequence(splits)
        backend.decoder = decoders.ByteLevel()
        return backend, spec.add_bos, sentinel

    def _build_spm(
        self, tokens: list[str], vocab: dict[str, int], types: list[int], split_ids: list[int]
    ) -> tuple[HFTokenizer, Callable[[str], list[int]] | None]:
        """SentencePiece-style vocabulary (``llama``).

        Returns the backend and, when merge priorities are ambiguous, an exact
        encoder to use instead of the backend's BPE.
        """
        key = "tokenizer.ggml.scores"
        scores = self._list(
            key, len(tokens), lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
            "numbers", required=False,
        ) or [0.0] * len(tokens)
        scores = [float(x) for x in scores[: len(tokens)]]
        if any(not math.isfinite(x) for x in scores):
            self._fail(key, "contains NaN or infinite scores")

        # llama.cpp merges two adjacent symbols when their concatenation is a
        # vocabulary entry, highest entry score first.  Every split of every
        # entry into two entries therefore becomes a BPE merge ranked by score.
        # Tokens that are split out before BPE (control/unknown/user-defined)
        # can only be merge results when they contain the escaped space.
        candidates: list[tuple[float, int, int, str, str]] = []
        score_owner: dict[float, int] = {}
        ambiguous = False
        for tid, tok in enumerate(tokens):
            if len(tok) < 2:
                continue
            kind = types[tid]
            if kind in (_TYPE_CONTROL, _TYPE_UNKNOWN, _TYPE_USER_DEFINED) and "\u2581" not in tok:
                continue
            found = False
            for cut in range(1, len(tok)):
                left, right = tok[:cut], tok[cut:]
                if left in vocab and right in vocab:
                    candidates.append((-scores[tid], tid, cut, left, right))
                    found = True
            if found and score_owner.setdefault(scores[tid], tid) != tid:
                ambiguous = True
        candidates.sort()
        merges = [(left, right) for _, _, _, left, right in candidates]

        unk_id = self._token_id("tokenizer.ggml.unknown_token_id", len(tokens))
        if unk_id is None:
            unk_id = next((i for i, k in enumerate(types) if k == _TYPE_UNKNOWN), None)
        backend = HFTokenizer(
            models.BPE(
                vocab=vocab,
                merges=merges,
                unk_token=None if unk_id is None else tokens[unk_id],
                fuse_unk=True,
                byte_fallback=True,
            )
        )
        add_prefix = self._bool("tokenizer.ggml.add_space_prefix")
        add_prefix = True if add_prefix is None else add_prefix
        steps: list[normalizers.Normalizer] = []
        if add_prefix:
            steps.append(normalizers.Prepend("\u2581"))
        steps.append(normalizers.Replace(" ", "\u2581"))
        backend.normalizer = normalizers.Sequence(steps)
        dec: list[decoders.Decoder] = [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
        ]
        if add_prefix:
            dec.append(decoders.Strip(" ", 1, 0))
        backend.decoder = decoders.Sequence(dec)
        encoder = None
        if ambiguous:
            encoder = _SpmEncoder(tokens, vocab, scores, split_ids, add_prefix, unk_id).encode
        return backend, encoder


def _without_id(backend: HFTokenizer, drop: int) -> Callable[[str], list[int]]:
    """Encoder that runs ``backend`` (no post-processing) and removes ``drop``."""

    def encode(text: str) -> list[int]:
        return [i for i in backend.encode(text, add_special_tokens=False).ids if i != drop]

    return encode


def _classify_split_tokens(tokens: Sequence[str], types: Sequence[int]) -> tuple[list[int], list[int]]:
    """Ids of the tokens llama.cpp splits out of the text before BPE.

    Returns ``(special, user_defined)``: control and unknown tokens (plus
    texts llama.cpp forces to control) are special, i.e. dropped when
    decoding with ``skip_special_tokens``; user-defined ones are not.
    """
    special: list[int] = []
    user: list[int] = []
    for tid, (tok, kind) in enumerate(zip(tokens, types)):
        if tok in _FORCED_USER_DEFINED_TEXTS:
            user.append(tid)
        elif kind in (_TYPE_CONTROL, _TYPE_UNKNOWN) or tok in _FORCED_CONTROL_TEXTS:
            special.append(tid)
        elif kind == _TYPE_USER_DEFINED:
            user.append(tid)
    return special, user


class _SpmEncoder:
    """Exact re-implementation of llama.cpp's SentencePiece ("llama") encoding.

    Used only when a rank-based BPE cannot express the merge order (equal
    scores, where llama.cpp merges the leftmost pair first).  Steps:

    1. split the text on special / user-defined tokens, longest token first;
    2. for each remaining fragment, prepend a space when it starts the text or
       follows a split token (if ``add_space_prefix``) and escape spaces as
       U+2581;
    3. start from single characters and repeatedly merge the adjacent pair
       whose concatenation is the highest-scoring vocabulary entry, leftmost
       first on ties;
    4. characters missing from the vocabulary become ``<0xNN>`` byte tokens.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        vocab: Mapping[str, int],
        scores: Sequence[float],
        split_ids: Iterable[int],
        add_space_prefix: bool,
        unk_id: int | None,
    ) -> None:
        self._vocab = vocab
        self._scores = scores
        self._add_space_prefix = add_space_prefix
        self._byte_ids: list[int | None] = [vocab.get(f"<0x{b:02X}>", unk_id) for b in range(256)]
        split = [(tokens[i], i) for i in split_ids]
        split.sort(key=lambda item: -len(item[0].encode("utf-8")))
        self._split = split

    def encode(self, text: str) -> list[int]:
        """Ids for ``text`` (no BOS/EOS)."""
        out: list[int] = []
        after_split = True
        for piece in self._partition(text):
            if isinstance(piece, int):
                out.append(piece)
                after_split = True
                continue
            if self._add_space_prefix and after_split:
                piece = " " + piece
            self._merge(piece.replace(" ", "\u2581"), out)
            after_split = False
        return out

    def _partition(self, text: str) -> list[str | int]:
        pieces: list[str | int] = [text] if text else []
        for content, tid in self._split:
            result: list[str | int] = []
            for piece in pieces:
                if isinstance(piece, int) or content not in piece:
                    result.append(piece)
                    continue
                pos = 0
                while (hit := piece.find(content, pos)) >= 0:
                    if hit > pos:
                        result.append(piece[pos:hit])
                    result.append(tid)
                    pos = hit + len(content)
                if pos < len(piece):
                    result.append(piece[pos:])
            pieces = result
        return pieces

    def _merge(self, text: str, out: list[int]) -> None:
        n = len(text)
        if n == 0:
            return
        vocab, scores = self._vocab, self._scores
        length = [1] * n  # symbol i covers text[i : i + length[i]]; 0 = merged away
        prev = list(range(-1, n - 1))
        nxt = [*range(1, n), -1]
        heap: list[tuple[float, int, int, int]] = []

        def push(left: int, right: int) -> None:
            if left < 0 or right < 0:
                return
            size = length[left] + length[right]
            tid = vocab.get(text[left : left + size])
            if tid is not None:
                heapq.heappush(heap, (-scores[tid], left, right, size))

        for i in range(1, n):
            push(i - 1, i)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if length[left] == 0 or length[right] == 0 or length[left] + length[right] != size:
                continue  # stale: one side was merged since this pair was queued
            length[left] = size
            length[right] = 0
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            push(prev[left], left)
            push(left, nxt[left])

        i = 0
        while i != -1:
            symbol = text[i : i + length[i]]
            tid = vocab.get(symbol)
            if tid is not None:
                out.append(tid)
            else:
                out.extend(b for b in (self._byte_ids[x] for x in symbol.encode("utf-8")) if b is not None)
            i = nxt[i]

